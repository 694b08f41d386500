"""Durable streams: publish/subscribe, offsets, replay→live hand-over, crash recovery."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

import honker
from helpers import Child

pytestmark = pytest.mark.engines


async def take(
    sub: honker.stream.StreamSubscription, n: int, timeout: float = 10
) -> list[honker.Event]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(sub.__anext__(), timeout))
    return out


async def test_publish_and_subscribe(db: honker.Database) -> None:
    s = db.stream("orders")
    assert db.stream("orders") is s
    s.publish({"id": 1}, key="a")
    s.publish({"id": 2})
    sub = s.subscribe()
    events = await take(sub, 2)
    assert [(e.payload, e.key, e.topic) for e in events] == [
        ({"id": 1}, "a", "orders"),
        ({"id": 2}, None, "orders"),
    ]
    assert events[0].offset < events[1].offset and events[0].created_at > 0
    assert "offset=" in repr(events[0]) and "'orders'" in repr(events[0])

    async def later() -> None:
        await asyncio.sleep(0.05)
        s.publish({"id": 3})

    task = asyncio.create_task(later())
    (live,) = await take(sub, 1)
    await task
    assert live.payload == {"id": 3}


async def test_topics_are_isolated_and_offsets_global(db: honker.Database) -> None:
    a, b = db.stream("a"), db.stream("b")
    a.publish(1)
    b.publish(2)
    a.publish(3)
    events = await take(a.subscribe(), 2)
    assert [e.payload for e in events] == [1, 3]
    assert events[1].offset - events[0].offset == 2  # gaps per topic are normal


async def test_publish_in_rolled_back_transaction_is_never_delivered(db: honker.Database) -> None:
    s = db.stream("s")
    sub = s.subscribe()
    with pytest.raises(KeyError), db.transaction() as tx:
        s.publish("ghost", tx=tx)
        raise KeyError
    with db.transaction() as tx:
        s.publish("real", tx=tx)
    (event,) = await take(sub, 1)
    assert event.payload == "real"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.__anext__(), 0.3)


async def test_named_consumers_keep_independent_offsets(db: honker.Database) -> None:
    s = db.stream("s")
    for i in range(10):
        s.publish(i)
    for name, n in (("alpha", 3), ("beta", 7), ("gamma", 10)):
        sub = s.subscribe(consumer=name, save_every_n=1, save_every_s=0)
        got = await take(sub, n)
        sub.flush()
        assert [e.payload for e in got] == list(range(n))
    offsets = {name: s.get_offset(name) for name in ("alpha", "beta", "gamma", "nobody")}
    first = db.query('SELECT MIN("offset") AS o FROM _honker_stream')[0]["o"]
    assert offsets == {"alpha": first + 2, "beta": first + 6, "gamma": first + 9, "nobody": 0}
    resumed = s.subscribe(consumer="alpha")
    assert [e.payload for e in await take(resumed, 7)] == list(range(3, 10))


def test_save_offset_is_monotonic_and_transactional(db: honker.Database) -> None:
    s = db.stream("s")
    s.save_offset("c", 10)
    s.save_offset("c", 5)
    assert s.get_offset("c") == 10
    with pytest.raises(ZeroDivisionError), db.transaction() as tx:
        s.save_offset("c", 50, tx=tx)
        _ = 1 / 0
    assert s.get_offset("c") == 10
    with db.transaction() as tx:
        tx.execute("CREATE TABLE side (x INTEGER)")
        tx.execute("INSERT INTO side VALUES (1)")
        s.save_offset("c", 20, tx=tx)
    assert s.get_offset("c") == 20


async def test_auto_save_rules(db: honker.Database) -> None:
    s = db.stream("s")
    for i in range(10):
        s.publish(i)
    sub = s.subscribe(consumer="n3", save_every_n=3, save_every_s=0)
    events = await take(sub, 4)  # the 4th call saves the 3rd event's offset
    assert s.get_offset("n3") == events[2].offset
    manual = s.subscribe(consumer="manual", save_every_n=0, save_every_s=0)
    await take(manual, 10)
    assert s.get_offset("manual") == 0
    timed = s.subscribe(consumer="timed", save_every_n=0, save_every_s=0.05)
    first = await take(timed, 1)
    await asyncio.sleep(0.1)
    await take(timed, 1)
    assert s.get_offset("timed") == first[0].offset


async def test_from_offset_and_read_since(db: honker.Database) -> None:
    s = db.stream("s")
    for i in range(5):
        s.publish(i)
    rows = s._read_since(0, limit=2)
    assert [json.loads(r["payload"]) for r in rows] == [0, 1]
    assert set(rows[0]) == {"offset", "topic", "key", "payload", "created_at"}
    sub = s.subscribe(consumer="ignored", from_offset=rows[1]["offset"])
    assert [e.payload for e in await take(sub, 3)] == [2, 3, 4]


async def test_replay_of_more_than_one_batch(db: honker.Database) -> None:
    s = db.stream("big")
    with db.transaction() as tx:
        for i in range(2500):
            s.publish(i, tx=tx)
    got = [e.payload for e in await take(s.subscribe(), 2500)]
    assert got == list(range(2500))


PUBLISHER = """
import sys, time
import honker
db = honker.open(sys.argv[1])
s = db.stream("live")
print("READY", flush=True)
for i in range(int(sys.argv[2])):
    s.publish(i)
print("DONE", flush=True)
"""


async def test_replay_to_live_handover_under_concurrent_publisher(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    s = db.stream("live")
    with db.transaction() as tx:
        for i in range(3000):
            s.publish(-1 - i, tx=tx)  # backlog to replay
    publisher = Child(PUBLISHER, db_path, "3000")
    children.append(publisher)
    publisher.expect("READY")
    sub = s.subscribe()  # starts replaying while the other process keeps publishing
    events = await take(sub, 6000, timeout=30)
    offsets = [e.offset for e in events]
    assert offsets == sorted(set(offsets))
    live = [e.payload for e in events if e.payload >= 0]
    assert live == list(range(3000))
    assert len([e for e in events if e.payload < 0]) == 3000


CONSUMER = """
import asyncio, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    s = db.stream("crash")
    async for event in s.subscribe(consumer="c", save_every_n=50, save_every_s=0):
        print(event.offset, flush=True)
        sys.stdin.readline()  # the test paces the consumer, so it can kill it mid-stream

asyncio.run(main())
"""


def test_consumer_sigkilled_five_times_covers_every_offset(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    s = db.stream("crash")
    with db.transaction() as tx:
        for i in range(5000):
            s.publish(i, tx=tx)
    all_offsets = [r["offset"] for r in db.query('SELECT "offset" FROM _honker_stream')]
    runs: list[list[int]] = []
    for kill_after in (400, 700, 900, 1100, 1300):
        child = Child(CONSUMER, db_path)
        children.append(child)
        got = []
        for _ in range(kill_after):
            got.append(int(child.readline()))
            child.send("next")
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        got.extend(int(line) for line in child.drain())  # printed before the kill
        runs.append(got)
    final = Child(CONSUMER, db_path)
    children.append(final)
    tail: list[int] = []
    while not tail or tail[-1] != all_offsets[-1]:
        tail.append(int(final.readline()))
        final.send("next")
    runs.append(tail)
    for run in runs:
        assert run == sorted(set(run)), "offsets must strictly increase within a run"
    seen = set().union(*map(set, runs))
    assert seen == set(all_offsets)
    # each restart resumed from a saved offset, not from zero
    assert all(run[0] > all_offsets[0] for run in runs[1:])
