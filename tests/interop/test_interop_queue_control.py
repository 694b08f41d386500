"""Unique jobs, paused queues and snoozed jobs on a file the reference extension also works.

The reference knows nothing of ``_honker_unique`` / ``_honker_paused``: its bootstrap
leaves them alone, it still claims, acks and ticks, and our library copes with what it
leaves behind (a unique key whose job it acked is taken over; it ignores pauses).
"""

from __future__ import annotations

import re
import sqlite3

from peers import ExtPeer

import honker
from honker.tasks import envelope


def _schema(path: str) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {name: re.sub(r"\s+", " ", sql or "") for name, sql in rows}


def test_reference_claims_acks_and_ticks_on_a_file_with_our_queue_tables(
    db: honker.Database, db_path: str, ext_peer: ExtPeer
) -> None:
    orders, held = db.queue("orders"), db.queue("held")
    unique_id = orders.enqueue({"order": 42}, unique_key="order-42")
    windowed = orders.enqueue({"order": 43}, unique_key="order-43", unique_for_s=3600)
    job = orders.claim_one("us")
    assert job is not None and job.id == unique_id
    assert orders.enqueue({"order": 42}, unique_key="order-42") == unique_id
    assert job.ack()
    held.pause()
    held_id = held.enqueue({"h": 1})
    assert held.claim_one("us") is None
    honker.Scheduler(db).add(name="tick", queue="orders", schedule="@every 60s", payload={})
    before = _schema(db_path)

    assert ext_peer("bootstrap") == 1
    assert _schema(db_path) == before
    claimed, acked, held_jobs = ext_peer(
        "batch",
        ops=[
            {"op": "claim", "args": {"queue": "orders", "worker": "ext", "n": 10}},
            {"op": "ack_batch", "args": {"ids": [windowed], "worker": "ext"}},
            {"op": "claim", "args": {"queue": "held", "worker": "ext", "n": 10}},
        ],
    )
    assert [j["id"] for j in claimed] == [windowed] and acked == 1
    assert [j["id"] for j in held_jobs] == [held_id]  # the extension ignores our pause
    assert ext_peer("ack", id=held_id, worker="ext") == 1
    listed = ext_peer("scheduler_list")
    fires = ext_peer("scheduler_tick", now=listed[0]["next_fire_at"])
    assert [f["name"] for f in fires] == ["tick"]
    assert ext_peer("sql", sql="PRAGMA integrity_check") == [{"integrity_check": "ok"}]

    # The key whose job the extension acked is stale: the next enqueue takes it over
    # (the extension's ack cannot start the window, so none applies).
    again = orders.enqueue({"order": 43}, unique_key="order-43", unique_for_s=3600)
    assert again != windowed
    assert orders.unique_holder("order-43") == again
    # Our claims still respect the pause; the fired schedule's job is ours to claim.
    held.enqueue(envelope("t", [], {}))
    assert held.claim_one("us") is None and held.is_paused()
    mine = orders.claim_batch("us", 10)
    assert {j.id for j in mine} == {again, fires[0]["job_id"]}
    assert _schema(db_path) == before
