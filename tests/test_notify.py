"""notify/listen: transactional, ordered, cross-process, never lost, never replayed."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime

import pytest

import honker
from helpers import Child

pytestmark = pytest.mark.engines

LISTENER_CHILD = """
import asyncio, json, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    want = int(sys.argv[3])
    listener = db.listen(sys.argv[2])
    print("READY", flush=True)
    got = []
    async for note in listener:
        got.append(note.payload)
        if len(got) >= want:
            break
    print(json.dumps(got), flush=True)

asyncio.run(main())
"""


async def next_note(listener: honker.Listener, timeout: float = 5.0) -> honker.Notification:
    return await asyncio.wait_for(listener.__anext__(), timeout)


async def test_listener_gets_committed_notifications_in_order(db: honker.Database) -> None:
    listener = db.listen("orders")
    with db.transaction() as tx:
        first = tx.notify("orders", {"id": 1})
        tx.notify("other", "ignored")
        second = tx.notify("orders", {"id": 2})
    assert second > first
    a = await next_note(listener)
    b = await next_note(listener)
    assert (a.id, a.channel, a.payload) == (first, "orders", {"id": 1})
    assert (b.id, b.payload) == (second, {"id": 2})
    assert a.created_at > 0
    assert repr(a) == f"Notification(id={first}, channel='orders')"


async def test_history_is_not_replayed(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.notify("c", "old")
    listener = db.listen("c")
    with db.transaction() as tx:
        tx.notify("c", "new")
    assert (await next_note(listener)).payload == "new"


async def test_rolled_back_notify_is_never_delivered(db: honker.Database) -> None:
    listener = db.listen("c", fallback_poll_s=0.05)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.notify("c", "rolled back")
        raise RuntimeError("abort")
    with pytest.raises(asyncio.TimeoutError):
        await next_note(listener, 0.5)
    with db.transaction() as tx:
        tx.notify("c", "committed")
    assert (await next_note(listener)).payload == "committed"


async def test_notify_between_subscribe_and_first_read_is_kept(db: honker.Database) -> None:
    listener = db.listen("c", fallback_poll_s=None)
    with db.transaction() as tx:
        tx.notify("c", 1)
    await asyncio.sleep(0.1)
    assert (await next_note(listener)).payload == 1


async def test_listener_in_another_process_is_woken(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    child = Child(LISTENER_CHILD, db_path, "ping", "1")
    children.append(child)
    child.expect("READY")
    with db.transaction() as tx:
        tx.notify("ping", {"hello": "world"})
    assert json.loads(child.readline()) == [{"hello": "world"}]


async def test_rolled_back_notify_not_seen_by_other_process(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    child = Child(LISTENER_CHILD, db_path, "c", "1")
    children.append(child)
    child.expect("READY")
    with pytest.raises(ValueError), db.transaction() as tx:
        tx.notify("c", "never")
        raise ValueError
    with db.transaction() as tx:
        tx.notify("c", "real")
    assert json.loads(child.readline()) == ["real"]


def test_three_listener_processes_each_get_all_1000_in_order(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    kids = [Child(LISTENER_CHILD, db_path, "burst", "1000") for _ in range(3)]
    children.extend(kids)
    for kid in kids:
        kid.expect("READY")
    for i in range(1000):
        with db.transaction() as tx:
            tx.notify("burst", i)
    for kid in kids:
        assert json.loads(kid.readline(timeout=60)) == list(range(1000))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (datetime(2026, 1, 1), TypeError),
        (object(), TypeError),
        ({1, 2}, TypeError),
        (math.nan, ValueError),
        ({"x": math.inf}, ValueError),
    ],
)
def test_non_json_payloads_raise_before_writing(
    db: honker.Database, payload: object, error: type[Exception]
) -> None:
    with db.transaction() as tx:
        with pytest.raises(error):
            tx.notify("c", payload)
    assert db.query("SELECT COUNT(*) AS n FROM _honker_notifications") == [{"n": 0}]


def test_channel_must_be_a_string(db: honker.Database) -> None:
    with pytest.raises(TypeError), db.transaction() as tx:
        tx.notify(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.listen(1)  # type: ignore[arg-type]


def test_payloads_are_json_text_on_disk(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.notify("c", "x")
        tx.notify("c", {"to": "a@b.c"})
        tx.notify("c", None)
    rows = db.query("SELECT payload FROM _honker_notifications ORDER BY id")
    assert [r["payload"] for r in rows] == ['"x"', '{"to": "a@b.c"}', "null"]


@pytest.mark.sqlite_only("notify() is a SQL function of SQLite connections only")
def test_notify_sql_function_in_a_transaction(db: honker.Database) -> None:
    with db.transaction() as tx:
        row = tx.query("SELECT notify('c', '{\"a\": 1}') AS id")
    assert row[0]["id"] >= 1
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.query("SELECT notify('c', '1')")
        raise RuntimeError
    assert db.query("SELECT COUNT(*) AS n FROM _honker_notifications") == [{"n": 1}]


def test_notification_payload_decoding_is_lenient() -> None:
    def note(raw: object) -> object:
        return honker.Notification({"id": 1, "channel": "c", "payload": raw}).payload

    assert note(None) is None
    assert note("") is None
    assert note("null") is None
    assert note('{"a": [1]}') == {"a": [1]}
    assert note("not json") == "not json"
    assert honker.Notification({"id": 1, "channel": "c"}).created_at == 0


def test_prune_notifications(db: honker.Database) -> None:
    for i in range(10):
        with db.transaction() as tx:
            tx.notify("a" if i % 2 else "b", i)
    assert db.prune_notifications() == 0
    assert db.prune_notifications(max_keep=2**64) == 0
    with pytest.raises(ValueError, match="max_keep must not be negative"):
        db.prune_notifications(max_keep=-1)
    assert db.prune_notifications(older_than_s=3600) == 0
    assert db.prune_notifications(max_keep=4) == 6
    ids = [r["id"] for r in db.query("SELECT id FROM _honker_notifications ORDER BY id")]
    assert ids == [7, 8, 9, 10]
    db.engine.write(
        lambda c: c.execute("UPDATE _honker_notifications SET created_at = 0 WHERE id = 7")
    )
    assert db.prune_notifications(older_than_s=60, max_keep=3) == 1
    assert db.prune_notifications(max_keep=0) == 3
    assert db.query("SELECT COUNT(*) AS n FROM _honker_notifications") == [{"n": 0}]


async def test_listener_skips_pruned_rows(db: honker.Database) -> None:
    listener = db.listen("c")
    with db.transaction() as tx:
        for i in range(5):
            tx.notify("c", i)
    db.prune_notifications(max_keep=2)
    assert [(await next_note(listener)).payload for _ in range(2)] == [3, 4]


async def test_listener_ends_when_database_closes(db_path: str) -> None:
    db = honker.open(db_path)
    listener = db.listen("c")
    task = asyncio.create_task(listener.__anext__())
    await asyncio.sleep(0.05)
    db.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, 5)
