"""Inspection and operator APIs used by the dashboard: stats, listings, dead-job actions."""

from __future__ import annotations

import pytest

import honker

pytestmark = pytest.mark.engines


def test_queue_stats_and_outcome_counters(db: honker.Database) -> None:
    q = db.queue("mail")
    assert q.stats() == {
        "pending": 0,
        "delayed": 0,
        "expired": 0,
        "processing": 0,
        "dead": 0,
        "oldest_pending_age_s": None,
        "done_last_minute": 0,
        "dead_last_minute": 0,
        "paused": False,
        "cancelled_last_minute": 0,
    }
    for i in range(5):
        q.enqueue(i)
    q.enqueue("later", delay=600)
    q.enqueue("stale", expires=1)
    db.engine.write(
        lambda c: c.execute("UPDATE _honker_live SET expires_at = 1 WHERE payload = '\"stale\"'")
    )
    jobs = q.claim_batch("w", 3)
    jobs[0].ack()
    q.ack_batch([jobs[1].id], "w")
    jobs[2].fail("boom")
    stats = q.stats()
    assert stats["pending"] == 2 and stats["delayed"] == 1 and stats["expired"] == 1
    assert stats["processing"] == 0 and stats["dead"] == 1
    assert stats["done_last_minute"] == 2 and stats["dead_last_minute"] == 1
    assert stats["oldest_pending_age_s"] is not None and stats["oldest_pending_age_s"] >= 0
    assert db.queue_names() == ["mail"]


def test_rolled_back_ack_is_not_counted(db: honker.Database) -> None:
    q = db.queue("q")
    q.enqueue(1)
    job = q.claim_one("w")
    assert job is not None
    with pytest.raises(RuntimeError), db.transaction() as tx:
        if db.engine.kind == "sqlite":
            tx.query("SELECT honker_ack(?, 'w')", [job.id])
        else:
            q.ack(job.id, "w", tx=tx)
        raise RuntimeError
    assert q.stats()["done_last_minute"] == 0


def test_list_count_find_and_search(db: honker.Database) -> None:
    q = db.queue("q")
    other = db.queue("other")
    ids = [q.enqueue({"user": f"alice{i}"}) for i in range(3)]
    q.enqueue({"user": "100%_bob"}, delay=60)
    other.enqueue({"user": "alice-elsewhere"})
    dead = q.claim_one("w")
    assert dead is not None
    dead.fail("kaput")
    assert [j["id"] for j in q.list_jobs()] == sorted(q_id["id"] for q_id in q.list_jobs())[::-1]
    assert q.count_jobs() == 4
    assert q.count_jobs("pending") == 2 and q.count_jobs("delayed") == 1
    assert q.count_jobs("dead") == 1 and q.count_jobs("processing") == 0
    assert [j["id"] for j in q.list_jobs(search="alice")] == [ids[2], ids[1], ids[0]]
    assert [j["state"] for j in q.list_jobs(search="100%_")] == ["delayed"]
    assert q.count_jobs(search="%") == 1  # % is literal text, not a wildcard
    assert len(q.list_jobs(limit=2)) == 2 and len(q.list_jobs(limit=2, offset=3)) == 1
    found = q.find_job(dead.id)
    assert found is not None
    assert (found["state"], found["last_error"], found["attempts"]) == ("dead", "kaput", 1)
    assert found["died_at"] is not None
    assert q.find_job(99999) is None
    assert other.find_job(ids[1]) is None
    with pytest.raises(ValueError, match="unknown job state"):
        q.list_jobs(state="bogus")


def test_retry_and_discard_dead(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=1)
    ids = [q.enqueue(i, priority=i) for i in range(3)]
    for job in q.claim_batch("w", 3):
        job.retry(0, "always fails")
    assert q.stats()["dead"] == 3
    assert q.retry_dead(ids[0]) == 1
    assert q.retry_dead(12345) == 0
    job = q.claim_one("w2")
    assert job is not None
    assert (job.id, job.attempts, job.payload, job.priority) == (ids[0], 1, 0, 0)
    job.ack()
    assert q.discard_dead(ids[1]) == 1
    assert q.retry_dead() == 1
    assert q.count_jobs("dead") == 0 and q.count_jobs("pending") == 1
    assert q.discard_dead() == 0


def test_retry_and_discard_dead_join_a_transaction(db: honker.Database) -> None:
    q = db.queue("q", max_attempts=1)
    ids = [q.enqueue(i) for i in range(2)]
    for job in q.claim_batch("w", 2):
        job.fail("kaput")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE audit (note TEXT NOT NULL)")
    with pytest.raises(RuntimeError, match="roll back"):
        with db.transaction() as tx:
            tx.execute("INSERT INTO audit (note) VALUES ('requeued')")
            assert q.retry_dead(ids[0], tx=tx) == 1
            assert q.discard_dead(ids[1], tx=tx) == 1
            raise RuntimeError("roll back")
    # Neither the app's row nor the dead-letter changes survived the rollback.
    assert q.count_jobs("dead") == 2 and db.query("SELECT * FROM audit") == []
    with db.transaction() as tx:
        tx.execute("INSERT INTO audit (note) VALUES ('requeued')")
        assert q.retry_dead(ids[0], tx=tx) == 1
        assert q.discard_dead(ids[1], tx=tx) == 1
    assert db.query("SELECT note FROM audit") == [{"note": "requeued"}]
    assert q.count_jobs("dead") == 0 and q.count_jobs("pending") == 1
    assert q.find_job(ids[1]) is None and q.find_job(ids[0]) is not None


def test_streams_locks_notifications_info(db: honker.Database) -> None:
    s = db.stream("events")
    for i in range(5):
        s.publish(i)
    first = s._read_since(0)[0]["offset"]
    s.save_offset("slow", first + 1)
    s.save_offset("fast", first + 4)
    (info,) = db.streams_info()
    assert (info["topic"], info["events"], info["last_offset"]) == ("events", 5, first + 4)
    assert info["consumers"] == [
        {"name": "fast", "offset": first + 4, "lag": 0},
        {"name": "slow", "offset": first + 1, "lag": 3},
    ]
    with db.lock("backup", ttl=30, owner="me"):
        (held,) = db.locks_info()
        assert (held["name"], held["owner"]) == ("backup", "me") and held["ttl_left_s"] <= 30
    assert db.locks_info() == []
    with db.transaction() as tx:
        tx.notify("c", 1)
    assert db.notifications_count() == 1
