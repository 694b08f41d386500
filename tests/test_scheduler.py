"""Scheduler: registration, firing exactly once per boundary, catch-up, leader election."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

import pytest

import honker
from helpers import Child, sql_for
from honker import CronSchedule, LeadershipLost, LockHeld, Scheduler, crontab, every_s

pytestmark = pytest.mark.engines


def test_schedule_factories() -> None:
    assert crontab("0 3 * * *").expr == "0 3 * * *"
    assert repr(crontab("*/5 * * * * *")) == "crontab('*/5 * * * * *')"
    assert every_s(5).expr == "@every 5s"
    assert every_s(2.9).expr == "@every 2s"
    assert CronSchedule("@every 1h") == CronSchedule("@every 1h")
    for bad in ("* * * *", "61 * * * *", "30-10 * * * *", "*/0 * * * *", "0 0 31 2 *"):
        with pytest.raises(ValueError):
            crontab(bad)
    with pytest.raises(ValueError, match="use every_s"):
        crontab("@every 5s")
    with pytest.raises(ValueError, match="positive integer"):
        every_s(0)
    from datetime import datetime

    nxt = crontab("0 3 * * *").next_after(datetime(2026, 1, 1, 12, 0))
    assert (nxt.hour, nxt.minute, nxt.day) == (3, 0, 2)


def test_add_list_update_pause_resume_remove(db: honker.Database) -> None:
    s = Scheduler(db)
    before = int(time.time())
    s.add(name="beat", queue="health", schedule=every_s(10), payload={"k": 1}, expires=30)
    (row,) = s.list()
    assert row == {
        "name": "beat",
        "queue": "health",
        "cron_expr": "@every 10s",
        "payload": '{"k": 1}',
        "priority": 0,
        "expires_s": 30,
        "next_fire_at": row["next_fire_at"],
        "enabled": True,
        "max_attempts": 3,
    }
    assert before + 10 <= row["next_fire_at"] <= int(time.time()) + 10
    assert s.pause("beat") is True and s.pause("beat") is False
    s.add(name="beat", queue="health2", schedule="@every 20s", max_attempts=0)
    row = s.get("beat")
    assert row is not None
    assert (row["queue"], row["enabled"], row["max_attempts"], row["payload"]) == (
        "health2",
        False,
        1,
        "null",
    )
    assert s.resume("beat") is True and s.resume("beat") is False
    assert s.update("beat") is False
    assert s.update("missing", priority=3) is False
    assert s.update("beat", priority=7, payload=None, expires=None, max_attempts=None) is True
    row = s.get("beat")
    assert row is not None
    assert (row["priority"], row["payload"], row["expires_s"], row["max_attempts"]) == (
        7,
        "null",
        None,
        3,
    )
    assert s.update("beat", schedule=crontab("0 3 * * *")) is True
    row = s.get("beat")
    assert row is not None and row["cron_expr"] == "0 3 * * *"
    assert s.remove("beat") is True and s.remove("beat") is False
    assert s.list() == []


def test_invalid_schedule_writes_nothing(db: honker.Database) -> None:
    s = Scheduler(db)
    with pytest.raises(ValueError):
        s.add(name="x", queue="q", schedule="61 * * * *")
    with pytest.raises(TypeError):
        s.add(name="x", queue="q", schedule=5)  # type: ignore[arg-type]
    s.add(name="ok", queue="q", schedule=every_s(5))
    with pytest.raises(ValueError):
        s.update("ok", schedule="not cron")
    assert [r["cron_expr"] for r in s.list()] == ["@every 5s"]
    if db.engine.kind != "sqlite":
        return  # the rest is the SQLite-only SQL function surface
    with db.transaction() as tx, pytest.raises(RuntimeError):
        tx.query("SELECT honker_scheduler_register('bad', 'q', '* * *', 'null', 0, NULL)")
    assert [r["name"] for r in s.list()] == ["ok"]


def test_tick_fires_each_due_boundary_once_and_catches_up(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(10), payload="go", priority=4, max_attempts=2)
    first = s.list()[0]["next_fire_at"]
    assert s.tick(first - 1) == []
    fires = s.tick(first + 25)  # three boundaries missed: first, +10, +20
    assert [f["fire_at"] for f in fires] == [first, first + 10, first + 20]
    assert s.tick(first + 25) == []
    assert s.list()[0]["next_fire_at"] == first + 30
    jobs = db.queue("q").claim_batch("w", 10)
    assert [(j.payload, j.priority, j.max_attempts) for j in jobs] == [("go", 4, 2)] * 3
    assert sorted(j.id for j in jobs) == sorted(f["job_id"] for f in fires)


def test_catch_up_is_capped_at_64_per_tick(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(1))
    first = s.list()[0]["next_fire_at"]
    fires = s.tick(first + 1000)
    assert len(fires) == 64
    assert s.list()[0]["next_fire_at"] == first + 1001


def test_expires_lets_stale_catch_up_fires_drop_out(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(60), expires=30)
    first = s.list()[0]["next_fire_at"]
    s.tick(first + 120)
    db.engine.write(
        lambda c: c.execute(sql_for(db, "UPDATE _honker_live SET expires_at = unixepoch() - 1"))
    )
    assert db.queue("q").claim_batch("w", 10) == []
    assert db.queue("q").sweep_expired() == 3


def test_paused_schedules_do_not_fire(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(10))
    first = s.list()[0]["next_fire_at"]
    s.pause("t")
    assert s.tick(first + 100) == []
    assert db.engine.read(db.engine.ops.scheduler_soonest) == 0
    s.resume("t")
    assert len(s.tick(first + 100)) == 11


@pytest.mark.sqlite_only("the honker_* SQL functions exist only on SQLite connections")
def test_scheduler_sql_functions(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.query("SELECT honker_scheduler_register('a', 'q', '@every 5s', '\"go\"', 1, 60, 5)")
        listed = json.loads(tx.query("SELECT honker_scheduler_list() AS l")[0]["l"])
        assert listed[0]["enabled"] is True and listed[0]["max_attempts"] == 5
        assert tx.query(
            "SELECT honker_scheduler_update('a', NULL, NULL, 9, NULL, 0, 2, 1) AS ok"
        ) == [{"ok": 1}]
        assert tx.query("SELECT honker_scheduler_pause('a') AS ok") == [{"ok": 1}]
        assert tx.query("SELECT honker_scheduler_resume('a') AS ok") == [{"ok": 1}]
        nxt = listed[0]["next_fire_at"]
        fires = json.loads(tx.query("SELECT honker_scheduler_tick(?) AS f", [nxt])[0]["f"])
        assert [(f["name"], f["queue"], f["fire_at"]) for f in fires] == [("a", "q", nxt)]
        assert tx.query("SELECT honker_scheduler_unregister('a') AS n") == [{"n": 1}]


async def test_run_requires_tasks_and_exits_when_idle(db: honker.Database) -> None:
    with pytest.raises(RuntimeError, match="no registered tasks"):
        await Scheduler(db).run()
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(1))
    s.pause("t")
    await asyncio.wait_for(s.run(), 5)  # nothing enabled: returns normally
    assert db.query("SELECT COUNT(*) AS n FROM _honker_locks") == [{"n": 0}]


async def test_run_fires_and_stops_on_event(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(1), payload="tick")
    stop = asyncio.Event()
    runner = asyncio.create_task(s.run(stop))
    claims = db.queue("q").claim("w", idle_poll_s=None)
    job = await asyncio.wait_for(claims.__anext__(), 5)
    assert job.payload == "tick"
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert db.query("SELECT COUNT(*) AS n FROM _honker_locks") == [{"n": 0}]
    claims.close()


async def test_second_scheduler_gets_lock_held(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="t", queue="q", schedule=every_s(1))
    stop = asyncio.Event()
    runner = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.2)
    with pytest.raises(LockHeld):
        await Scheduler(db).run()
    stop.set()
    await runner


async def test_leadership_lost_is_raised(db: honker.Database) -> None:
    s = Scheduler(db, heartbeat_interval=0.2, lock_ttl=5)
    s.add(name="t", queue="q", schedule=crontab("0 3 * * *"))
    runner = asyncio.create_task(s.run())
    await asyncio.sleep(0.3)
    db.engine.write(lambda c: c.execute("UPDATE _honker_locks SET owner = 'usurper'"))
    with pytest.raises(LeadershipLost, match="lost"):
        await asyncio.wait_for(runner, 5)
    assert db.query("SELECT owner FROM _honker_locks") == [{"owner": "usurper"}]


async def test_idle_leader_makes_no_writes(db: honker.Database, db_path: str) -> None:
    s = Scheduler(db)
    s.add(name="nightly", queue="q", schedule=crontab("0 3 * * *"))
    stop = asyncio.Event()
    runner = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.3)
    if db.engine.kind == "sqlite":
        probe = sqlite3.connect(db_path)
        before = probe.execute("PRAGMA data_version").fetchone()[0]
        await asyncio.sleep(1.5)
        assert probe.execute("PRAGMA data_version").fetchone()[0] == before
        probe.close()
    else:  # every write transaction on the server takes a transaction id
        xmax = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x"
        before = db.query(xmax)
        await asyncio.sleep(1.5)
        assert db.query(xmax) == before
    stop.set()
    await runner


async def test_new_schedule_wakes_a_sleeping_leader(db: honker.Database) -> None:
    s = Scheduler(db)
    s.add(name="nightly", queue="q", schedule=crontab("0 3 * * *"))
    stop = asyncio.Event()
    runner = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.2)
    Scheduler(db).add(name="fast", queue="fast", schedule=every_s(1), payload="new")
    claims = db.queue("fast").claim("w", idle_poll_s=None)
    job = await asyncio.wait_for(claims.__anext__(), 5)
    assert job.payload == "new"
    claims.close()
    stop.set()
    await runner


SCHEDULER_CHILD = """
import asyncio, sys
import honker
from honker import Scheduler

async def main():
    db = honker.open(sys.argv[1])
    s = Scheduler(db, lock_ttl=int(sys.argv[2]), heartbeat_interval=0.5, owner=sys.argv[3])
    print("READY", flush=True)
    await s.run(standby=True)

asyncio.run(main())
"""


def jobs(db: honker.Database, queue: str = "beat") -> list[dict[str, object]]:
    return db.query(
        sql_for(db, "SELECT id, payload, created_at FROM _honker_live WHERE queue = ? ORDER BY id"),
        [queue],
    )


def test_three_processes_leader_killed_no_double_fire(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    ttl = 3
    s = Scheduler(db)
    s.add(name="beat", queue="beat", schedule=every_s(1))
    first = s.list()[0]["next_fire_at"]
    kids = {f"sched-{i}": Child(SCHEDULER_CHILD, db_path, str(ttl), f"sched-{i}") for i in range(3)}
    children.extend(kids.values())
    for kid in kids.values():
        kid.expect("READY")
    time.sleep(4)
    (lock,) = db.query("SELECT owner FROM _honker_locks")
    leader = kids[lock["owner"]]
    os.kill(leader.pid, signal.SIGKILL)
    killed_at = time.time()
    leader.wait()
    time.sleep(ttl + 4)
    (lock_after,) = db.query("SELECT owner FROM _honker_locks")
    assert lock_after["owner"] != lock["owner"] and lock_after["owner"] in kids
    for kid in kids.values():
        kid.kill()
    rows = jobs(db)
    next_fire = s.list()[0]["next_fire_at"]
    # exactly one job per boundary fired so far: none twice, none skipped
    assert len(rows) == next_fire - first
    assert len(rows) >= 8
    after_kill = [r["created_at"] for r in rows if r["created_at"] > killed_at]
    assert after_kill, "nobody took over"
    # takeover within the lock TTL plus a second (+1 s for whole-second timestamps)
    assert min(after_kill) - killed_at <= ttl + 1 + 1


PAUSER_LEADER = """
import asyncio, sys
import honker
from honker import Scheduler

async def main():
    db = honker.open(sys.argv[1])
    print("READY", flush=True)
    await Scheduler(db).run(exit_when_idle=False)

asyncio.run(main())
"""


def test_pause_resume_update_from_another_process(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    s = Scheduler(db)
    s.add(name="beat", queue="beat", schedule=every_s(1), payload="v1")
    leader = Child(PAUSER_LEADER, db_path)
    children.append(leader)
    leader.expect("READY")
    q = db.queue("beat")

    def next_payload(timeout: float = 5) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = q.claim_one("w")
            if job is not None:
                job.ack()
                return job.payload
            time.sleep(0.05)
        raise AssertionError("no job fired")

    assert next_payload() == "v1"
    s.pause("beat")
    time.sleep(0.3)
    while q.claim_one("w") is not None:
        pass
    time.sleep(2.5)
    assert q.claim_one("w") is None  # nothing fired while paused
    s.update("beat", payload="v2")
    s.resume("beat")
    assert next_payload() == "v2"
    s.update("beat", schedule=every_s(3600))
    time.sleep(0.5)
    while q.claim_one("w") is not None:
        pass
    time.sleep(2)
    assert q.claim_one("w") is None  # the new schedule took effect without a restart


def test_schedules_with_their_own_time_zone(db: honker.Database) -> None:
    from zoneinfo import ZoneInfo

    from honker import cron

    s = Scheduler(db)
    with pytest.raises(ValueError, match="unknown time zone"):
        s.add(name="bad", queue="q", schedule="0 9 * * *", tz="Mars/Olympus")
    assert s.list() == []
    s.add(name="tokyo", queue="q", schedule="0 9 * * *", tz="Asia/Tokyo")
    s.add(name="local", queue="q", schedule="0 9 * * *")
    rows = {r["name"]: r for r in s.list()}
    assert rows["tokyo"]["tz"] == "Asia/Tokyo" and "tz" not in rows["local"]
    now = int(time.time())
    tokyo_next = cron.next_after_unix("0 9 * * *", now, ZoneInfo("Asia/Tokyo"))
    assert abs(rows["tokyo"]["next_fire_at"] - tokyo_next) <= 1
    fires = s.tick(rows["tokyo"]["next_fire_at"])
    assert "tokyo" in [f["name"] for f in fires]
    after = s.get("tokyo")
    assert after is not None and after["next_fire_at"] == rows["tokyo"]["next_fire_at"] + 86400
    assert s.update("tokyo", tz="America/New_York") is True
    moved = s.get("tokyo")
    assert moved is not None and moved["tz"] == "America/New_York"
    assert moved["next_fire_at"] == cron.next_after_unix(
        "0 9 * * *", moved["next_fire_at"] - 1, ZoneInfo("America/New_York")
    )
    assert s.update("tokyo", tz=None) is True
    cleared = s.get("tokyo")
    assert cleared is not None and "tz" not in cleared
    s.remove("local")
    assert db.query("SELECT name FROM _honker_scheduler_tz") == []
    if db.engine.kind != "sqlite":
        return  # the SQL function surface is SQLite-only
    with db.transaction() as tx:  # the SQL surface keeps the reference's JSON shape
        listed = json.loads(tx.query("SELECT honker_scheduler_list() AS l")[0]["l"])
    assert "tz" not in listed[0]


def test_schedule_changes_join_the_callers_transaction(db: honker.Database) -> None:
    s = Scheduler(db)
    with pytest.raises(KeyError), db.transaction() as tx:
        s.add(name="r", queue="q", schedule=every_s(5), tx=tx)
        raise KeyError
    assert s.list() == []
    with db.transaction() as tx:
        tx.execute("CREATE TABLE reminders (name TEXT)")
        tx.execute("INSERT INTO reminders VALUES ('r')")
        s.add(name="r", queue="q", schedule=every_s(5), tx=tx)
        s.pause("r", tx=tx)
        s.update("r", priority=3, tx=tx)
    (row,) = s.list()
    assert (row["enabled"], row["priority"]) == (False, 3)
    with db.transaction() as tx:
        tx.execute("DELETE FROM reminders")
        assert s.remove("r", tx=tx) is True
    assert s.list() == []


async def test_service_scheduler_waits_for_its_first_schedule(db: honker.Database) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(Scheduler(db).run(stop, exit_when_idle=False))
    await asyncio.sleep(0.2)
    assert not runner.done()
    Scheduler(db).add(name="late", queue="q", schedule=every_s(1), payload="first")
    claims = db.queue("q").claim("w", idle_poll_s=None)
    job = await asyncio.wait_for(claims.__anext__(), 5)
    assert job.payload == "first"
    claims.close()
    stop.set()
    await asyncio.wait_for(runner, 5)
