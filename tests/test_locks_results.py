"""Named locks, rate limits and result storage."""

from __future__ import annotations

import asyncio

import pytest

import honker
from helpers import sql_for
from honker import LockHeld

pytestmark = pytest.mark.engines


def expire_lock(db: honker.Database, name: str) -> None:
    db.engine.write(
        lambda c: c.execute(
            sql_for(db, "UPDATE _honker_locks SET expires_at = unixepoch() - 1 WHERE name = ?"),
            (name,),
        )
    )


def test_lock_context_manager(db: honker.Database) -> None:
    with db.lock("backup", ttl=30) as lock:
        assert lock.acquired and len(lock.owner) == 32
        rows = db.query(
            sql_for(db, "SELECT name, owner, expires_at - unixepoch() AS ttl FROM _honker_locks")
        )
        assert rows[0]["owner"] == lock.owner and 29 <= rows[0]["ttl"] <= 30
        with pytest.raises(LockHeld, match="lock 'backup' is already held"), db.lock("backup"):
            pass
        assert lock.renew() is True
        assert lock.renew(ttl=120) is True
    assert not lock.acquired
    assert db.query("SELECT COUNT(*) AS n FROM _honker_locks") == [{"n": 0}]
    with db.lock("backup"):
        pass


def test_lock_released_even_when_body_raises(db: honker.Database) -> None:
    with pytest.raises(KeyError), db.lock("x"):
        raise KeyError
    with db.lock("x"):
        pass


def test_same_owner_reacquires_and_stale_locks_expire(db: honker.Database) -> None:
    with db.lock("job", owner="me"):
        with db.lock("job", owner="me") as again:
            assert again.acquired
    first = db.lock("stale", owner="crashed")
    first.__enter__()  # never exits: simulates a crashed holder
    with pytest.raises(LockHeld):
        db.lock("stale").__enter__()
    expire_lock(db, "stale")
    with db.lock("stale", owner="new") as taken:
        assert taken.acquired
        assert first.renew() is False  # the stale owner lost the row
    assert first.release() is False  # the row is no longer the stale owner's


def test_only_owner_releases(db: honker.Database) -> None:
    holder = db.lock("l", owner="a")
    holder.__enter__()
    expire_lock(db, "l")
    other = db.lock("l", owner="b")
    other.__enter__()
    holder.__exit__(None, None, None)  # must not delete b's row
    assert db.query("SELECT owner FROM _honker_locks") == [{"owner": "b"}]
    other.__exit__(None, None, None)


def test_lock_renew_rejects_bad_ttl(db: honker.Database) -> None:
    with db.lock("l") as lock:
        with pytest.raises(RuntimeError):
            lock.renew(ttl=0)
    assert db.lock("unheld").renew() is False


def test_lock_inside_transaction_is_nested_error(db: honker.Database) -> None:
    with db.transaction(), pytest.raises(RuntimeError, match="nested"), db.lock("l"):
        pass


def test_rate_limit_fixed_window(db: honker.Database) -> None:
    results = [db.try_rate_limit("api", 3, 3600) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert db.try_rate_limit("other", 1, 3600) is True
    rows = db.query(
        "SELECT name, window_start % 3600 AS aligned, count FROM _honker_rate_limits ORDER BY name"
    )
    assert rows == [
        {"name": "api", "aligned": 0, "count": 3},
        {"name": "other", "aligned": 0, "count": 1},
    ]
    for bad in ((0, 10), (5, 0), (-1, 10)):
        with pytest.raises(ValueError, match="limit and per must be positive"):
            db.try_rate_limit("x", *bad)
    assert db.sweep_rate_limits() == 0
    db.engine.write(lambda c: c.execute("UPDATE _honker_rate_limits SET window_start = 0"))
    assert db.sweep_rate_limits(older_than_s=3600) == 2


def test_results_roundtrip_and_ttl(db: honker.Database) -> None:
    q = db.queue("q")
    assert q.get_result(1) == (False, None)
    q.save_result(1, {"ok": True})
    assert q.get_result(1) == (True, {"ok": True})
    q.save_result(2, None)
    assert q.get_result(2) == (True, None)
    q.save_result(1, [1, 2], ttl=60)
    assert q.get_result(1) == (True, [1, 2])
    row = db.query(
        sql_for(db, "SELECT expires_at - unixepoch() AS ttl FROM _honker_results WHERE job_id = 1")
    )
    assert 59 <= row[0]["ttl"] <= 60
    db.engine.write(
        lambda c: c.execute(
            sql_for(db, "UPDATE _honker_results SET expires_at = unixepoch() - 1 WHERE job_id = 1")
        )
    )
    assert q.get_result(1) == (False, None)
    assert q.sweep_results() == 1
    assert q.sweep_results() == 0
    with pytest.raises(TypeError):
        q.save_result(3, object())


def test_result_saved_in_callers_transaction(db: honker.Database) -> None:
    q = db.queue("q")
    with pytest.raises(ZeroDivisionError), db.transaction() as tx:
        q.save_result(5, "lost", tx=tx)
        _ = 1 / 0
    assert q.get_result(5) == (False, None)


async def test_wait_result_wakes_on_commit(db: honker.Database) -> None:
    q = db.queue("q")

    async def later() -> None:
        await asyncio.sleep(0.1)
        q.save_result(9, "done")

    task = asyncio.create_task(later())
    assert await q.wait_result(9, timeout=5) == "done"
    await task
    with pytest.raises(asyncio.TimeoutError, match=r"wait_result\(10\) timed out"):
        await q.wait_result(10, timeout=0.2)
    assert db.engine.watcher.subscriber_count == 0
