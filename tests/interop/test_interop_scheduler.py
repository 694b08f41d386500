"""Schedules on one file: registered by one side, listed, paused and ticked by the other;
our ``Scheduler.run`` fires what the extension registered; both compute the same cron
boundaries (also across DST changes, with the same time zone)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fetch_reference import ReferencePeers
from peers import ExtPeer, NodePeer, PeerUnavailable

import honker
from honker.cron import next_after_unix


@pytest.fixture(params=["ext", "node"])
def peer(request: pytest.FixtureRequest, db: honker.Database) -> ExtPeer | NodePeer:
    fixture: ExtPeer | NodePeer = request.getfixturevalue(f"{request.param}_peer")
    return fixture


def test_our_scheduler_run_fires_what_the_extension_registered(
    db: honker.Database, ext_peer: ExtPeer
) -> None:
    assert (
        ext_peer(
            "scheduler_register",
            name="heartbeat",
            queue="beats",
            cron="@every 1s",
            payload={"beat": True},
            priority=4,
            expires_s=600,
            max_attempts=7,
        )
        == 1
    )
    sched = honker.Scheduler(db)
    [listed] = sched.list()
    assert (listed["name"], listed["queue"], listed["cron_expr"]) == (
        "heartbeat",
        "beats",
        "@every 1s",
    )
    assert (listed["enabled"], listed["max_attempts"], listed["expires_s"]) == (True, 7, 600)
    q = db.queue("beats")

    async def run_until_fired() -> honker.Job:
        stop = asyncio.Event()
        claims = q.claim("w", idle_poll_s=None)
        runner = asyncio.create_task(sched.run(stop))
        try:
            return await asyncio.wait_for(claims.__anext__(), 20)
        finally:
            stop.set()
            await runner
            claims.close()

    job = asyncio.run(run_until_fired())
    assert job.payload == {"beat": True}
    assert (job.priority, job.max_attempts) == (4, 7)
    assert ext_peer("lock_acquire", name="honker-scheduler", owner="ref", ttl=60) == 1  # released


def test_reference_ticks_what_we_registered(db: honker.Database, peer: ExtPeer | NodePeer) -> None:
    sched = honker.Scheduler(db)
    sched.add(
        name="digest",
        queue="mail",
        schedule="@every 60s",
        payload={"kind": "digest"},
        priority=2,
        expires=300,
        max_attempts=5,
    )
    [ours] = sched.list()
    [theirs] = peer("scheduler_list")
    assert theirs == {**ours, "payload": theirs["payload"]}
    assert json.loads(theirs["payload"]) == {"kind": "digest"}
    first = ours["next_fire_at"]
    fires = peer("scheduler_tick", now=first + 60)
    assert [(f["name"], f["queue"], f["fire_at"]) for f in fires] == [
        ("digest", "mail", first),
        ("digest", "mail", first + 60),
    ]
    assert sched.get("digest")["next_fire_at"] == first + 120  # type: ignore[index]
    jobs = db.queue("mail").claim_batch("w", 10)
    assert sorted(j.id for j in jobs) == sorted(f["job_id"] for f in fires)
    assert {(json.dumps(j.payload), j.priority, j.max_attempts) for j in jobs} == {
        ('{"kind": "digest"}', 2, 5)
    }
    assert sched.tick(first + 60) == []  # nothing fires twice
    assert peer("scheduler_soonest") == first + 120


def test_pause_resume_unregister_across_implementations(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    sched = honker.Scheduler(db)
    sched.add(name="a", queue="q", schedule="*/5 * * * *")
    assert peer("scheduler_pause", name="a") == 1
    assert sched.get("a")["enabled"] is False  # type: ignore[index]
    assert not sched.pause("a")
    # re-registered by the reference: stays paused
    peer("scheduler_register", name="a", queue="q2", cron="*/5 * * * *", payload="null")
    assert sched.get("a")["enabled"] is False and sched.get("a")["queue"] == "q2"  # type: ignore[index]
    assert sched.resume("a")
    assert peer("scheduler_list")[0]["enabled"] is True
    # 6-argument registration: budget 3
    peer("scheduler_register", name="b", queue="q", cron="@every 1h", payload={}, max_attempts=None)
    assert sched.get("b")["max_attempts"] == 3  # type: ignore[index]
    assert peer("scheduler_unregister", name="a") == 1
    assert [s["name"] for s in sched.list()] == ["b"]
    assert sched.remove("b")
    assert peer("scheduler_list") == [] and peer("scheduler_soonest") == 0


CRON_EXPRS = [
    "@every 5s",
    "@every 7m",
    "@every 3h",
    "@every 2d",
    "*/15 * * * *",
    "0 3 * * *",
    "30 2 * * *",
    "0 1-3 * * *",
    "0 12 * * 1",
    "0 0 1 * *",
    "15,45 */2 * * 1-5",
    "0 0 29 2 *",
    "*/10 * * * * *",
    "5 4 3 2 1 *",
    "0 0 13 * 5",
    "0 9-17/4 * 3,11 0,6",
]
# 2025: US spring-forward Mar 9, fall-back Nov 2; EU spring-forward Mar 30, fall-back Oct 26.
FROMS = [0, 951782400, 1741420800, 1743292800, 1761436800, 1761440400, 1762056000, 1767225599]


def _ambiguous(ts: int, tz: ZoneInfo) -> bool:
    """True when ``ts``'s local wall time occurs twice in ``tz`` (a fall-back hour)."""
    wall = datetime.fromtimestamp(ts, tz).replace(tzinfo=None)
    return (
        wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()
    )


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/Paris"])
def test_cron_boundaries_agree_with_the_extension(
    reference: ReferencePeers, interop_db: Path, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """Same boundaries for every case except wall times of a repeated (fall-back) hour:
    SQL_FUNCTIONS.md §8 says the earlier instant is used, which we do; the reference
    extension 0.5.0 uses the later one (e.g. Europe/Paris 2025-10-26 02:15 → 01:15 UTC,
    where we say 00:15 UTC). That known difference is pinned here so that any other one
    fails the test."""
    monkeypatch.setenv("TZ", zone)  # the reference evaluates cron in its local time zone
    try:
        ext = ExtPeer(reference, interop_db)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    cases = [(expr, start) for expr in CRON_EXPRS for start in FROMS]
    theirs = ext(
        "batch",
        ops=[{"op": "cron_next_after", "args": {"expr": e, "from": f}} for e, f in cases],
    )
    tz = ZoneInfo(zone)
    ours = [next_after_unix(expr, start, tz) for expr, start in cases]
    mismatches = [
        (expr, start, o, t)
        for (expr, start), o, t in zip(cases, ours, theirs, strict=True)
        if o != t
    ]
    unexplained = [m for m in mismatches if not (_ambiguous(m[2], tz) or _ambiguous(m[3], tz))]
    assert unexplained == []
    assert len(mismatches) < len(cases) // 10
    if zone == "Europe/Paris":  # the difference is real (pinned: tell us if it goes away)
        assert ("*/15 * * * *", 1761436800, 1761437700, 1761441300) in mismatches
