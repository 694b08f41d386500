"""Notifications across implementations on one file: our listener wakes on the reference's
``notify`` (Node's ``Transaction.notify`` and the extension's ``notify()`` SQL function), and
the reference's listeners (the extension's update watcher, Node's ``updateEvents``) wake on
ours; rolled-back notifications are seen by nobody."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from peers import ExtPeer, NodePeer

import honker


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("node", {"payload": {"n": 1, "s": "é"}}),  # Transaction.notify: JSON-encodes
        ("node", {"payload": {"n": 1, "s": "é"}, "via": "sql"}),  # SELECT notify(?, ?)
        ("ext", {"payload": {"n": 1, "s": "é"}}),  # SELECT notify(?, ?) on the extension
    ],
    ids=["node-method", "node-sql", "ext-sql"],
)
def test_our_listener_wakes_on_reference_notify(
    request: pytest.FixtureRequest, db: honker.Database, kind: str, args: dict[str, object]
) -> None:
    peer: ExtPeer | NodePeer = request.getfixturevalue(f"{kind}_peer")

    async def listen() -> list[tuple[str, object]]:
        listener = db.listen("orders", fallback_poll_s=None)  # only a wake can deliver
        try:
            sender = asyncio.create_task(
                asyncio.to_thread(peer, "notify", {"channel": "orders", **args})
            )
            note = await asyncio.wait_for(listener.__anext__(), 20)
            note_id = await sender
            assert note.id == note_id
            return [(note.channel, note.payload)]
        finally:
            listener.close()

    assert asyncio.run(listen()) == [("orders", {"n": 1, "s": "é"})]


@pytest.mark.parametrize("kind", ["ext", "node"])
def test_reference_listener_wakes_on_our_notify(
    request: pytest.FixtureRequest, db: honker.Database, kind: str
) -> None:
    peer: ExtPeer | NodePeer = request.getfixturevalue(f"{kind}_peer")
    with peer.listen("orders", timeout=20, count=1) as waiting:  # returns once subscribed
        with pytest.raises(ZeroDivisionError), db.transaction() as tx:
            tx.notify("orders", {"rolled": "back"})
            1 / 0  # noqa: B018
        with db.transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
            tx.execute("INSERT INTO orders DEFAULT VALUES")
            sent = tx.notify("orders", {"id": 42, "tags": ["a"]})
    [row] = waiting.result()
    assert row["id"] == sent and row["channel"] == "orders"
    assert honker.Notification(row).payload == {"id": 42, "tags": ["a"]}


def test_attached_connection_notify_reaches_reference_listener(
    db: honker.Database, db_path: str, node_peer: NodePeer
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    honker.attach(conn)
    with node_peer.listen("jobs", timeout=20, count=2) as waiting:
        conn.execute("BEGIN IMMEDIATE")
        first = conn.execute("SELECT notify('jobs', '\"one\"')").fetchone()[0]
        second = conn.execute("SELECT notify('jobs', '\"two\"')").fetchone()[0]
        conn.execute("COMMIT")
    rows = waiting.result()
    conn.close()
    assert [(r["id"], r["payload"]) for r in rows] == [(first, '"one"'), (second, '"two"')]
