"""Our files are the reference's files.

* The shared schema we create is the reference's, object for object (whitespace aside).
* After our library created and used a file (extra tables ``_honker_stats`` and
  ``_honker_scheduler_tz`` included), the reference extension and the Node module open it,
  their bootstrap changes nothing, and they process our jobs, schedules, streams,
  notifications, results and locks.
* A file the reference created opens with our library, which only adds its extra tables.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from fetch_reference import ReferencePeers
from peers import ExtPeer, NodePeer

import honker
from honker.tasks import ENVELOPE_KEY

EXTRA = {
    "_honker_stats",
    "_honker_scheduler_tz",
    "sqlite_autoindex__honker_scheduler_tz_1",
    "_honker_workers",
    "sqlite_autoindex__honker_workers_1",
    "_honker_job_trace",
    "_honker_dead_queue",
    "_honker_unique",
    "_honker_unique_job",
    "_honker_unique_until",
    "_honker_paused",
    # jobs: cancel, progress, failed results, attempt history (i15-jobs)
    "_honker_job_cancel",
    "_honker_job_progress",
    "_honker_job_errors",
    "_honker_job_attempts",
    "_honker_stats_cancelled",
    "_honker_dead_died",
    "_honker_job_cancel_age",
    "_honker_job_progress_age",
    "_honker_job_errors_age",
    "_honker_job_attempts_age",
}


def schema(path: str | Path) -> dict[str, tuple[str, str]]:
    """name → (type, whitespace-normalized SQL) of every schema object."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {name: (kind, re.sub(r"\s+", " ", sql or "").strip()) for kind, name, sql in rows}


def test_shared_schema_is_the_references(
    reference: ReferencePeers, tmp_path: Path, db_path: str
) -> None:
    honker.open(db_path).close()
    ours = schema(db_path)
    ext_file, node_file = tmp_path / "ext.db", tmp_path / "node.db"
    ExtPeer(reference, ext_file)("bootstrap")
    NodePeer(reference, node_file)("sql", sql="SELECT 1")  # open() bootstraps
    theirs = schema(ext_file)
    assert schema(node_file) == theirs
    assert set(ours) - set(theirs) == EXTRA
    assert {k: v for k, v in ours.items() if k not in EXTRA} == theirs


def _use_the_file_with_our_library(db: honker.Database) -> dict[str, int]:
    """Exercise every feature, so every table (ours included) has rows."""
    ids: dict[str, int] = {}
    with db.transaction() as tx:
        tx.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        tx.execute("INSERT INTO orders (total) VALUES (9900)")
        tx.notify("orders", {"id": 1})
    emails, thumbs = db.queue("emails", max_attempts=2), db.queue("thumbs")
    ids["acked"] = emails.enqueue({"to": "a"})
    ids["failed"] = emails.enqueue({"to": "b"})
    claimed = emails.claim_batch("us", 2)
    claimed[0].ack()  # _honker_stats: done
    claimed[1].fail("bounced")  # _honker_stats: dead
    ids["for_ext"] = emails.enqueue({"to": "c"}, priority=1)
    ids["for_ext_2"] = emails.enqueue({"to": "d"})
    ids["for_node"] = thumbs.enqueue({"img": 7})

    @thumbs.task(name="interop.resize")
    def resize(img: int, size: int = 64) -> None:
        raise AssertionError("run by the reference's worker, not here")

    ids["task"] = resize(7, size=128).id
    sched = honker.Scheduler(db)
    sched.add(
        name="paris", queue="digest", schedule="0 9 * * *", payload={"p": 1}, tz="Europe/Paris"
    )
    sched.add(name="every", queue="digest", schedule="@every 60s", payload={"e": 1})
    feed = db.stream("feed")
    feed.publish({"n": 1})
    feed.publish({"n": 2}, key="k")
    feed.save_offset("ours", 1)
    emails.save_result(ids["acked"], {"sent": True})
    db.try_rate_limit("api", 10, 3600)
    assert db.lock("held-by-us", ttl=600, owner="us").acquire()
    return ids


def test_reference_reads_and_processes_a_file_we_made(
    db: honker.Database, db_path: str, ext_peer: ExtPeer, node_peer: NodePeer
) -> None:
    ids = _use_the_file_with_our_library(db)
    counts = db.query(
        "SELECT (SELECT SUM(done) FROM _honker_stats), (SELECT SUM(dead) FROM _honker_stats), "
        "(SELECT COUNT(*) FROM _honker_scheduler_tz) AS tz"
    )[0]
    assert list(counts.values()) == [1, 1, 1]
    before = schema(db_path)

    # Their bootstrap is a no-op on our file.
    assert ext_peer("bootstrap") == 1
    assert node_peer("bootstrap") == 1
    assert schema(db_path) == before
    assert ext_peer("sql", sql="PRAGMA integrity_check") == [{"integrity_check": "ok"}]

    # The extension works the emails queue, Node the thumbnails.
    claimed, acks, task_jobs = ext_peer(
        "batch",
        ops=[
            {"op": "claim", "args": {"queue": "emails", "worker": "ext", "n": 10}},
            {
                "op": "ack_batch",
                "args": {"ids": [ids["for_ext"], ids["for_ext_2"]], "worker": "ext"},
            },
            {"op": "claim", "args": {"queue": "thumbs", "worker": "ext", "n": 10}},
        ],
    )
    assert {j["id"] for j in claimed} == {ids["for_ext"], ids["for_ext_2"]} and acks == 2
    assert {j["id"] for j in task_jobs} == {ids["for_node"], ids["task"]}
    by_id = {j["id"]: json.loads(j["payload"]) for j in task_jobs}
    assert by_id[ids["task"]] == {
        ENVELOPE_KEY: {"task": "interop.resize", "args": [7], "kwargs": {"size": 128}}
    }
    # the extension let its claims lapse; Node reclaims and finishes them
    ext_peer("sql", sql="UPDATE _honker_live SET claim_expires_at = 0", write=True)
    node_jobs = node_peer("claim", queue="thumbs", worker="node", n=10)
    assert {j["id"] for j in node_jobs} == {ids["for_node"], ids["task"]}
    assert {j["attempts"] for j in node_jobs} == {2}
    assert node_peer("ack_batch", ids=[j["id"] for j in node_jobs], worker="node") == 2

    # Schedules: the reference lists and fires ours (our time zone table is ignored by it).
    listed = {s["name"]: s for s in node_peer("scheduler_list")}
    assert set(listed) == {"paris", "every"}
    fires = ext_peer("scheduler_tick", now=max(s["next_fire_at"] for s in listed.values()))
    assert {f["name"] for f in fires} == {"paris", "every"}

    # Streams, notifications, results, locks, rate limits.
    events = node_peer("read_since", topic="feed", offset=0, limit=10)
    assert [(e["offset"], json.loads(e["payload"]), e["key"]) for e in events] == [
        (1, {"n": 1}, None),
        (2, {"n": 2}, "k"),
    ]
    assert node_peer("get_offset", consumer="ours", topic="feed") == 1
    notes = ext_peer("sql", sql="SELECT channel, payload FROM _honker_notifications")
    assert [(n["channel"], json.loads(n["payload"])) for n in notes] == [("orders", {"id": 1})]
    assert json.loads(ext_peer("result_get", job_id=ids["acked"])) == {"sent": True}
    assert ext_peer("lock_acquire", name="held-by-us", owner="ext", ttl=60) == 0
    assert node_peer("rate_limit_try", name="api", limit=1, per=3600) == 0

    # And our library carries on with what the reference left.
    digest = db.queue("digest").claim_batch("us", 100)
    assert {j.id for j in digest} == {f["job_id"] for f in fires}
    assert db.queue("emails").stats()["dead"] == 1
    assert honker.Scheduler(db).get("paris")["tz"] == "Europe/Paris"  # type: ignore[index]
    assert schema(db_path) == before


def test_we_open_a_file_the_reference_made(reference: ReferencePeers, tmp_path: Path) -> None:
    for kind, peer in (
        ("ext", ExtPeer(reference, tmp_path / "ext.db")),
        ("node", NodePeer(reference, tmp_path / "node.db")),
    ):
        peer("bootstrap")
        job_id = peer("enqueue", queue="q", payload={"from": kind}, max_attempts=1)
        peer("scheduler_register", name="s", queue="q", cron="@every 1h", payload={})
        peer("publish", topic="t", payload=[kind])
        peer("notify", channel="c", payload={"from": kind})
        before = schema(peer.db)
        db = honker.open(peer.db)
        after = schema(peer.db)
        assert set(after) - set(before) == EXTRA
        assert {k: after[k] for k in before} == before
        q = db.queue("q")
        job = q.claim_one("us")
        assert job is not None and job.id == job_id and job.payload == {"from": kind}
        assert job.retry(delay_s=0, error="over budget")  # budget 1: dead-lettered
        assert q.stats()["dead"] == 1 and q.stats()["dead_last_minute"] == 1
        assert [s["name"] for s in honker.Scheduler(db).list()] == ["s"]
        assert [e["payload"] for e in db.query("SELECT payload FROM _honker_stream")] == [
            json.dumps([kind], separators=(",", ":")) if kind == "node" else json.dumps([kind])
        ]
        db.close()
        assert peer("get_job", id=job_id) is None
        assert peer("sql", sql="SELECT last_error FROM _honker_dead") == [
            {"last_error": "over budget"}
        ]
