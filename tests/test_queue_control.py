"""Unique jobs, paused queues, Snooze and rows that cannot be decoded (honker for Python only).

Cross-process behaviour runs real worker processes; rows "another binding wrote" are
written with plain sqlite3 SQL.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

import honker
from helpers import Child, python_env, sql_for
from honker import _ops
from honker._observe import WorkerObserver
from honker.queue import Job
from honker.tasks import envelope
from honker.worker import WorkerPool

pytestmark = pytest.mark.engines


def count(db: honker.Database, sql: str) -> int:
    return int(next(iter(db.query(sql)[0].values())))


def live(db: honker.Database) -> int:
    return count(db, "SELECT COUNT(*) FROM _honker_live")


def unique_rows(db: honker.Database) -> list[dict[str, Any]]:
    return db.query("SELECT queue, key, job_id, window_s, until FROM _honker_unique ORDER BY 1, 2")


def sql_claim(path: str, queue: str) -> str:
    """``honker_claim_batch`` on a plain sqlite3 connection with the SQL functions."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        honker.attach(conn)
        return str(
            conn.execute("SELECT honker_claim_batch(?, 'w', 10, 60)", (queue,)).fetchone()[0]
        )
    finally:
        conn.close()


# -- unique jobs -----------------------------------------------------------------------


def test_a_held_key_returns_the_existing_job_and_writes_nothing(db: honker.Database) -> None:
    q = db.queue("orders")
    first = q.enqueue({"order": 42}, unique_key="order-42")
    assert q.enqueue({"order": 42, "again": True}, unique_key="order-42") == first
    assert live(db) == 1
    assert q.get_job(first)["payload"] == '{"order": 42}'  # type: ignore[index]
    assert q.unique_holder("order-42") == first
    # processing holds the key too
    job = q.claim_one("w")
    assert job is not None and job.id == first
    assert q.enqueue({"order": 42}, unique_key="order-42") == first
    assert live(db) == 1
    # another key, another queue: independent
    other = q.enqueue({"order": 43}, unique_key="order-43")
    elsewhere = db.queue("audit").enqueue({"order": 42}, unique_key="order-42")
    assert len({first, other, elsewhere}) == 3
    # done: the key is free again (no window) and its row is gone
    assert job.ack()
    assert q.unique_holder("order-42") is None
    assert [r["key"] for r in unique_rows(db) if r["queue"] == "orders"] == ["order-43"]
    second = q.enqueue({"order": 42}, unique_key="order-42")
    assert second not in (first, other, elsewhere)


def test_dead_and_cancelled_jobs_release_their_key(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=1)
    a = q.enqueue("a", unique_key="k")
    job = q.claim_one("w")
    assert job is not None and job.fail("boom")
    b = q.enqueue("b", unique_key="k")
    assert b != a
    assert q.cancel(b)
    c = q.enqueue("c", unique_key="k")
    assert c not in (a, b)
    # retry that spends the budget dead-letters through the same path
    job = q.claim_one("w")
    assert job is not None and job.retry(0, "again")
    assert count(db, "SELECT COUNT(*) FROM _honker_dead") == 2
    assert q.enqueue("d", unique_key="k") not in (a, b, c)
    # an expired pending job swept to dead releases its key
    e = q.enqueue("e", unique_key="exp", expires=-1)
    assert q.sweep_expired() == 1
    assert q.enqueue("e2", unique_key="exp") != e


def test_the_window_covers_done_and_dead_jobs_then_ends(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=1)
    done = q.enqueue("x", unique_key="daily", unique_for_s=3600)
    job = q.claim_one("w")
    assert job is not None and job.ack()
    assert live(db) == 0
    assert q.enqueue("y", unique_key="daily", unique_for_s=3600) == done
    assert live(db) == 0  # nothing written
    dead = q.enqueue("z", unique_key="dead-one", unique_for_s=3600)
    job = q.claim_one("w")
    assert job is not None and job.fail("nope")
    assert q.enqueue("z", unique_key="dead-one") == dead
    # a short window ends: wait until SQLite's clock passes it
    short = q.enqueue("s", unique_key="short", unique_for_s=1)
    job = q.claim_one("w")
    assert job is not None and job.ack()
    assert q.enqueue("s", unique_key="short") == short
    deadline = time.monotonic() + 10
    while q.unique_holder("short") is not None:
        assert time.monotonic() < deadline, "the 1 s window never ended"
        time.sleep(0.2)
    assert q.enqueue("s", unique_key="short") != short


def test_batch_acks_and_the_worker_path_release_keys(db: honker.Database) -> None:
    q = db.queue("q")
    ids = [q.enqueue(i, unique_key=f"k{i}") for i in range(3)]
    jobs = q.claim_batch("w", 3)
    assert q.ack_batch([j.id for j in jobs], "w") == 3
    assert unique_rows(db) == []
    ids = [q.enqueue(i, unique_key=f"k{i}", unique_for_s=60) for i in range(3)]
    jobs = q.claim_batch("w", 3)
    outcomes = [("done", j.id, None, 0) for j in jobs]
    assert db.engine.write(db.engine.ops.apply_outcomes, "w", outcomes) == [True] * 3
    rows = unique_rows(db)
    assert [r["job_id"] for r in rows] == ids and all(r["until"] for r in rows)


def test_unique_inside_the_callers_transaction(db: honker.Database) -> None:
    q = db.queue("q")
    with db.transaction() as tx:
        a = q.enqueue("a", tx=tx, unique_key="k")
        assert q.enqueue("b", tx=tx, unique_key="k") == a
    assert live(db) == 1
    with pytest.raises(RuntimeError, match="rolled back on purpose"):
        with db.transaction() as tx:
            q.enqueue("c", tx=tx, unique_key="rolled")
            raise RuntimeError("rolled back on purpose")
    assert q.unique_holder("rolled") is None
    assert live(db) == 1


def test_a_key_left_by_another_bindings_ack_is_taken_over(db: honker.Database) -> None:
    q = db.queue("q")
    a = q.enqueue("a", unique_key="k")
    # the reference extension acks by deleting the row; it does not know _honker_unique
    with db.transaction() as tx:
        tx.execute(sql_for(db, "DELETE FROM _honker_live WHERE id = ?"), [a])
    b = q.enqueue("b", unique_key="k")
    assert b != a and unique_rows(db)[0]["job_id"] == b


def test_finished_windows_are_pruned_by_later_unique_enqueues(db: honker.Database) -> None:
    q = db.queue("q")
    with db.transaction() as tx:
        for i in range(20):
            tx.execute(
                sql_for(
                    db,
                    "INSERT INTO _honker_unique (queue, key, job_id, window_s, until) "
                    "VALUES ('q', ?, ?, 5, unixepoch() - 10)",
                ),
                [f"old{i}", 1000 + i],
            )
    q.enqueue("n", unique_key="new")
    q.enqueue("m", unique_key="new2")
    assert [r["key"] for r in unique_rows(db)] == ["new", "new2"]


@pytest.mark.sqlite_only("checks SQLite's EXPLAIN QUERY PLAN of the SQLite statements")
def test_releasing_keys_is_an_indexed_delete(db: honker.Database) -> None:
    db.queue("q")
    conn = sqlite3.connect(db.path)
    try:
        for sql, params in (
            (_ops._UNIQUE_RELEASE_ONE, (1,)),
            (_ops._UNIQUE_RELEASE_MANY, ("[1, 2]",)),
            (_ops._UNIQUE_PRUNE, ()),
        ):
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SCAN _honker_unique" not in plan, (sql, plan)
            assert "_honker_unique_job" in plan or "_honker_unique_until" in plan, plan
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"unique_key": 42}, TypeError, "unique_key must be a str, not int"),
        ({"unique_key": b"k"}, TypeError, "unique_key must be a str, not bytes"),
        ({"unique_key": ""}, ValueError, "unique_key must not be empty"),
        ({"unique_key": "k", "unique_for_s": -1}, ValueError, "unique_for_s must be a finite"),
        ({"unique_key": "k", "unique_for_s": math.inf}, ValueError, "finite"),
        ({"unique_key": "k", "unique_for_s": "60"}, TypeError, "unique_for_s must be a number"),
        ({"unique_key": "k", "unique_for_s": True}, TypeError, "must be a number, not bool"),
        ({"unique_for_s": 60}, ValueError, "unique_for_s needs a unique_key"),
    ],
)
def test_bad_unique_arguments_write_nothing(
    db: honker.Database, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    q = db.queue("q")
    with pytest.raises(error, match=match):
        q.enqueue("x", **kwargs)
    assert live(db) == 0 and unique_rows(db) == []


RACER = """
import sys
import honker
db = honker.open(sys.argv[1])
q = db.queue("race")
print("READY", flush=True)
sys.stdin.readline()
print(q.enqueue({"from": sys.argv[2]}, unique_key="order-42"), flush=True)
"""


def test_eight_processes_racing_one_key_make_exactly_one_job(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    db.queue("race")
    kids = [Child(RACER, db_path, str(i)) for i in range(8)]
    children.extend(kids)
    for kid in kids:
        kid.expect("READY")
    for kid in kids:
        kid.send("go")
    ids = {int(kid.readline()) for kid in kids}
    assert len(ids) == 1
    assert db.query("SELECT id FROM _honker_live WHERE queue = 'race'") == [{"id": ids.pop()}]
    assert len(unique_rows(db)) == 1


def test_task_unique_true_keys_on_task_and_arguments(
    db: honker.Database, clean_registry: None
) -> None:
    q = db.queue("q")

    @q.task(name="send", unique=True)
    def send(to: str, subject: str = "") -> None: ...

    @q.task(name="other", unique=True)
    def other(to: str, subject: str = "") -> None: ...

    a = send("a@x", subject="hi").id
    assert send("a@x", subject="hi").id == a
    assert send.apply_async(["a@x"], {"subject": "hi"}).id == a
    assert send("b@x", subject="hi").id != a
    assert other("a@x", subject="hi").id != a
    assert live(db) == 3


def test_task_unique_key_function_and_window(db: honker.Database, clean_registry: None) -> None:
    q = db.queue("q")

    @q.task(name="charge", unique=lambda order_id, **_: f"order-{order_id}", unique_for_s=600)
    def charge(order_id: int, amount: int = 0) -> None: ...

    @q.task(name="maybe", unique=lambda n: None if n < 0 else f"n{n}")
    def maybe(n: int) -> None: ...

    first = charge(7, amount=100).id
    assert charge(7, amount=999).id == first  # same order, different amount
    assert charge(8).id != first
    assert q.unique_holder("order-7") == first
    assert maybe(-1).id != maybe(-1).id  # None: this call is not unique
    assert maybe(1).id == maybe(1).id


def test_bad_task_unique_options(db: honker.Database, clean_registry: None) -> None:
    q = db.queue("q")
    with pytest.raises(TypeError, match="unique must be True, False, None or a key function"):
        q.task(name="t1", unique="yes")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="unique_for_s needs unique="):
        q.task(name="t2", unique_for_s=10)
    with pytest.raises(ValueError, match="unique_for_s must be a finite number"):
        q.task(name="t3", unique=True, unique_for_s=-5)

    @q.task(name="t4", unique=lambda n: n)
    def t4(n: int) -> None: ...

    with pytest.raises(TypeError, match="must return a str or None, not int"):
        t4(5)
    assert live(db) == 0


TRACED_UNIQUE = """
import json
from apps import obsapp
from honker import tracing
tracing.enable()
q = obsapp.obs
first = q.enqueue({"x": 1}, unique_key="k")
again = q.enqueue({"x": 2}, unique_key="k")
with obsapp.db.transaction() as tx:
    in_tx = q.enqueue({"x": 3}, tx=tx, unique_key="k")
rows = obsapp.db.query("SELECT job_id FROM _honker_job_trace")
print(json.dumps({"ids": [first, again, in_tx], "traced": [r["job_id"] for r in rows]}))
"""


def test_traced_unique_enqueue_returns_the_holder_and_traces_only_new_jobs(
    db: honker.Database, db_path: str, tmp_path: Any
) -> None:
    from obs_support import app_env

    child = Child(TRACED_UNIQUE, env=app_env(db_path, HONKER_TEST_SPANS=str(tmp_path / "s.jsonl")))
    out = json.loads(child.readline())
    assert child.wait() == 0, child.stderr
    first = out["ids"][0]
    assert out["ids"] == [first] * 3 and out["traced"] == [first]
    assert live(db) == 1


# -- pause and resume ------------------------------------------------------------------


def test_pause_stops_every_claim_path_and_keeps_jobs_pending(db: honker.Database) -> None:
    q = db.queue("work")
    assert db.paused_queues() == [] and not q.is_paused()
    ids = [q.enqueue(i) for i in range(3)]
    assert q.pause() is True
    assert q.pause() is False  # already paused
    assert q.is_paused() and db.paused_queues() == ["work"]
    assert q.claim_batch("w", 10) == [] and q.claim_one("w") is None
    if db.engine.kind == "sqlite":
        assert sql_claim(db.path, "work") == "[]"
    assert q.next_claim_at() == 0
    stats = q.stats()
    assert stats["paused"] is True and stats["pending"] == 3
    assert [r["state"] for r in db.query("SELECT state FROM _honker_live")] == ["pending"] * 3
    assert db.queue("other").stats()["paused"] is False
    assert q.resume() is True and q.resume() is False
    assert [j.id for j in q.claim_batch("w", 10)] == ids


def test_a_queue_can_be_paused_before_it_has_jobs(db: honker.Database) -> None:
    q = db.queue("later")
    q.pause()
    assert "later" in db.queue_names()
    q.enqueue("x")
    assert q.claim_one("w") is None


async def test_the_claim_iterator_waits_through_a_pause(db: honker.Database) -> None:
    q = db.queue("work")
    q.pause()
    q.enqueue("x")
    claims = q.claim("w", idle_poll_s=None)
    nxt = asyncio.ensure_future(claims.__anext__())
    await asyncio.sleep(0.3)
    assert not nxt.done()
    await db.engine.awrite(db.engine.ops.queue_resume, "work")  # a commit wakes the iterator
    job = await asyncio.wait_for(nxt, 10)
    assert job.payload == "x"
    claims.close()


# A worker process running two queues' tasks; any line on stdin stops it.
WORKER = """
import asyncio, sys
import honker
from honker.worker import WorkerPool

db = honker.open(sys.argv[1])
work, other = db.queue("work"), db.queue("other")
runs = {}

@work.task(name="job")
def job(n):
    print(f"RAN {n}\\n", end="", flush=True)  # one write: lines of two threads never mix
    return n

@other.task(name="marker")
def marker(n):
    print(f"MARK {n}", flush=True)

@work.task(name="snoozer", retries=1)
def snoozer(key):
    runs[key] = runs.get(key, 0) + 1
    print(f"SNOOZER {key} {runs[key]}", flush=True)
    if runs[key] < 3:
        raise honker.Snooze(0)
    return runs[key]

async def main():
    pool = WorkerPool(db, concurrency=2, idle_poll_s=None, grace_period_s=1)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin, stop.set)
    print("READY", flush=True)
    await pool.run(stop)
    print("STOPPED", flush=True)

asyncio.run(main())
"""


def task_job(name: str, *args: Any) -> Any:
    return envelope(name, args, {})


def start_worker(db_path: str, children: list[Child]) -> Child:
    worker = Child(WORKER, db_path)
    children.append(worker)
    worker.expect("READY")
    return worker


def test_a_worker_process_stops_claiming_while_paused_and_resumes(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    work, other = db.queue("work"), db.queue("other")
    worker = start_worker(db_path, children)
    work.enqueue(task_job("job", 1))
    assert worker.readline() == "RAN 1"
    work.pause()
    paused_ids = [work.enqueue(task_job("job", n)) for n in (2, 3)]
    other.enqueue(task_job("marker", 1))  # committed after the paused jobs
    assert worker.readline() == "MARK 1"  # the worker woke (and claimed) after them
    time.sleep(0.5)
    rows = db.query("SELECT id, state, attempts FROM _honker_live ORDER BY id")
    assert rows == [{"id": i, "state": "pending", "attempts": 0} for i in paused_ids]
    work.resume()  # a commit: wakes the producer (idle_poll_s=None: no fallback poll)
    assert sorted(worker.readline() for _ in range(2)) == ["RAN 2", "RAN 3"]
    worker.send("stop")
    worker.expect("STOPPED")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "honker", *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )


def test_cli_pause_resume_and_stats(db: honker.Database, db_path: str) -> None:
    q = db.queue("mail")
    q.enqueue("x")
    out = cli("pause", db_path, "mail")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "queue 'mail' paused"
    assert q.is_paused()
    assert cli("pause", db_path, "mail").stdout.strip() == "queue 'mail' was already paused"
    stats = cli("stats", db_path)
    assert "mail (paused)" in stats.stdout
    listed = cli("stats", db_path, "--json")
    assert '"paused": true' in listed.stdout
    out = cli("resume", db_path, "mail", "--json")
    assert (
        out.returncode == 0 and '"paused": false' in out.stdout and '"changed": true' in out.stdout
    )
    assert not q.is_paused()
    if db.engine.kind == "sqlite":  # (a URL names no file)
        missing = cli("pause", db_path + ".nope", "mail")
        assert missing.returncode != 0 and "no database file" in missing.stderr


# -- snooze ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "error", "match"),
    [
        (-1, ValueError, "Snooze seconds must be a finite number >= 0, got -1"),
        (math.nan, ValueError, "finite"),
        ("5", TypeError, "Snooze seconds must be a number, not str"),
        (None, TypeError, "not NoneType"),
        (True, TypeError, "not bool"),
    ],
)
def test_bad_snooze_seconds(seconds: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        honker.Snooze(seconds)


def test_snooze_rounds_up_to_whole_seconds() -> None:
    assert honker.Snooze(0).delay_s == 0
    assert honker.Snooze(0.2).delay_s == 1
    assert honker.Snooze(30).seconds == 30


def test_a_snoozing_task_in_a_worker_process_keeps_its_attempt_budget(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    # budget 1: had the snoozes used attempts, the third run would be dead-lettered
    work = db.queue("work")
    worker = start_worker(db_path, children)
    job_id = work.enqueue(task_job("snoozer", "a"), max_attempts=1)
    assert [worker.readline() for _ in range(3)] == [f"SNOOZER a {n}" for n in (1, 2, 3)]
    assert honker.TaskResult(db, work, job_id).get(timeout=30) == 3
    assert count(db, "SELECT COUNT(*) FROM _honker_dead") == 0
    worker.send("stop")
    worker.expect("STOPPED")


class Outcomes(WorkerObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.snoozed = asyncio.Event()

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        self.seen.append((job.id, outcome))
        if outcome == "snoozed":
            self.snoozed.set()


async def test_observers_see_snoozed_and_the_job_is_due_later(
    db: honker.Database, clean_registry: None
) -> None:
    q = db.queue("q")

    @q.task(name="later")
    def later() -> None:
        raise honker.Snooze(3600)

    job_id = later().id
    observer = Outcomes()
    pool = WorkerPool(db, concurrency=1, observers=[observer])
    stop = asyncio.Event()
    run = asyncio.ensure_future(pool.run(stop))
    await asyncio.wait_for(observer.snoozed.wait(), 10)
    stop.set()
    await run
    assert observer.seen == [(job_id, "snoozed")]
    row = db.query(
        sql_for(
            db, "SELECT state, attempts, worker_id, run_at - unixepoch() AS wait FROM _honker_live"
        )
    )[0]
    assert row["state"] == "pending" and row["attempts"] == 0 and row["worker_id"] is None
    assert 3590 <= row["wait"] <= 3600


def test_snooze_op_needs_a_valid_claim(db: honker.Database) -> None:
    q = db.queue("q")
    q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    assert db.engine.write(
        db.engine.ops.apply_outcomes, "other-worker", [("snooze", job.id, 5, None)]
    ) == [False]
    assert db.engine.write(db.engine.ops.apply_outcomes, "w", [("snooze", job.id, 0, None)]) == [
        True
    ]
    assert q.claim_one("w") is not None


# -- rows another binding wrote that cannot be decoded ---------------------------------


def write_bad_rows(db_path: str, queue: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO _honker_live (queue, payload, priority) VALUES (?, X'FFFE', 5)", (queue,)
        )
        conn.execute(
            "INSERT INTO _honker_live (queue, payload, priority) VALUES (?, 'not json', 5)",
            (queue,),
        )
        conn.execute(
            "INSERT INTO _honker_live (queue, payload, priority) "
            "VALUES (?, CAST(X'7B2261223A22C3' AS TEXT), 4)",  # '{"a":"' + a cut UTF-8 lead
            (queue,),
        )
    finally:
        conn.close()


@pytest.mark.sqlite_only("invalid UTF-8 text can be stored only in SQLite")
def test_claims_dead_letter_undecodable_rows_and_go_on(db: honker.Database, db_path: str) -> None:
    q = db.queue("work")
    write_bad_rows(db_path, "work")
    good = q.enqueue({"ok": True})
    jobs = q.claim_batch("w", 10)
    assert [(j.id, j.payload) for j in jobs if j.id == good] == [(good, {"ok": True})]
    assert {j._raw for j in jobs} == {"not json", '{"ok": true}'}
    dead = db.query(
        "SELECT hex(CAST(payload AS BLOB)) AS hex, typeof(payload) AS type, attempts, "
        "last_error FROM _honker_dead ORDER BY id"
    )
    assert [(d["hex"], d["type"], d["attempts"]) for d in dead] == [
        ("FFFE", "text", 0),
        ("7B2261223A22C3", "text", 0),
    ]
    assert all(d["last_error"].startswith("payload is not valid UTF-8: ") for d in dead)
    assert "0xff" in dead[0]["last_error"]
    assert q.stats()["dead"] == 2
    # inspection reads them (undecodable bytes shown as U+FFFD) instead of failing
    listed = {j["id"]: j["payload"] for j in q.list_jobs(state="dead")}
    assert sorted(listed.values()) == ['{"a":"\ufffd', "\ufffd\ufffd"]
    assert q.count_jobs(search="a") == 1
    found = q.find_job(min(listed))
    assert found is not None and found["payload"] == "\ufffd\ufffd"


@pytest.mark.sqlite_only("invalid UTF-8 text can be stored only in SQLite")
def test_claim_one_and_the_sql_function_skip_undecodable_rows(
    db: honker.Database, db_path: str
) -> None:
    q = db.queue("work")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("INSERT INTO _honker_live (queue, payload) VALUES ('work', X'FF')")
    conn.close()
    good = q.enqueue("fine")
    job = q.claim_one("w")
    assert job is not None and job.id == good and job.payload == "fine"
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("INSERT INTO _honker_live (queue, payload) VALUES ('sqlq', X'C0AF')")
    conn.close()
    other = db.queue("sqlq").enqueue(1)
    claimed = sql_claim(db.path, "sqlq")
    assert f'"id":{other}' in claimed
    assert count(db, "SELECT COUNT(*) FROM _honker_dead") == 2
    # a dead row with such bytes can be put back and discarded without errors
    assert q.retry_dead() == 1
    assert q.claim_batch("w", 5) == []  # dead-lettered again
    assert q.discard_dead() == 1


@pytest.mark.sqlite_only("invalid UTF-8 text can be stored only in SQLite")
def test_a_worker_process_runs_the_valid_job_behind_bad_rows(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    work = db.queue("work")
    write_bad_rows(db_path, "work")
    job_id = work.enqueue(task_job("job", 7))
    worker = start_worker(db_path, children)
    assert worker.readline() == "RAN 7"
    assert honker.TaskResult(db, work, job_id).get(timeout=30) == 7
    errors = [r["last_error"] for r in db.query("SELECT last_error FROM _honker_dead ORDER BY id")]
    assert len(errors) == 3
    assert errors[0].startswith("payload is not valid UTF-8")
    assert errors[1].startswith("payload is not valid JSON")
    assert errors[2].startswith("payload is not valid UTF-8")
    assert live(db) == 0
    worker.send("stop")
    worker.expect("STOPPED")
