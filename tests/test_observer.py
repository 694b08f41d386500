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
from honker._observe import WorkerObserver
from honker.queue import Job
from honker.tasks import TaskRegistry, TaskSpec, encode_call
from honker.worker import WorkerPool

pytestmark = pytest.mark.engines

current = contextvars.ContextVar[int | None]("current", default=None)


def enqueue_call(q: honker.Queue, name: str) -> int:
    return q.enqueue(encode_call(name, [], {}))


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
    tasks = TaskRegistry()  # private: the process-wide registry stays untouched
    seen_in_thread: list[int | None] = []
    release = asyncio.Event()

    def ok() -> str:
        seen_in_thread.append(current.get())  # the context reaches the task's thread
        return "fine"

    def flaky() -> None:
        raise ValueError("not yet")

    async def hang() -> None:
        release.set()
        await asyncio.sleep(3600)

    tasks.register(TaskSpec("ok", ok, "obs"))
    tasks.register(TaskSpec("flaky", flaky, "obs", retries=2, retry_delay_s=3600))
    tasks.register(TaskSpec("hang", hang, "obs", timeout_s=60))
    done, retried = enqueue_call(q, "ok"), enqueue_call(q, "flaky")
    raw = q.enqueue({"not": "a task"})
    unknown = enqueue_call(q, "missing")
    caplog.set_level(logging.WARNING, logger="honker.observe")
    recorder = Recorder()
    pool = WorkerPool(
        db, concurrency=1, registry=tasks, grace_period_s=0, observers=[Broken(), recorder]
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    for _ in range(400):
        if len(recorder.events) >= 5:
            break
        await asyncio.sleep(0.05)
    hung = enqueue_call(q, "hang")
    await asyncio.wait_for(release.wait(), 30)
    stop.set()
    await asyncio.wait_for(runner, 30)

    assert recorder.events[0] == ("started",) and recorder.events[-1] == ("stopped",)
    finished = {e[0]: e[1:] for e in recorder.events[1:-1]}
    assert len(finished) == len(recorder.events) - 2  # each job reported once
    assert finished[done] == ("ok", "done", None)
    assert finished[retried] == ("flaky", "retried", "not yet")
    assert finished[raw] == (None, "dead", "raw (non-decorated) payload on a decorated-task queue")
    assert finished[unknown][:2] == ("missing", "dead")
    assert finished[hung] == ("hang", "released", None)
    assert seen_in_thread == [done]
    assert q.get_result(done) == (True, "fine")  # the broken observer failed nothing
    for hook in ("pool_started", "job_context", "job_finished"):
        assert f"failed in {hook} (ignored)" in caplog.text


async def test_lapsed_claim_is_reported_as_lapsed(db: honker.Database) -> None:
    q = db.queue("obs")
    tasks = TaskRegistry()
    started = asyncio.Event()
    finish = asyncio.Event()

    async def slow() -> None:
        started.set()
        await finish.wait()

    tasks.register(TaskSpec("slow", slow, "obs"))
    call = enqueue_call(q, "slow")
    recorder = Recorder()
    pool = WorkerPool(db, concurrency=1, registry=tasks, observers=[recorder])
    stop = asyncio.Event()
    runner = asyncio.create_task(pool.run(stop))
    await asyncio.wait_for(started.wait(), 30)
    assert q.cancel(call, force=True)  # deleted under the worker: its ack finds no claim
    finish.set()
    for _ in range(400):
        if len(recorder.events) >= 2:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(runner, 30)
    assert recorder.events[1] == (call, "slow", "lapsed", None)


async def test_a_pool_without_observers_reports_nothing(db: honker.Database) -> None:
    pool = WorkerPool(db, queues=["obs"])
    assert pool.observers == []


async def test_a_run_that_raises_is_reported_lapsed_and_the_error_propagates(
    db: honker.Database,
) -> None:
    from honker._observe import run_observed

    q = db.queue("obs")
    job_id = enqueue_call(q, "anything")
    job = q.claim_one("w")
    assert job is not None and job.id == job_id
    recorder = Recorder()

    async def failing(job: Job) -> tuple[str, str | None]:
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="database is locked"):
        await run_observed([recorder], job, failing)
    assert recorder.events == [(job_id, "anything", "lapsed", "RuntimeError: database is locked")]
