"""Tasks and in-process workers: envelope, registry, retries, timeouts, results, dispatch."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import honker
from helpers import sql_for
from honker import Retryable, TaskResult, registry
from honker.tasks import ENVELOPE_KEY, TaskSpec, load_app
from honker.worker import WorkerPool, _compute_delay

pytestmark = [pytest.mark.engines, pytest.mark.usefixtures("clean_registry")]


async def run_until(
    db: honker.Database, done: Callable[[], bool], timeout: float = 10, **kwargs: Any
) -> None:
    """Run workers in this process until ``done()`` holds, then stop them."""
    stop = asyncio.Event()
    workers = asyncio.create_task(db.run_workers(stop_event=stop, **kwargs))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            if workers.done():
                workers.result()
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(workers, 10)


def dead(db: honker.Database) -> list[dict[str, object]]:
    return db.query("SELECT id, queue, attempts, last_error FROM _honker_dead ORDER BY id")


def test_envelope_on_disk_and_task_result(db: honker.Database) -> None:
    q = db.queue("emails")

    @q.task(name="send")
    def send(to: str, subject: str = "") -> dict[str, str]:
        return {"to": to}

    result = send("alice@example.com", subject="Hi")
    assert isinstance(result, TaskResult) and result.id > 0
    assert repr(result) == f"TaskResult(queue='emails', id={result.id})"
    (row,) = db.query("SELECT payload, max_attempts FROM _honker_live")
    assert json.loads(row["payload"]) == {
        ENVELOPE_KEY: {"task": "send", "args": ["alice@example.com"], "kwargs": {"subject": "Hi"}}
    }
    assert list(json.loads(row["payload"])[ENVELOPE_KEY]) == ["task", "args", "kwargs"]
    assert row["max_attempts"] == 3
    assert send.call_local("bob") == {"to": "bob"}
    assert send.name == "send" and send.__name__ == "send" and send.spec.queue_name == "emails"


def test_default_name_and_registry_rules(db: honker.Database) -> None:
    q = db.queue("q")

    def original() -> None: ...

    wrapped = q.task()(original)
    assert wrapped.name == f"{__name__}.test_default_name_and_registry_rules.<locals>.original"
    q.task()(original)  # same function again: no-op
    with pytest.raises(ValueError, match="duplicate task name"):
        q.task(name=wrapped.name)(lambda: None)

    @q.task
    def bare() -> int:
        return 1

    assert bare.name.endswith("bare") and registry().get(bare.name) is bare.spec
    assert registry().names() == sorted(registry().names())
    assert registry().queues() == {"q"}


def test_arguments_must_be_json(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="t")
    def t(x: object) -> None: ...

    from datetime import datetime

    for bad in (datetime.now(), object(), float("nan"), {1, 2}):
        with pytest.raises(TypeError):
            t(bad)
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]


def test_task_options_reach_the_row(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=7)

    @q.task(name="opt", retries=2, priority=5, expires_s=60)
    def opt() -> None: ...

    @q.task(name="inherit")
    def inherit() -> None: ...

    opt()
    inherit()
    rows = db.query(
        "SELECT priority, max_attempts, expires_at - created_at AS exp "
        "FROM _honker_live ORDER BY id"
    )
    assert rows == [
        {"priority": 5, "max_attempts": 2, "exp": 60},
        {"priority": 0, "max_attempts": 7, "exp": None},
    ]


def test_apply_async_joins_the_callers_transaction(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="after_order")
    def after_order(order_id: int) -> None: ...

    with pytest.raises(KeyError), db.transaction() as tx:
        after_order.apply_async((1,), tx=tx)
        raise KeyError
    with db.transaction() as tx:
        after_order.apply_async((2,), tx=tx, delay=3600)
    (row,) = db.query(
        sql_for(db, "SELECT payload, run_at > unixepoch() AS later FROM _honker_live")
    )
    assert json.loads(row["payload"])[ENVELOPE_KEY]["args"] == [2] and row["later"] == 1


def test_load_app() -> None:
    with pytest.raises(ValueError, match=r"module\.path:variable"):
        load_app("no_colon")
    with pytest.raises(AttributeError):
        load_app("os:definitely_missing")
    assert load_app("os.path:join") is __import__("os").path.join


def test_compute_delay_and_spec_backoff() -> None:
    assert _compute_delay(60, 1.0, 5) == 60
    assert [_compute_delay(10, 2.0, a) for a in (1, 2, 3)] == [10, 20, 40]
    spec = TaskSpec(name="x", fn=print, queue_name="q", retry_delay_s=5, backoff=3.0)
    assert [spec.retry_delay(a) for a in (1, 2, 3)] == [5, 15, 45]


async def test_worker_runs_sync_and_async_tasks_and_stores_results(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @q.task(name="shout")
    async def shout(word: str) -> str:
        return word.upper()

    @q.task(name="quiet", store_result=False)
    def quiet() -> str:
        return "ignored"

    r1, r2, r3 = add(2, 3), shout("hey"), quiet()
    await run_until(
        db, lambda: db.query("SELECT COUNT(*) AS n FROM _honker_live")[0]["n"] == 0, concurrency=2
    )
    assert await r1.aget(1) == 5
    assert await r2.aget(1) == "HEY"
    assert q.get_result(r3.id) == (False, None)
    with pytest.raises(TimeoutError):
        await r3.aget(0.1)
    ttl = db.query(
        sql_for(db, "SELECT expires_at - created_at AS ttl FROM _honker_results WHERE job_id = ?"),
        [r1.id],
    )
    assert ttl == [{"ttl": 3600}]


async def test_exception_retries_with_backoff_then_dead_letters(db: honker.Database) -> None:
    q = db.queue("q")
    attempts: list[float] = []

    @q.task(name="flaky", retries=3, retry_delay_s=10, backoff=2.0)
    def flaky() -> None:
        attempts.append(time.time())
        raise ValueError("boom")

    res = flaky()
    delays = []

    def step() -> bool:
        row = q.get_job(res.id)
        if row is not None and row["state"] == "pending" and row["attempts"] > len(delays):
            delays.append(row["run_at"] - int(time.time()))
            db.engine.write(
                lambda c: c.execute(sql_for(db, "UPDATE _honker_live SET run_at = unixepoch()"))
            )
        return bool(dead(db))

    await run_until(db, step)
    assert len(attempts) == 3
    assert len(delays) == 2
    assert all(abs(a - b) <= 1 for a, b in zip(delays, [10, 20], strict=True))
    (row,) = dead(db)
    assert row["attempts"] == 3
    assert str(row["last_error"]).startswith("boom\n")
    assert str(row["last_error"]).rstrip().endswith("ValueError: boom")


async def test_timeout_retries_then_dead_letters(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="sleepy", retries=2, retry_delay_s=0, timeout_s=0.05)
    async def sleepy() -> None:
        await asyncio.sleep(5)

    sleepy()
    await run_until(db, lambda: bool(dead(db)))
    (row,) = dead(db)
    assert row["last_error"] == "timeout after 0.05s" and row["attempts"] == 2


async def test_sync_timeout_applies_too(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="blocking", retries=1, timeout_s=0.1)
    def blocking() -> None:
        time.sleep(0.5)

    blocking()
    await run_until(db, lambda: bool(dead(db)))
    assert dead(db)[0]["last_error"] == "timeout after 0.1s"


async def test_retryable_uses_its_own_delay(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="later", retry_delay_s=1000)
    def later() -> None:
        raise Retryable("rate limited", delay_s=42)

    res = later()
    await run_until(
        db,
        lambda: (
            (q.get_job(res.id) or {}).get("state") == "pending"
            and (q.get_job(res.id) or {}).get("attempts") == 1
        ),
    )
    row = q.get_job(res.id)
    assert row is not None and 41 <= row["run_at"] - int(time.time()) <= 42


async def test_unknown_and_raw_payloads_are_dead_lettered(db: honker.Database) -> None:
    q = db.queue("q")

    @q.task(name="known.one")
    def one() -> None: ...

    q.enqueue({ENVELOPE_KEY: {"task": "gone.away", "args": [], "kwargs": {}}})
    q.enqueue({"not": "a task"})
    await run_until(db, lambda: len(dead(db)) == 2)
    errors = [r["last_error"] for r in dead(db)]
    assert errors[0] == "unknown task: gone.away. Registered tasks: ['known.one']"
    assert errors[1] == "raw (non-decorated) payload on a decorated-task queue"


async def test_blocking_sync_task_does_not_stall_async_peers(db: honker.Database) -> None:
    q = db.queue("q")
    finished: dict[str, float] = {}

    @q.task(name="block")
    def block() -> None:
        time.sleep(1.0)
        finished["block"] = time.monotonic()

    @q.task(name="quick")
    async def quick() -> None:
        finished["quick"] = time.monotonic()

    block()
    quick()
    await run_until(db, lambda: len(finished) == 2, concurrency=2)
    assert finished["quick"] < finished["block"]


async def test_heartbeat_keeps_a_long_job_from_being_reclaimed(db: honker.Database) -> None:
    q = db.queue("hb", visibility_timeout_s=1)
    runs: list[int] = []

    @q.task(name="long")
    async def long() -> str:
        runs.append(1)
        await asyncio.sleep(3)
        return "ok"

    res = long()
    stop = asyncio.Event()
    pool = asyncio.create_task(db.run_workers(concurrency=2, stop_event=stop))
    assert await res.aget(10) == "ok"
    stop.set()
    await pool
    assert runs == [1]  # never reclaimed by the second worker while it ran


async def test_stop_lets_running_jobs_finish_then_releases_the_rest(db: honker.Database) -> None:
    q = db.queue("q")
    started = asyncio.Event()

    @q.task(name="finishes")
    async def finishes() -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    res = finishes()
    stop = asyncio.Event()
    pool = asyncio.create_task(db.run_workers(concurrency=1, stop_event=stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.wait_for(pool, 5)
    assert q.get_result(res.id) == (True, "finished")

    @q.task(name="overruns")
    async def overruns() -> None:
        started.set()
        await asyncio.sleep(30)

    started.clear()
    late = overruns()
    stop = asyncio.Event()
    pool = asyncio.create_task(db.run_workers(concurrency=1, stop_event=stop, grace_period_s=0.2))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.wait_for(pool, 5)
    row = q.get_job(late.id)
    assert row is not None and row["state"] == "pending" and row["attempts"] == 0  # handed back


async def test_run_workers_needs_tasks(db: honker.Database) -> None:
    with pytest.raises(RuntimeError, match="no tasks registered"):
        await honker.run_workers(db)


def test_get_inside_a_running_loop_is_refused(db: honker.Database) -> None:
    q = db.queue("q")
    q.save_result(77, "v")
    res = TaskResult(db, q, 77)
    assert res.get(timeout=1) == "v"

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="aget"):
            res.get()

    asyncio.run(inside())


async def test_periodic_task_registers_schedule_and_runs(db: honker.Database) -> None:
    q = db.queue("cron")
    ran = threading.Event()

    @q.periodic_task(honker.every_s(1), name="tick")
    def tick() -> None:
        ran.set()

    (sched,) = honker.Scheduler(db).list()
    assert (sched["name"], sched["queue"], sched["cron_expr"]) == ("tick", "cron", "@every 1s")
    assert json.loads(sched["payload"]) == {
        ENVELOPE_KEY: {"task": "tick", "args": [], "kwargs": {}}
    }
    stop = asyncio.Event()
    scheduler = asyncio.create_task(honker.Scheduler(db).run(stop))
    await run_until(db, ran.is_set)
    stop.set()
    await scheduler
    assert db.query("SELECT COUNT(*) AS n FROM _honker_results") == [{"n": 0}]  # store_result=False


def test_worker_pool_defaults(db: honker.Database) -> None:
    pool = WorkerPool(db, queues=["a"], concurrency=None)
    assert pool.concurrency >= 1 and pool.queue_names == ["a"]
