"""Results, named locks and rate-limit windows shared with the reference on one file."""

from __future__ import annotations

import asyncio
import json

import pytest
from peers import ExtPeer, NodePeer

import honker


@pytest.fixture(params=["ext", "node"])
def peer(request: pytest.FixtureRequest, db: honker.Database) -> ExtPeer | NodePeer:
    fixture: ExtPeer | NodePeer = request.getfixturevalue(f"{request.param}_peer")
    return fixture


def test_results_both_ways(db: honker.Database, peer: ExtPeer | NodePeer) -> None:
    q = db.queue("r")
    q.save_result(1, {"total": 3}, ttl=60)
    q.save_result(2, None)  # a stored None is the text 'null'
    one, two, three = peer(
        "batch",
        ops=[
            {"op": "result_get", "args": {"job_id": 1}},
            {"op": "result_get", "args": {"job_id": 2}},
            {"op": "result_get", "args": {"job_id": 3}},
        ],
    )
    assert (json.loads(one), two, three) == ({"total": 3}, "null", None)

    async def wait_for_reference() -> object:
        saver = asyncio.create_task(
            asyncio.to_thread(peer, "result_save", {"job_id": 7, "value": ["x", 1], "ttl": 0})
        )
        value = await q.wait_result(7, timeout=20)  # wakes on the reference's commit
        await saver
        return value

    assert asyncio.run(wait_for_reference()) == ["x", 1]
    assert q.get_result(7) == (True, ["x", 1])
    with db.transaction() as tx:
        tx.execute("UPDATE _honker_results SET expires_at = unixepoch() WHERE job_id = 1")
    assert peer("result_get", job_id=1) is None  # expired for both
    assert q.get_result(1) == (False, None)
    assert q.sweep_results() == 1


def test_locks_both_ways(db: honker.Database, peer: ExtPeer | NodePeer) -> None:
    with db.lock("nightly-report", ttl=60, owner="us"):
        assert peer("lock_acquire", name="nightly-report", owner="ref", ttl=60) == 0
        assert peer("lock_release", name="nightly-report", owner="ref") == 0
        assert peer("lock_renew", name="nightly-report", owner="ref", ttl=60) == 0
    assert peer("lock_acquire", name="nightly-report", owner="ref", ttl=60) == 1
    with pytest.raises(honker.LockHeld), db.lock("nightly-report", owner="us"):
        pass
    assert [(x["name"], x["owner"]) for x in db.locks_info()] == [("nightly-report", "ref")]
    with db.transaction() as tx:  # the reference's holder goes stale
        tx.execute(
            "UPDATE _honker_locks SET expires_at = unixepoch() WHERE name = 'nightly-report'"
        )
    with db.lock("nightly-report", owner="us"):
        assert peer("lock_acquire", name="nightly-report", owner="ref", ttl=60) == 0
    assert peer("lock_acquire", name="nightly-report", owner="ref", ttl=60) == 1
    assert peer("lock_release", name="nightly-report", owner="ref") == 1


def test_rate_limit_windows_are_shared(db: honker.Database, peer: ExtPeer | NodePeer) -> None:
    assert db.try_rate_limit("api", limit=3, per=3600)
    assert db.try_rate_limit("api", limit=3, per=3600)
    results = peer(
        "batch",
        ops=[{"op": "rate_limit_try", "args": {"name": "api", "limit": 3, "per": 3600}}] * 2,
    )
    assert results == [1, 0]  # one call left in the window we opened, then full
    assert not db.try_rate_limit("api", limit=3, per=3600)
    [row] = db.query("SELECT window_start, count FROM _honker_rate_limits WHERE name = 'api'")
    assert row["count"] == 3 and row["window_start"] % 3600 == 0
    with db.transaction() as tx:
        tx.execute("UPDATE _honker_rate_limits SET window_start = 0")
    assert peer("call", fn="honker_rate_limit_sweep", args=[3600]) == 1
    assert db.sweep_rate_limits(3600) == 0
