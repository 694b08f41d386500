"""The worker runtime: producers, group-committed outcomes, no database I/O on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import honker
from helpers import ROOT, Child
from honker import _backends
from honker.worker import WorkerPool

pytestmark = [pytest.mark.engines, pytest.mark.usefixtures("clean_registry")]

HOLD_S = 0.5


def _hold_writer(db: honker.Database, holding: threading.Event, released: threading.Event) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
        holding.set()
        time.sleep(HOLD_S)
    released.set()


async def _ticks_while_writer_held(
    db: honker.Database, work: Callable[[], Coroutine[Any, Any, Any]]
) -> int:
    """Start ``work`` once another thread holds the writer; count 5 ms ticks until it lets go.

    Every ``work`` below needs the writer at its first step, so with database I/O on the
    event loop the loop would sit in that call for the whole hold (no ticks at all).
    """
    holding, released = threading.Event(), threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not released.is_set():
            await asyncio.sleep(0.005)
            if not released.is_set():
                ticks += 1

    holder = threading.Thread(target=_hold_writer, args=(db, holding, released))
    holder.start()
    while not holding.is_set():
        await asyncio.sleep(0.001)
    tick_task = asyncio.create_task(ticker())
    work_task = asyncio.create_task(work())
    await tick_task
    holder.join()
    work_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await work_task
    return ticks


@pytest.mark.parametrize("path", ["claim", "workers", "subscribe", "scheduler", "outbox"])
async def test_event_loop_keeps_running_while_another_thread_holds_the_writer(
    db: honker.Database, path: str
) -> None:
    q = db.queue("stall")

    @q.task(name=f"stall-{path}")
    def noop() -> None:
        return None

    noop()
    stream = db.stream("s")
    for i in range(3):
        stream.publish({"i": i})
    honker.Scheduler(db).add(name="tick", queue="stall", schedule=honker.every_s(60))
    box = db.outbox("mail", lambda payload: None)
    box.enqueue({"to": "x"})

    async def work() -> None:
        if path == "claim":
            async for job in q.claim("w"):
                await asyncio.to_thread(job.ack)
        elif path == "workers":
            await WorkerPool(db, queues=["stall"], concurrency=2).run()
        elif path == "subscribe":
            async for _ in stream.subscribe(consumer="c", save_every_n=1):
                pass
        elif path == "scheduler":
            await honker.Scheduler(db).run()
        else:
            await box.run_worker("w")

    ticks = await _ticks_while_writer_held(db, work)
    # 0.5 s of holding is ~100 ticks of 5 ms when the loop is free (fewer on a loaded
    # machine), 0 when it is blocked in the database call.
    assert ticks >= 5, f"the event loop stalled: {ticks} ticks while the writer was held"


async def test_group_commit_keeps_stats_exact_and_results_stored(db: honker.Database) -> None:
    q = db.queue("gc")

    @q.task(name="gc-double")
    async def double(n: int) -> int:
        return n * 2

    @q.task(name="gc-boom", retries=1)
    async def boom() -> None:
        raise ValueError("boom")

    results = [double(i) for i in range(300)]
    failing = boom()
    stop = asyncio.Event()
    runner = asyncio.create_task(WorkerPool(db, queues=["gc"], concurrency=8).run(stop))
    values = [await r.aget(timeout=30) for r in results]
    assert values == [2 * i for i in range(300)]
    for _ in range(300):
        if q.stats()["dead"] == 1:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await runner
    assert q.find_job(failing.id)["state"] == "dead"  # type: ignore[index]
    counts = db.query("SELECT SUM(done) AS done, SUM(dead) AS dead FROM _honker_stats")
    assert counts == [{"done": 300, "dead": 1}]
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]


@pytest.mark.sqlite_only(
    "needs a claim that waits for the single writer; on PostgreSQL claims never wait"
)
async def test_cancelled_async_claim_hands_its_job_back(db: honker.Database) -> None:
    q = db.queue("cancel-claim")
    job_id = q.enqueue({"x": 1})
    holding, released = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_writer, args=(db, holding, released))
    holder.start()
    holding.wait(5)
    claim = asyncio.create_task(q.aclaim_batch("w", 1))
    await asyncio.sleep(0.05)  # the claim is now waiting for the writer on its thread
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    holder.join()
    row = q.get_job(job_id)
    assert row is not None and row["state"] == "pending" and row["attempts"] == 0


@pytest.mark.sqlite_only("watcher backends are SQLite-only")
def test_default_watcher_is_the_kernel_backend_on_a_local_file_system(db_path: str) -> None:
    if _backends.kernel_unsuitable(db_path) is not None:
        pytest.skip(f"not applicable here: {_backends.kernel_unsuitable(db_path)}")
    with honker.open(db_path) as db:
        assert db.engine.watcher.backend == "kernel"
    with honker.open(db_path, watcher_backend="polling") as db:
        assert db.engine.watcher.backend == "polling"
    with honker.open(db_path, watcher_poll_interval_ms=5) as db:
        assert db.engine.watcher.backend == "polling"


@pytest.mark.sqlite_only("watcher backends are SQLite-only")
def test_default_watcher_polls_on_a_network_file_system(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_backends, "_mount_fstype", lambda directory: "nfs4")
    assert "nfs4" in str(_backends.kernel_unsuitable(db_path))
    with honker.open(db_path) as db:
        assert db.engine.watcher.backend == "polling"


@pytest.mark.sqlite_only("watcher backends are SQLite-only (PostgreSQL: test_postgres.py)")
async def test_default_watcher_wakes_on_a_commit_from_another_process(
    db_path: str, children: list[Child]
) -> None:
    db = honker.open(db_path)
    try:
        q = db.queue("x")
        it = q.claim("w", idle_poll_s=None)
        child = Child(
            "import honker, sys\n"
            "honker.open(sys.argv[1]).queue('x').enqueue({'n': 1})\n"
            "print('ok')",
            db_path,
        )
        children.append(child)
        assert child.readline() == "ok"
        job = await asyncio.wait_for(it.__anext__(), 30)
        assert job.payload == {"n": 1}
        it.close()
    finally:
        db.close()


SLOW_WORKER_APP = """
import os, time
import honker

db = honker.open(os.environ["APP_DB"])
q = db.queue("slow", visibility_timeout_s=1)

@q.task(name="slow.run")
def run(marker: str) -> dict:
    open(marker, "w").close()
    time.sleep(3)
    return {"by": "stalled-worker"}
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_outcome_of_a_lapsed_claim_writes_nothing(tmp_path: Path, children: list[Child]) -> None:
    db_path = str(tmp_path / "app.db")
    (tmp_path / "slowapp.py").write_text(SLOW_WORKER_APP)
    # this checkout's src (a relative "src" would resolve under tmp_path: another install)
    env = dict(os.environ, APP_DB=db_path, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT / 'src'}")
    db = honker.open(db_path)
    q = db.queue("slow", visibility_timeout_s=1)
    marker = str(tmp_path / "started")
    job_id = q.enqueue({"__honker_task__": {"task": "slow.run", "args": [marker], "kwargs": {}}})
    import subprocess

    worker = subprocess.Popen(
        [sys.executable, "-m", "honker", "worker", "slowapp:db", "--concurrency", "1"],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(marker):
            assert time.monotonic() < deadline and worker.poll() is None, worker.stderr
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGSTOP)
        # The stalled worker's claim lapses; another worker takes the job over.
        taken = None
        deadline = time.monotonic() + 30
        while taken is None:
            assert time.monotonic() < deadline
            taken = q.claim_one("the-other-worker")
            time.sleep(0.1)
        assert taken.id == job_id
        taken.heartbeat(60)
        os.kill(worker.pid, signal.SIGCONT)
        # The stalled worker finishes the task: its ack is refused, so its result and its
        # done counter must not be written either.
        deadline = time.monotonic() + 30
        log: list[str] = []
        assert worker.stderr is not None
        os.set_blocking(worker.stderr.fileno(), False)
        while not any("lapsed" in line for line in log):
            assert time.monotonic() < deadline, "".join(log)
            chunk = worker.stderr.readline()
            if chunk:
                log.append(chunk)
            else:
                time.sleep(0.05)
        assert q.get_result(job_id) == (False, None)
        assert db.query("SELECT COALESCE(SUM(done), 0) AS n FROM _honker_stats") == [{"n": 0}]
        row = q.get_job(job_id)
        assert row is not None and row["worker_id"] == "the-other-worker"
        assert taken.ack()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)
        worker.kill()
        worker.communicate(timeout=30)
        db.close()


def test_worker_logs_retries_and_dead_letters(db: honker.Database) -> None:
    q = db.queue("logged")

    @q.task(name="logged.fails", retries=2, retry_delay_s=0)
    def fails() -> None:
        raise RuntimeError("it broke")

    fails()
    records: list[Any] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("honker.worker")
    handler = Collect()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel("DEBUG")
    try:

        async def main() -> None:
            stop = asyncio.Event()
            runner = asyncio.create_task(WorkerPool(db, queues=["logged"], concurrency=1).run(stop))
            for _ in range(500):
                if q.stats()["dead"] == 1:
                    break
                await asyncio.sleep(0.02)
            stop.set()
            await runner

        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    levels = [(r.levelname, r.getMessage()) for r in records]
    retries = [m for lvl, m in levels if lvl == "WARNING" and "retrying" in m]
    deads = [m for lvl, m in levels if lvl == "ERROR" and "dead-lettered" in m]
    assert len(retries) == 1 and "logged.fails" in retries[0] and "it broke" in retries[0]
    assert len(deads) == 1 and "attempt" in deads[0] and "it broke" in deads[0]
    assert any(lvl == "INFO" and "worker started" in m for lvl, m in levels)
    assert any(lvl == "INFO" and "worker stopped" in m for lvl, m in levels)


def test_apply_outcomes_is_one_transaction_with_per_job_checks(db: honker.Database) -> None:
    q = db.queue("flush")
    ids = [q.enqueue({"i": i}) for i in range(4)]
    jobs = q.claim_batch("me", 4)
    assert [j.id for j in jobs] == ids
    outcomes = [
        ("done", ids[0], json.dumps({"ok": 0}), 0),
        ("done", ids[1], None, 0),
        ("retry", ids[2], 0, "again"),
        ("dead", ids[3], None, "gone"),
        ("done", 999999, json.dumps("never"), 0),  # not held: nothing written
    ]
    applied = db.engine.write(db.engine.ops.apply_outcomes, "me", outcomes)
    assert applied == [True, True, True, True, False]
    assert q.get_result(ids[0]) == (True, {"ok": 0})
    assert q.get_result(999999) == (False, None)
    assert q.get_job(ids[2])["state"] == "pending"  # type: ignore[index]
    assert q.find_job(ids[3])["state"] == "dead"  # type: ignore[index]


async def test_prefetched_jobs_are_held_then_handed_back_untouched_at_shutdown(
    db: honker.Database,
) -> None:
    q = db.queue("prefetch")
    release = asyncio.Event()
    started: list[int] = []

    @q.task(name="prefetch.block")
    async def block(i: int) -> int:
        started.append(i)
        await release.wait()
        return i

    results = [block(i) for i in range(4)]
    stop = asyncio.Event()
    pool = WorkerPool(db, queues=["prefetch"], concurrency=1, prefetch=2, grace_period_s=10)
    runner = asyncio.create_task(pool.run(stop))
    for _ in range(500):
        if started and q.stats()["processing"] == 3:
            break
        await asyncio.sleep(0.01)
    # One running, two claimed ahead of the busy slot, the fourth still pending.
    assert started == [0]
    assert q.stats()["processing"] == 3 and q.stats()["pending"] == 1
    stop.set()
    await asyncio.sleep(0.05)
    release.set()
    await runner
    assert await results[0].aget(timeout=5) == 0
    for r in results[1:]:
        row = q.get_job(r.id)
        assert row is not None and row["state"] == "pending" and row["attempts"] == 0
    assert started == [0]


async def test_without_prefetch_a_producer_claims_only_for_free_slots(db: honker.Database) -> None:
    q = db.queue("noprefetch")
    release = asyncio.Event()

    @q.task(name="noprefetch.block")
    async def block() -> None:
        await release.wait()

    for _ in range(3):
        block()
    stop = asyncio.Event()
    pool = WorkerPool(db, queues=["noprefetch"], concurrency=1, prefetch=0)
    runner = asyncio.create_task(pool.run(stop))
    for _ in range(500):
        if q.stats()["processing"] >= 1:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert q.stats()["processing"] == 1 and q.stats()["pending"] == 2
    release.set()
    for _ in range(500):
        if q.stats()["pending"] == 0 and q.stats()["processing"] == 0:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await runner
    assert db.query("SELECT SUM(done) AS n FROM _honker_stats") == [{"n": 3}]
