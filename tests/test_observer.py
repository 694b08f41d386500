"""WorkerObserver hooks of an in-process WorkerPool: every outcome is reported once, with
the task name; contexts wrap the handler; a failing observer never fails a job."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import honker
from honker import registry
from honker._observe import WorkerObserver
from honker.queue import Job
from honker.tasks import encode_call
from honker.worker import WorkerPool

current = contextvars.ContextVar[int | None]("current", default=None)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    saved = dict(registry()._by_name)
    registry()._by_name.clear()
    yield
    registry()._by_name.clear()
    registry()._by_name.update(saved)


class Recorder(WorkerObserver):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def pool_started(self, pool: WorkerPool) -> None:
        self.events.append(("started",))

    def pool_stopped(self, pool: WorkerPool) -> None:
        self.events.append(("stopped",))

    @contextlib.contextmanager
    def job_context(self, job: Job, task_name: str | None) -> Iterator[None]:
        token = current.set(job.id)
        try:
            yield
        finally:
            current.reset(token)

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        assert duration_s >= 0
        self.events.append((job.id, task_name, outcome, error and error.splitlines()[0]))


class Broken(WorkerObserver):
    def pool_started(self, pool: WorkerPool) -> None:
        raise RuntimeError("broken observer")

    def job_context(self, job: Job, task_name: str | None) -> Any:
        raise RuntimeError("broken observer")

    def job_finished(self, *args: Any) -> None:
        raise RuntimeError("broken observer")


async def test_every_outcome_is_reported_once(
    db: honker.Database, caplog: pytest.LogCaptureFixture
) -> None:
    q = db.queue("obs")
    seen_in_thread: list[int | None] = []
    release = asyncio.Event()

    @q.task(name="ok")
    def ok() -> str:
        seen_in_thread.append(current.get())  # the context reaches the task's thread
        return "fine"

    @q.task(name="flaky", retries=2, retry_delay_s=3600)
    def flaky() -> None:
        raise ValueError("not yet")

    @q.task(name="hang", timeout_s=60)
    async def hang() -> None:
        release.set()
        await asyncio.sleep(3600)

    done, retried = ok(), flaky()
    raw = q.enqueue({"not": "a task"})
    unknown = q.enqueue(encode_call("missing", [], {}))
    caplog.set_level(logging.WARNING, logger="honker.observe")
    recorder = Recorder()
    pool = WorkerPool(db, concurrency=1, grace_period_s=0, observers=[Broken(), recorder])
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    for _ in range(400):
        if len(recorder.events) >= 5:
            break
        await asyncio.sleep(0.05)
    hung = hang()
    await asyncio.wait_for(release.wait(), 30)
    stop.set()
    await asyncio.wait_for(runner, 30)

    assert recorder.events[0] == ("started",) and recorder.events[-1] == ("stopped",)
    finished = {e[0]: e[1:] for e in recorder.events[1:-1]}
    assert len(finished) == len(recorder.events) - 2  # each job reported once
    assert finished[done.id] == ("ok", "done", None)
    assert finished[retried.id] == ("flaky", "retried", "not yet")
    assert finished[raw] == (None, "dead", "raw (non-decorated) payload on a decorated-task queue")
    assert finished[unknown][:2] == ("missing", "dead")
    assert finished[hung.id] == ("hang", "released", None)
    assert seen_in_thread == [done.id]
    assert await done.aget(timeout=5) == "fine"  # the broken observer failed nothing
    for hook in ("pool_started", "job_context", "job_finished"):
        assert f"failed in {hook} (ignored)" in caplog.text


async def test_lapsed_claim_is_reported_as_lapsed(db: honker.Database) -> None:
    q = db.queue("obs")
    started = asyncio.Event()
    finish = asyncio.Event()

    @q.task(name="slow")
    async def slow() -> None:
        started.set()
        await finish.wait()

    call = slow()
    recorder = Recorder()
    pool = WorkerPool(db, concurrency=1, observers=[recorder])
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    await asyncio.wait_for(started.wait(), 30)
    assert q.cancel(call.id)  # deleted under the worker: its ack finds no claim
    finish.set()
    for _ in range(400):
        if len(recorder.events) >= 2:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(runner, 30)
    assert recorder.events[1] == (call.id, "slow", "lapsed", None)


async def test_a_pool_without_observers_reports_nothing(db: honker.Database) -> None:
    pool = WorkerPool(db, queues=["obs"])
    assert pool.observers == []
