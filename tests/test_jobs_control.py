"""Issue 15, jobs: current_job(), cooperative cancel, progress, failed results, attempt
history and retention. Cross-process behaviour runs a real `python -m honker worker`."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from obs_support import CLI, app_env, cli, eventually

import honker
from helpers import Child, sql_for
from honker import Retention, TaskResult
from honker._observe import WorkerObserver
from honker.queue import Job
from honker.retention import parse_duration, prune
from honker.tasks import ENVELOPE_KEY, TaskRegistry, TaskSpec
from honker.worker import WorkerPool

pytestmark = pytest.mark.engines


def start_worker(db_path: str, out: Path) -> Child:
    """``python -m honker worker apps.jobsapp:db`` on the "jobs" queue, started."""
    env = app_env(db_path, HONKER_TEST_DIR=str(out))
    child = Child(
        CLI, "worker", "apps.jobsapp:db", "--queue", "jobs", "--concurrency", "4", env=env
    )
    line = child.readline()
    assert line.startswith("honker worker: pid="), line
    return child


def call(q: honker.Queue, task: str, *args: Any) -> TaskResult[Any]:
    job_id = q.enqueue({ENVELOPE_KEY: {"task": task, "args": list(args), "kwargs": {}}})
    return TaskResult(q.db, q, job_id)


def until(check: Callable[[], Any], what: str) -> Any:
    return eventually(check, what=what)


# -- cancel, progress and failures with a worker process --------------------------------


@pytest.mark.parametrize(("task", "seen"), [("wait_async", "CancelledError"), ("wait_sync", "")])
def test_cancelling_a_running_task_in_a_worker_process(
    db: honker.Database,
    db_path: str,
    tmp_path: Path,
    children: list[Child],
    task: str,
    seen: str,
) -> None:
    q = db.queue("jobs", visibility_timeout_s=30)
    worker = start_worker(db_path, tmp_path)
    children.append(worker)
    result = call(q, task, "t")
    until(lambda: (tmp_path / "t.started").exists(), "the task to start")
    assert result.status() == "running"
    progress = until(result.progress, "the task's progress to be written")
    expected = (0.25, "t started") if task == "wait_async" else (0.5, "t halfway")
    assert (progress["fraction"], progress["message"]) == expected
    assert q.get_job(result.id)["progress"] == progress  # type: ignore[index]
    shown = cli(db_path, "job", db_path, str(result.id))
    assert shown.returncode == 0, shown.stderr
    percent = "25% t started" if task == "wait_async" else "50% t halfway"
    assert any(
        line.startswith("progress") and percent in line for line in shown.stdout.splitlines()
    )

    assert q.cancel(result.id) is True
    with pytest.raises(honker.TaskCancelled) as caught:
        result.get(timeout=30)
    assert caught.value.job_id == result.id
    text = (tmp_path / "t.cancelled").read_text()
    assert text == (seen or "cancel_requested=True")
    assert result.status() == "cancelled"
    assert q.get_job(result.id) is None  # it left the live table
    assert q.find_job(result.id) is None  # and is not dead either
    assert q.stats()["cancelled_last_minute"] == 1
    history = q.job_attempts(result.id)
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "cancelled")]
    assert history[0]["worker_id"].startswith("honker-worker-")
    assert history[0]["ended_at"] >= history[0]["started_at"]
    assert q.cancel(result.id) is False  # nothing left to cancel
    os.kill(worker.pid, 15)
    assert worker.wait(timeout=30) == 0


def test_failed_task_raises_taskfailed_with_history(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    q = db.queue("jobs", visibility_timeout_s=30)
    children.append(start_worker(db_path, tmp_path))
    result = call(q, "boom", "x")
    with pytest.raises(honker.TaskFailed) as caught:
        result.get(timeout=60)  # raised once dead-lettered, not after the timeout
    failure = caught.value
    assert (failure.job_id, failure.task_name, failure.attempts) == (result.id, "boom", 2)
    assert failure.error is not None and "ValueError: boom: x" in failure.error
    assert "boom: x" in str(failure)
    assert result.status() == "failed"
    history = q.job_attempts(result.id)
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "retried"), (2, "dead")]
    assert all("boom: x" in h["error"] for h in history)
    assert all(h["duration_s"] >= 0 for h in history)
    shown = cli(db_path, "job", db_path, str(result.id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["attempts_history"] == history
    text = cli(db_path, "job", db_path, str(result.id)).stdout
    assert "#1 retried after" in text and "#2 dead after" in text and "boom: x" in text


def test_a_timeout_is_the_last_error_of_a_job_waiting_to_retry(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    q = db.queue("jobs", visibility_timeout_s=30)
    children.append(start_worker(db_path, tmp_path))
    result = call(q, "too_slow")
    row = until(
        lambda: (r := q.get_job(result.id)) and r["state"] == "pending" and r["attempts"] and r,
        "the first attempt to time out",
    )
    assert row["last_error"] == "timeout after 0.2s"
    assert q.find_job(result.id)["last_error"] == "timeout after 0.2s"  # type: ignore[index]
    listed = q.list_jobs(state="delayed")
    assert [(j["id"], j["last_error"]) for j in listed] == [(result.id, "timeout after 0.2s")]
    assert result.status() == "pending"
    assert [h["outcome"] for h in q.job_attempts(result.id)] == ["retried"]


# -- in-process behaviour ------------------------------------------------------------


def test_current_job_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="outside a running task"):
        honker.current_job()


async def test_current_job_in_async_and_sync_tasks(
    db: honker.Database, clean_registry: None
) -> None:
    q = db.queue("ctx")
    seen: dict[str, Any] = {}
    tasks = TaskRegistry()

    async def in_async() -> str:
        job = honker.current_job()
        seen["async"] = (job.job_id, job.queue, job.attempts, job.task_name)
        with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
            job.set_progress(1.5)
        with pytest.raises(TypeError, match="must be a number"):
            job.set_progress(True)
        with pytest.raises(TypeError, match="message must be a str"):
            job.set_progress(0.5, 3)  # type: ignore[arg-type]
        for i in range(101):  # buffered: only the latest value is written
            job.set_progress(i / 100, f"step {i}")
        return "a"

    def in_sync() -> str:
        job = honker.current_job()
        seen["sync"] = (job.job_id, job.queue, job.attempts, job.task_name)
        job.raise_if_cancelled()  # no request: nothing happens
        assert job.cancel_requested is False
        return "s"

    tasks.register(TaskSpec("in_async", in_async, "ctx"))
    tasks.register(TaskSpec("in_sync", in_sync, "ctx"))
    a = q.enqueue({ENVELOPE_KEY: {"task": "in_async", "args": [], "kwargs": {}}})
    s = q.enqueue({ENVELOPE_KEY: {"task": "in_sync", "args": [], "kwargs": {}}})
    stop = asyncio.Event()
    pool = WorkerPool(db, concurrency=2, registry=tasks)
    runner = asyncio.create_task(pool.run(stop))
    assert await TaskResult(db, q, a).aget(timeout=30) == "a"
    assert await TaskResult(db, q, s).aget(timeout=30) == "s"
    stop.set()
    await asyncio.wait_for(runner, 30)
    assert seen == {"async": (a, "ctx", 1, "in_async"), "sync": (s, "ctx", 1, "in_sync")}
    progress = TaskResult(db, q, a).progress()
    assert progress is not None and (progress["fraction"], progress["message"]) == (1.0, "step 100")


class Outcomes(WorkerObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str | None]] = []

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        self.seen.append((job.id, outcome, error))


async def test_a_sync_task_failing_after_a_cancel_request_ends_cancelled(
    db: honker.Database,
) -> None:
    q = db.queue("sc")
    tasks = TaskRegistry()
    started = threading.Event()

    def stubborn() -> None:
        job = honker.current_job()
        started.set()
        assert job.wait_cancelled(60)
        raise RuntimeError("interrupted half way")

    tasks.register(TaskSpec("stubborn", stubborn, "sc", retries=5, retry_delay_s=0))
    result = call(q, "stubborn")
    observer = Outcomes()
    stop = asyncio.Event()
    pool = WorkerPool(db, concurrency=1, registry=tasks, observers=[observer])
    runner = asyncio.create_task(pool.run(stop))
    assert await asyncio.to_thread(started.wait, 30)
    assert q.cancel(result.id)
    with pytest.raises(honker.TaskCancelled):
        await result.aget(timeout=30)
    stop.set()
    await asyncio.wait_for(runner, 30)
    [(job_id, outcome, error)] = observer.seen
    assert (job_id, outcome) == (result.id, "cancelled")
    assert error is not None and "interrupted half way" in error
    [attempt] = q.job_attempts(result.id)
    assert attempt["outcome"] == "cancelled" and "interrupted half way" in attempt["error"]


def test_cancelling_a_pending_job_makes_its_result_raise(db: honker.Database) -> None:
    q = db.queue("p")
    result = call(q, "anything")
    assert result.status() == "pending"
    assert q.cancel(result.id) is True
    assert result.status() == "cancelled"
    with pytest.raises(honker.TaskCancelled):
        result.get(timeout=5)
    assert q.stats()["cancelled_last_minute"] == 1


def test_a_retry_of_a_job_asked_to_stop_ends_it_cancelled(db: honker.Database) -> None:
    q = db.queue("r")
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    assert q.cancel(job_id) is True
    ops = db.engine.ops
    applied = db.engine.write(ops.apply_outcomes, "w", [("retry", job_id, 0, "oops")])
    assert applied == [True]
    assert q.get_job(job_id) is None
    assert TaskResult(db, q, job_id).status() == "cancelled"


def test_attempt_history_keeps_the_last_20(db: honker.Database) -> None:
    q = db.queue("h")
    job_id = q.enqueue("x", max_attempts=30)
    ops = db.engine.ops
    for attempt in range(1, 26):
        [job] = q.claim_batch("w", 1)
        assert job.attempts == attempt
        now = time.time()
        row = (job_id, attempt, "w", now, now, 0.0, f"error {attempt}")
        db.engine.write(ops.apply_outcomes, "w", [("retry", job_id, 0, f"error {attempt}")], [row])
    history = q.job_attempts(job_id)
    assert [h["attempt"] for h in history] == list(range(6, 26))
    assert history[-1]["error"] == "error 25"
    assert q.get_job(job_id)["last_error"] == "error 25"  # type: ignore[index]


def test_a_manual_retry_records_the_last_error(db: honker.Database) -> None:
    q = db.queue("m")
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None and job.retry(60, "upstream 503")
    assert q.get_job(job_id)["last_error"] == "upstream 503"  # type: ignore[index]


# -- retention -----------------------------------------------------------------------


def test_retention_policy_parsing() -> None:
    assert parse_duration("30d", "dead") == 30 * 86400
    assert parse_duration("12h", "x") == 12 * 3600
    assert parse_duration("15m", "x") == 900
    assert parse_duration("45s", "x") == 45
    assert parse_duration(7, "x") == 7
    assert parse_duration(None, "x") is None
    policy = Retention.of({"dead": "30d", "results": "1h", "stream_events": None})
    assert (policy.dead, policy.results, policy.stream_events) == (2592000, 3600, None)
    assert Retention.of(None) == Retention()
    assert Retention().dead is None and Retention().history == 3600
    with pytest.raises(ValueError, match="unknown retention key 'deadd'"):
        Retention.of({"deadd": "1d"})
    with pytest.raises(ValueError, match=r"retention 'dead': cannot read duration '30 days'"):
        Retention(dead="30 days")
    with pytest.raises(ValueError, match="non-negative"):
        Retention(results=-1)
    with pytest.raises(TypeError, match="retention 'notifications'"):
        Retention(notifications=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dict or honker\.Retention"):
        Retention.of("30d")  # type: ignore[arg-type]


def test_a_bad_retention_at_open_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(ValueError, match="unknown retention key 'bogus'"):
        honker.open(str(path), retention={"bogus": "1d"})
    assert not path.exists()
    with honker.open(str(path), retention=Retention(dead="1d")) as db:
        assert db.retention.dead == 86400


def age_everything(db: honker.Database, seconds: int) -> None:
    with db.transaction() as tx:
        tx.execute(sql_for(db, "UPDATE _honker_dead SET died_at = died_at - ?"), [seconds])
        tx.execute(sql_for(db, "UPDATE _honker_results SET created_at = created_at - ?"), [seconds])
        tx.execute(
            sql_for(db, "UPDATE _honker_notifications SET created_at = created_at - ?"), [seconds]
        )
        tx.execute(sql_for(db, "UPDATE _honker_stream SET created_at = created_at - ?"), [seconds])
        tx.execute(
            sql_for(db, "UPDATE _honker_job_attempts SET ended_at = ended_at - ?"), [seconds]
        )


def fill(db: honker.Database, n: int = 5) -> dict[str, list[int]]:
    """n dead jobs, n results, n notifications, n stream events and a finished job's
    attempt history; returns the ids."""
    q = db.queue("ret")
    ids: dict[str, list[int]] = {"dead": [], "done": []}
    for i in range(n):
        q.enqueue(i)
    for job in q.claim_batch("w", n):
        job.fail("bad")
        ids["dead"].append(job.id)
    done = q.enqueue("finished")
    assert len(q.claim_batch("w", 1)) == 1
    now = time.time()
    db.engine.write(
        db.engine.ops.apply_outcomes,
        "w",
        [("done", done, '"ok"', 0)],
        [(done, 1, "w", now, now, 0.0, None)],
    )
    ids["done"].append(done)
    for i in range(n):
        q.save_result(1000 + i, {"i": i})
        with db.transaction() as tx:
            tx.notify("ch", i)
        db.stream("events").publish({"i": i})
    return ids


def counts(db: honker.Database) -> dict[str, int]:
    row = db.query(
        "SELECT (SELECT COUNT(*) FROM _honker_dead) AS dead, "
        "(SELECT COUNT(*) FROM _honker_results) AS results, "
        "(SELECT COUNT(*) FROM _honker_notifications) AS notifications, "
        "(SELECT COUNT(*) FROM _honker_stream) AS stream_events, "
        "(SELECT COUNT(*) FROM _honker_job_attempts) AS history"
    )[0]
    return dict(row)


@pytest.mark.sqlite_only("reads SQLite's EXPLAIN QUERY PLAN")
def test_retention_finds_old_rows_through_an_index(db: honker.Database) -> None:
    from honker import _ops

    # every target but the small counter table and the reference-shaped results table
    indexed = set(_ops.RETENTION_TARGETS) - set(_ops._MONOTONE_TARGETS)
    assert set(_ops.RETENTION_INDEXES) == indexed - {"results", "history.stats_cancelled"}
    for target, index in _ops.RETENTION_INDEXES.items():
        table, key, _, _ = _ops.RETENTION_TARGETS[target]
        where, params = _ops._retention_where(target, 3600)
        source = f"{table} INDEXED BY {index}"
        plan = db.query(
            f"EXPLAIN QUERY PLAN SELECT DISTINCT {key} FROM {source} WHERE {where} LIMIT 500",
            params,
        )
        assert not any(row["detail"].startswith("SCAN") for row in plan), (target, plan)
        assert db.engine.read(_ops.retention_candidates, target, 3600, 500) == []


def test_prune_applies_each_window_in_small_batches(db: honker.Database) -> None:
    fill(db)
    before = counts(db)
    assert before == {
        "dead": 5,
        "results": 6,
        "notifications": 5,
        "stream_events": 5,
        "history": 1,
    }
    age_everything(db, 2 * 86400)
    for i in range(2):  # young rows after the old ones: kept
        with db.transaction() as tx:
            tx.notify("ch", f"fresh {i}")
        db.stream("events").publish({"fresh": i})
    policy = Retention(dead="1d", results="1h", notifications="1d", stream_events="1d")
    deleted = prune(db.engine, policy, batch=2)
    assert deleted == {
        "dead": 5,
        "results": 6,
        "notifications": 5,
        "stream_events": 5,
        "history": 1,
    }
    assert counts(db) == dict.fromkeys(before, 0) | {"notifications": 2, "stream_events": 2}


def test_the_default_policy_keeps_everything_but_expired_results(db: honker.Database) -> None:
    ids = fill(db)
    q = db.queue("ret")
    q.save_result(5000, "short", ttl=1)
    with db.transaction() as tx:
        tx.execute(
            sql_for(
                db, "UPDATE _honker_results SET expires_at = unixepoch() - 1 WHERE job_id = 5000"
            )
        )
    age_everything(db, 400 * 86400)
    deleted = prune(db.engine, Retention())
    assert deleted["results"] == 1 and deleted["dead"] == 0
    assert deleted["history"] == 1  # the history of the finished job (gone after an hour)
    after = counts(db)
    assert after == {"dead": 5, "results": 6, "notifications": 5, "stream_events": 5, "history": 0}
    assert q.find_job(ids["dead"][0]) is not None


def test_history_of_dead_jobs_stays_while_they_are_dead(db: honker.Database) -> None:
    q = db.queue("hd")
    job_id = q.enqueue("x", max_attempts=1)
    assert len(q.claim_batch("w", 1)) == 1
    now = time.time()
    db.engine.write(
        db.engine.ops.apply_outcomes,
        "w",
        [("dead", job_id, None, "bad")],
        [(job_id, 1, "w", now, now, 0.0, "bad")],
    )
    age_everything(db, 10 * 86400)
    prune(db.engine, Retention())
    assert [h["outcome"] for h in q.job_attempts(job_id)] == ["dead"]
    assert q.discard_dead(job_id) == 1
    prune(db.engine, Retention())
    assert q.job_attempts(job_id) == []


async def test_a_worker_applies_retention_when_no_scheduler_leads(
    db_path: str, clean_registry: None
) -> None:
    db = honker.open(db_path, retention={"dead": "1d"})
    try:
        fill(db, 2)
        age_everything(db, 2 * 86400)
        tasks = TaskRegistry()
        tasks.register(TaskSpec("noop", lambda: None, "ret"))
        # another process leads the scheduler: the worker leaves retention to it
        assert db.engine.write(db.engine.ops.lock_acquire, "honker-scheduler", "other", 60)
        pool = WorkerPool(db, concurrency=1, registry=tasks)
        pool.retention_interval_s = 0.05
        stop = asyncio.Event()
        runner = asyncio.create_task(pool.run(stop))
        await asyncio.sleep(0.5)
        assert counts(db)["dead"] == 2
        assert db.engine.write(db.engine.ops.lock_release, "honker-scheduler", "other")
        for _ in range(600):
            if counts(db)["dead"] == 0:
                break
            await asyncio.sleep(0.05)
        assert counts(db)["dead"] == 0
        assert "honker-retention" in {lock["name"] for lock in db.locks_info()}
        stop.set()
        await asyncio.wait_for(runner, 30)
        assert "honker-retention" not in {lock["name"] for lock in db.locks_info()}
    finally:
        db.close()


async def test_the_scheduler_leader_applies_retention(db_path: str) -> None:
    db = honker.open(db_path, retention={"notifications": "1h"})
    try:
        fill(db, 3)
        age_everything(db, 2 * 3600)
        sched = honker.Scheduler(db)
        sched.add(name="tick", queue="ret", schedule="@every 3600s")
        sched.retention_interval_s = 0.05
        stop = asyncio.Event()
        runner = asyncio.create_task(sched.run(stop))
        for _ in range(600):
            if counts(db)["notifications"] == 0:
                break
            await asyncio.sleep(0.05)
        assert counts(db)["notifications"] == 0
        assert counts(db)["dead"] == 3  # not in this policy
        stop.set()
        await asyncio.wait_for(runner, 30)
    finally:
        db.close()


def test_cli_prune_applies_the_policy_once(db: honker.Database, db_path: str) -> None:
    fill(db, 3)
    age_everything(db, 3 * 86400)
    out = cli(db_path, "prune", db_path, "--dead", "2d", "--stream-events", "1d", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["dead"] == 3 and report["stream_events"] == 3
    assert report["notifications"] == 0
    assert counts(db)["dead"] == 0 and counts(db)["notifications"] == 3
    out = cli(db_path, "prune", db_path, "--notifications", "1d")
    assert out.returncode == 0, out.stderr
    assert "notifications: 3" in out.stdout
    bad = cli(db_path, "prune", db_path, "--dead", "soon")
    assert bad.returncode == 2
    assert "retention 'dead': cannot read duration 'soon'" in bad.stderr
    missing = cli(db_path, "prune", str(Path(db_path).with_name("nope.db")))
    assert missing.returncode != 0 and "no database file" in missing.stderr


def test_a_queue_whose_only_job_was_cancelled_is_still_listed(db: honker.Database) -> None:
    q = db.queue("cancel-only")
    job_id = q.enqueue({"x": 1})
    q.cancel(job_id)
    assert q.get_job(job_id) is None
    assert "cancel-only" in db.queue_names()
