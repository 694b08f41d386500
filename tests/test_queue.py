"""Work queue semantics: enqueue, claim order, retries, dead letters, cancel, expiry."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import datetime

import pytest

import honker
from helpers import sql_for

pytestmark = pytest.mark.engines


def dead_rows(db: honker.Database, queue: str | None = None) -> list[dict[str, object]]:
    if queue is None:
        return db.query("SELECT * FROM _honker_dead ORDER BY id")
    return db.query(sql_for(db, "SELECT * FROM _honker_dead WHERE queue = ? ORDER BY id"), [queue])


def age(db: honker.Database, job_id: int, seconds: int) -> None:
    """Move a job's timestamps into the past (as if ``seconds`` had elapsed)."""
    db.engine.write(
        lambda c: c.execute(
            sql_for(
                db,
                "UPDATE _honker_live SET run_at = run_at - ?, "
                "claim_expires_at = claim_expires_at - ?, expires_at = expires_at - ? "
                "WHERE id = ?",
            ),
            (seconds, seconds, seconds, job_id),
        )
    )


def test_enqueue_claim_ack_roundtrip(db: honker.Database) -> None:
    q = db.queue("emails")
    job_id = q.enqueue({"to": "alice@example.com"})
    job = q.claim_one("worker-1")
    assert job is not None
    assert (job.id, job.queue_name, job.worker_id, job.attempts) == (
        job_id,
        "emails",
        "worker-1",
        1,
    )
    assert job.payload == {"to": "alice@example.com"}
    assert job.queue is q and job.state == "processing" and job.max_attempts == 3
    assert job.claim_expires_at >= int(time.time()) + 299
    assert q.claim_one("worker-2") is None
    assert job.ack() is True
    assert job.ack() is False
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]


def test_queue_is_memoized_and_options_checked(db: honker.Database) -> None:
    q = db.queue("a")
    assert db.queue("a") is q
    assert db.queue("a", max_attempts=3) is q
    assert db.queue("a", visibility_timeout_s=300, max_attempts=3) is q
    with pytest.raises(ValueError, match="already opened"):
        db.queue("a", max_attempts=5)
    b = db.queue("b", visibility_timeout_s=10, max_attempts=1)
    assert db.queue("b") is b and b.visibility_timeout_s == 10 and b.max_attempts == 1
    with pytest.raises(ValueError, match="already opened"):
        db.queue("b", visibility_timeout_s=10)


def test_queue_construction_inside_transaction(db: honker.Database) -> None:
    existing = db.queue("exists")
    with db.transaction() as tx:
        assert db.queue("exists") is existing
        with pytest.raises(RuntimeError, match="cannot construct Queue"):
            db.queue("new")
        existing.enqueue(1, tx=tx)
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 1}]


def test_jobs_view(db: honker.Database) -> None:
    q = db.queue("v")
    a = q.enqueue("a")
    b = q.enqueue("b")
    job = q.claim_one("w")
    assert job is not None and job.id == a
    job.fail("boom")
    rows = db.query("SELECT * FROM _honker_jobs ORDER BY id")
    assert list(rows[0]) == [
        "id",
        "queue",
        "payload",
        "state",
        "priority",
        "run_at",
        "worker_id",
        "claim_expires_at",
        "attempts",
        "max_attempts",
        "last_error",
        "created_at",
    ]
    assert [(r["id"], r["state"], r["last_error"]) for r in rows] == [
        (a, "dead", "boom"),
        (b, "pending", None),
    ]


def test_transactional_enqueue_commits_and_rolls_back_with_business_rows(
    db: honker.Database,
) -> None:
    q = db.queue("emails")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders (id) VALUES (1)")
        q.enqueue({"order": 1}, tx=tx)
    with pytest.raises(RuntimeError, match="declined"), db.transaction() as tx:
        tx.execute("INSERT INTO orders (id) VALUES (2)")
        q.enqueue({"order": 2}, tx=tx)
        raise RuntimeError("declined")
    assert db.query("SELECT id FROM orders") == [{"id": 1}]
    jobs = q.claim_batch("w", 10)
    assert [j.payload for j in jobs] == [{"order": 1}]


@pytest.mark.parametrize(
    ("payload", "error"),
    [(datetime.now(), TypeError), (object(), TypeError), (math.nan, ValueError), ({1}, TypeError)],
)
def test_non_json_payload_raises_before_writing(
    db: honker.Database, payload: object, error: type[Exception]
) -> None:
    q = db.queue("q")
    with pytest.raises(error):
        q.enqueue(payload)
    with db.transaction() as tx:
        q.enqueue("ok", tx=tx)
        with pytest.raises(error):
            q.enqueue(payload, tx=tx)
    rows = db.query("SELECT payload FROM _honker_live")
    assert rows == [{"payload": '"ok"'}]


def test_claim_order_priority_run_at_id(db: honker.Database) -> None:
    q = db.queue("q")
    now = int(time.time())
    low = q.enqueue("low", priority=0)
    high = q.enqueue("high", priority=10)
    old = q.enqueue("old", priority=0, run_at=now - 100)
    mid = q.enqueue("mid", priority=5)
    later_same = q.enqueue("low2", priority=0)
    jobs = q.claim_batch("w", 10)
    assert [j.id for j in jobs] == [high, mid, old, low, later_same]
    assert [j.priority for j in jobs] == [10, 5, 0, 0, 0]


def test_delayed_jobs_are_not_claimed_early(db: honker.Database) -> None:
    q = db.queue("q")
    q.enqueue("later", delay=3600)
    q.enqueue("at", run_at=time.time() + 3600)
    q.enqueue("both", delay=0, run_at=time.time() + 3600)  # delay wins
    assert [j.payload for j in q.claim_batch("w", 10)] == ["both"]
    rows = db.query("SELECT payload, run_at - created_at AS d FROM _honker_live ORDER BY id")
    assert [(json.loads(r["payload"]), r["d"] >= 3599) for r in rows] == [
        ("later", True),
        ("at", True),
        ("both", False),
    ]


def test_claim_batch_bounds(db: honker.Database) -> None:
    q = db.queue("q")
    for i in range(5):
        q.enqueue(i)
    assert q.claim_batch("w", 0) == []
    assert q.claim_batch("w", -3) == []
    assert len(q.claim_batch("w", 2.9)) == 2  # type: ignore[arg-type]
    assert len(q.claim_batch("w", 100)) == 3


def test_retry_then_dead_after_budget(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue("x")
    for attempt in (1, 2):
        job = q.claim_one("w")
        assert job is not None and job.attempts == attempt
        assert job.retry(delay_s=0, error=f"fail {attempt}") is True
        row = q.get_job(job_id)
        assert row is not None
        assert (row["state"], row["worker_id"], row["claim_expires_at"]) == ("pending", None, None)
    job = q.claim_one("w")
    assert job is not None and job.attempts == 3
    assert job.retry(delay_s=0, error="third strike") is True
    assert q.get_job(job_id) is None
    dead = dead_rows(db)
    assert [(d["id"], d["attempts"], d["max_attempts"], d["last_error"]) for d in dead] == [
        (job_id, 3, 3, "third strike")
    ]
    assert dead[0]["payload"] == '"x"'


def test_retry_delay_moves_run_at(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    job.retry(delay_s=120, error="later")
    row = q.get_job(job_id)
    assert row is not None and row["run_at"] >= int(time.time()) + 119
    assert q.claim_one("w") is None


def test_fail_dead_letters_regardless_of_attempts(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=10)
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    assert q.fail(job_id, "other-worker", "nope") is False
    assert job.fail("bad payload") is True
    assert job.fail("again") is False
    assert [(d["id"], d["last_error"], d["attempts"]) for d in dead_rows(db)] == [
        (job_id, "bad payload", 1)
    ]


def test_per_job_max_attempts(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue("x", max_attempts=1)
    job = q.claim_one("w")
    assert job is not None and job.max_attempts == 1
    job.retry(0, "only once")
    assert [d["id"] for d in dead_rows(db)] == [job_id]


def test_zero_budget_job_is_dead_lettered_not_claimed(db: honker.Database) -> None:
    q = db.queue("q")
    doomed = q.enqueue("doomed", max_attempts=0, priority=5)
    ok = q.enqueue("ok")
    jobs = q.claim_batch("w", 1)
    assert [j.id for j in jobs] == [ok]
    dead = dead_rows(db)
    assert [(d["id"], d["last_error"], d["attempts"]) for d in dead] == [
        (doomed, "max attempts exceeded", 0)
    ]


def test_expired_claim_is_reclaimed_and_old_holder_loses(db: honker.Database) -> None:
    q = db.queue("q", visibility_timeout_s=60)
    job_id = q.enqueue("x")
    first = q.claim_one("w1")
    assert first is not None
    assert q.claim_one("w2") is None
    age(db, job_id, 61)
    second = q.claim_one("w2")
    assert second is not None and second.id == job_id and second.attempts == 2
    assert first.ack() is False
    assert first.heartbeat() is False
    assert first.retry(0, "late") is False
    assert first.fail("late") is False
    assert second.ack() is True


def test_worker_dying_on_last_attempt_dead_letters_on_next_claim(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=1)
    job_id = q.enqueue("x")
    assert q.claim_one("w1") is not None
    age(db, job_id, 400)
    assert q.claim_one("w2") is None
    assert [(d["id"], d["last_error"], d["attempts"]) for d in dead_rows(db)] == [
        (job_id, "max attempts exceeded", 1)
    ]


def test_heartbeat_extends_claim(db: honker.Database) -> None:
    q = db.queue("q", visibility_timeout_s=30)
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    assert job.heartbeat(extend_s=600) is True
    row = q.get_job(job_id)
    assert row is not None and row["claim_expires_at"] >= int(time.time()) + 599
    age(db, job_id, 500)
    assert q.claim_one("thief") is None  # still held thanks to the heartbeat
    assert q.heartbeat(job_id, "thief") is False
    assert job.heartbeat() is True  # default: the queue's visibility timeout


def test_cancel_pending_and_in_flight(db: honker.Database) -> None:
    q = db.queue("q")
    in_flight = q.enqueue("first")
    pending = q.enqueue("second")
    job = q.claim_one("w")
    assert job is not None and job.id == in_flight
    assert q.cancel(pending) is True
    assert q.get_job(pending) is None
    assert q.cancel(in_flight, force=True) is True  # deleted under its worker
    assert q.cancel(in_flight, force=True) is False
    assert job.ack() is False
    assert job.heartbeat() is False
    assert dead_rows(db) == []


def test_cancel_of_a_claimed_job_records_a_request(db: honker.Database) -> None:
    q = db.queue("q")
    running = q.enqueue("first")
    job = q.claim_one("w")
    assert job is not None and job.id == running
    assert q.cancel(running) is True  # a request: the job stays with its worker
    assert q.cancel(running) is False  # one already waits
    assert (q.get_job(running) or {})["state"] == "processing"
    assert db.engine.read(db.engine.ops.cancel_requests, [running]) == [running]
    with pytest.raises(ValueError, match="exclude each other"):
        q.cancel(running, pending_only=True, force=True)


def test_cancel_does_not_touch_dead_rows(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue("x")
    job = q.claim_one("w")
    assert job is not None
    job.fail("x")
    assert q.cancel(job_id) is False
    assert len(dead_rows(db)) == 1


def test_get_job(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue({"a": 1}, priority=3, expires=60)
    row = q.get_job(job_id)
    assert row is not None
    assert set(row) == {
        "id",
        "queue",
        "payload",
        "state",
        "priority",
        "run_at",
        "worker_id",
        "claim_expires_at",
        "attempts",
        "max_attempts",
        "created_at",
        "expires_at",
        "last_error",
        "progress",
    }
    assert row["last_error"] is None and row["progress"] is None
    assert row["payload"] == '{"a": 1}'
    assert (row["state"], row["priority"], row["attempts"]) == ("pending", 3, 0)
    assert row["expires_at"] == row["created_at"] + 60
    assert q.get_job(999) is None


def test_expired_jobs_are_skipped_and_swept(db: honker.Database) -> None:
    q = db.queue("q")
    stale = q.enqueue("stale", expires=60)
    fresh = q.enqueue("fresh", expires=3600)
    age(db, stale, 61)
    assert [j.id for j in q.claim_batch("w", 10)] == [fresh]
    assert q.sweep_expired() == 1
    assert q.sweep_expired() == 0
    assert [(d["id"], d["last_error"]) for d in dead_rows(db)] == [(stale, "expired")]


def test_ack_batch_counts_only_valid_claims(db: honker.Database) -> None:
    q = db.queue("q")
    ids = [q.enqueue(i) for i in range(4)]
    jobs = q.claim_batch("w", 4)
    assert q.ack_batch([], "w") == 0
    q.cancel(ids[0], force=True)
    age(db, ids[1], 400)
    assert q.ack_batch([j.id for j in jobs], "w") == 2
    assert q.ack_batch([j.id for j in jobs], "w") == 0


def test_dead_letter_preserves_id_and_columns(db: honker.Database) -> None:
    q = db.queue("q")
    job_id = q.enqueue({"k": "v"}, priority=7, max_attempts=4)
    live = q.get_job(job_id)
    assert live is not None
    job = q.claim_one("w")
    assert job is not None
    job.fail("reason")
    (dead,) = dead_rows(db)
    for column in ("id", "queue", "payload", "priority", "run_at", "max_attempts", "created_at"):
        assert dead[column] == live[column], column
    assert dead["attempts"] == 1 and dead["last_error"] == "reason" and dead["died_at"] > 0
    # ids are never reused after the move
    assert q.enqueue("next") > job_id


@pytest.mark.parametrize(
    "name",
    [
        "",
        "it's",
        'double"quote',
        "x'; DROP TABLE _honker_live; --",
        "ünï©ødé 🚀",
        "%",
        "_",
        "a%b_c",
    ],
)
def test_hostile_queue_names_are_isolated(db: honker.Database, name: str) -> None:
    victim = db.queue("victim")
    victim.enqueue("safe")
    q = db.queue(name)
    q.enqueue({"name": name})
    jobs = q.claim_batch("w", 10)
    assert [j.payload for j in jobs] == [{"name": name}]
    assert jobs[0].queue_name == name
    assert [j.payload for j in victim.claim_batch("w", 10)] == ["safe"]
    assert q.sweep_expired() == 0


def test_type_errors(db: honker.Database) -> None:
    with pytest.raises(TypeError):
        db.queue(5)  # type: ignore[arg-type]
    q = db.queue("q")
    with pytest.raises(TypeError):
        q.claim_one(7)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        q.claim(None)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        q.enqueue("x", priority="high")  # type: ignore[arg-type]


async def test_claim_iterator_wakes_on_enqueue(db: honker.Database) -> None:
    q = db.queue("q")
    claims = q.claim("w", idle_poll_s=None)

    async def produce() -> int:
        await asyncio.sleep(0.05)
        return q.enqueue("hello")

    producer = asyncio.create_task(produce())
    job = await asyncio.wait_for(claims.__anext__(), 5)
    assert job.id == await producer and job.payload == "hello"
    job.ack()
    claims.close()


async def test_claim_iterator_wakes_at_run_at_without_other_commits(db: honker.Database) -> None:
    q = db.queue("q")
    # Due at the start of the second after next; no fallback poll and nothing else commits,
    # so only the deadline mechanism can wake the iterator.
    due = int(time.time()) + 2
    job_id = q.enqueue("timed", run_at=due)
    claims = q.claim("w", idle_poll_s=None)
    job = await asyncio.wait_for(claims.__anext__(), 10)
    woke = time.time()
    assert job.id == job_id
    assert woke >= due  # never early
    assert woke - due < 1.0, f"woke {woke - due:.3f}s after run_at"  # same second
    print(f"delayed job claimed {1000 * (woke - due):.1f} ms after run_at")
    claims.close()


async def test_claim_iterator_reclaims_when_visibility_expires(db: honker.Database) -> None:
    q = db.queue("q", visibility_timeout_s=1)
    job_id = q.enqueue("x")
    held = q.claim_one("dead-worker")
    assert held is not None
    claims = q.claim("rescuer", idle_poll_s=None)
    job = await asyncio.wait_for(claims.__anext__(), 10)
    assert (job.id, job.attempts) == (job_id, 2)
    claims.close()


async def test_claim_iterator_cancellation_releases_subscription(db: honker.Database) -> None:
    q = db.queue("q")
    claims = q.claim("w")
    before = db.engine.watcher.subscriber_count
    task = asyncio.create_task(claims.__anext__())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.watcher.subscriber_count == before - 1


def test_next_claim_at(db: honker.Database) -> None:
    q = db.queue("q", visibility_timeout_s=100)
    assert q.next_claim_at() == 0
    later = q.enqueue("later", delay=500)
    row = q.get_job(later)
    assert row is not None and q.next_claim_at() == row["run_at"]
    q.enqueue("now")
    job = q.claim_one("w")
    assert job is not None
    assert q.next_claim_at() == job.claim_expires_at + 1
    if db.engine.kind != "sqlite":
        return  # the SQL function below is SQLite-only
    with db.transaction() as tx:
        assert tx.query("SELECT honker_queue_next_claim_at('q') AS t") == [
            {"t": job.claim_expires_at + 1}
        ]


@pytest.mark.sqlite_only("the honker_* SQL functions exist only on SQLite connections")
def test_sql_function_surface_matches_python(db: honker.Database) -> None:
    q = db.queue("sql")
    with db.transaction() as tx:
        job_id = tx.query(
            "SELECT honker_enqueue('sql', '{\"a\": 1}', NULL, NULL, 2, 3, NULL) AS id"
        )[0]["id"]
    with db.transaction() as tx:
        claimed = json.loads(tx.query("SELECT honker_claim_batch('sql', 'w', 5, 300) AS j")[0]["j"])
    assert [c["id"] for c in claimed] == [job_id]
    assert set(claimed[0]) == {
        "id",
        "queue",
        "payload",
        "worker_id",
        "attempts",
        "claim_expires_at",
    }
    assert json.loads(claimed[0]["payload"]) == {"a": 1}
    with db.transaction() as tx:
        got = json.loads(tx.query("SELECT honker_get_job(?) AS j", [job_id])[0]["j"])
        assert got["state"] == "processing" and got["priority"] == 2
        assert tx.query("SELECT honker_get_job(999) AS j") == [{"j": ""}]
        assert tx.query("SELECT honker_ack(?, 'w') AS ok", [job_id]) == [{"ok": 1}]
    assert q.get_job(job_id) is None
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.query("SELECT honker_enqueue('q', 5, NULL, NULL, 0, 3, NULL)")  # payload not TEXT


def test_cancel_pending_only_leaves_claimed_jobs(db: honker.Database) -> None:
    q = db.queue("q")
    running = q.enqueue("running")
    waiting = q.enqueue("waiting")
    job = q.claim_one("w")
    assert job is not None and job.id == running
    assert q.cancel(running, pending_only=True) is False
    assert job.ack() is True
    assert q.cancel(waiting, pending_only=True) is True


def test_outcomes_join_the_callers_transaction(db: honker.Database) -> None:
    q = db.queue("q")
    a, b, c = q.enqueue("a"), q.enqueue("b"), q.enqueue("c")
    jobs = {j.id: j for j in q.claim_batch("w", 3)}
    with pytest.raises(KeyError), db.transaction() as tx:
        jobs[a].fail("nope", tx=tx)
        jobs[b].retry(0, "again", tx=tx)
        q.cancel(c, force=True, tx=tx)
        raise KeyError
    assert {r["id"]: r["state"] for r in db.query("SELECT id, state FROM _honker_live")} == {
        a: "processing",
        b: "processing",
        c: "processing",
    }
    with db.transaction() as tx:
        assert jobs[a].fail("nope", tx=tx) and jobs[b].retry(0, "again", tx=tx)
        assert q.cancel(c, force=True, tx=tx)
    assert db.query("SELECT id FROM _honker_dead") == [{"id": a}]
    assert [r["id"] for r in db.query("SELECT id FROM _honker_live")] == [b]


def test_enqueue_many_returns_the_ids_of_its_rows(db: honker.Database) -> None:
    q = db.queue("bulk")
    first = q.enqueue({"before": True})
    ids = q.enqueue_many([{"i": i} for i in range(50)], priority=3, delay=60)
    assert ids == list(range(first + 1, first + 51))
    rows = db.query(
        sql_for(db, "SELECT id, payload, priority, run_at > unixepoch() AS later FROM _honker_live")
    )
    by_id = {r["id"]: r for r in rows}
    for i, job_id in enumerate(ids):
        assert by_id[job_id]["payload"] == f'{{"i": {i}}}'
        assert by_id[job_id]["priority"] == 3 and by_id[job_id]["later"] == 1
    assert q.enqueue_many([]) == []


def test_enqueue_many_is_all_or_nothing(db: honker.Database) -> None:
    q = db.queue("bulk")
    with pytest.raises(TypeError, match="not JSON-serializable"):
        q.enqueue_many([{"ok": 1}, {"bad": object()}])
    assert q.stats()["pending"] == 0
    with pytest.raises(RuntimeError, match="boom"), db.transaction() as tx:
        q.enqueue_many([{"i": 1}, {"i": 2}], tx=tx)
        raise RuntimeError("boom")
    assert q.stats()["pending"] == 0
    with db.transaction() as tx:
        ids = q.enqueue_many([{"i": 1}, {"i": 2}], tx=tx)
    assert [q.get_job(i)["payload"] for i in ids] == ['{"i": 1}', '{"i": 2}']  # type: ignore[index]
