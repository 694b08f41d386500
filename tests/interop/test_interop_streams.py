"""Streams on one file, both directions: events and consumer offsets written by one side are
read and resumed by the other, and our live subscription wakes on the reference's commit."""

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


def test_reference_reads_our_events_and_shares_consumer_offsets(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    orders = db.stream("orders")
    with db.transaction() as tx:
        orders.publish({"id": 1, "total": 9.5}, tx=tx)
        orders.publish("second", key="customer-7", tx=tx)
        db.stream("audit").publish({"other": "topic"}, tx=tx)
        orders.publish([3], tx=tx)
    events, after_first = peer(
        "batch",
        ops=[
            {"op": "read_since", "args": {"topic": "orders", "offset": 0, "limit": 100}},
            {"op": "read_since", "args": {"topic": "orders", "offset": 1, "limit": 1}},
        ],
    )
    assert [e["offset"] for e in events] == [1, 2, 4]  # one global offset sequence
    assert [json.loads(e["payload"]) for e in events] == [{"id": 1, "total": 9.5}, "second", [3]]
    assert [e["key"] for e in events] == [None, "customer-7", None]
    assert {e["topic"] for e in events} == {"orders"}
    assert [e["offset"] for e in after_first] == [2]

    # the reference's consumer saves its position; ours resumes right after it
    assert peer("save_offset", consumer="billing", topic="orders", offset=2) == 1
    assert orders.get_offset("billing") == 2

    async def resume() -> list[object]:
        sub = orders.subscribe(consumer="billing", save_every_n=0, save_every_s=0)
        event = await asyncio.wait_for(sub.__anext__(), 10)
        orders.save_offset("billing", event.offset)
        sub.close()
        return [event.offset, event.payload]

    assert asyncio.run(resume()) == [4, [3]]
    assert peer("get_offset", consumer="billing", topic="orders") == 4
    assert peer("save_offset", consumer="billing", topic="orders", offset=1) == 0  # no rewind
    assert peer("get_offset", consumer="nobody", topic="orders") == 0


def test_our_subscription_follows_reference_publishes(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    offset = peer("publish", topic="feed", payload={"n": 0}, key="k")
    stream = db.stream("feed")

    async def follow() -> list[tuple[int, object, str | None]]:
        sub = stream.subscribe(consumer="ours")
        got = []
        first = await asyncio.wait_for(sub.__anext__(), 10)  # replayed
        got.append((first.offset, first.payload, first.key))
        # a commit by another process, while we wait in the live phase
        publisher = asyncio.create_task(
            asyncio.to_thread(peer, "publish", {"topic": "feed", "payload": {"n": 1}})
        )
        second = await asyncio.wait_for(sub.__anext__(), 20)
        got.append((second.offset, second.payload, second.key))
        await publisher
        sub.flush()  # save the consumer's position now
        sub.close()
        return got

    got = asyncio.run(follow())
    assert got == [(offset, {"n": 0}, "k"), (offset + 1, {"n": 1}, None)]
    assert peer("get_offset", consumer="ours", topic="feed") == offset + 1
