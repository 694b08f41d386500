"""The update watcher: wakes on commits from any connection or process, coalesces, dies loudly."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import threading
import time

import pytest

import honker
from helpers import Child

WRITER_CHILD = """
import sys, time
import honker
db = honker.open(sys.argv[1])
with db.transaction() as tx:
    tx.execute("CREATE TABLE IF NOT EXISTS t (x)")
print("READY", flush=True)
sys.stdin.readline()
with db.transaction() as tx:
    tx.execute("INSERT INTO t VALUES (1)")
print("DONE", flush=True)
"""


async def test_update_events_wake_on_same_process_commit(db: honker.Database) -> None:
    events = db.update_events()
    assert events.path == db.path
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    await asyncio.wait_for(events.__anext__(), 5)


async def test_update_events_wake_on_other_process_commit(
    db: honker.Database, db_path: str
) -> None:
    import subprocess
    import sys

    from helpers import python_env

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, db_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "READY"
        events = db.update_events()
        # Drain wakes caused by the child's own setup commits.
        while await events.wait(0.1):
            pass
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert await events.wait(5) is True
        assert db.query("SELECT COUNT(*) AS n FROM t") == [{"n": 1}]
    finally:
        proc.communicate(timeout=10)


async def test_rolled_back_transactions_do_not_wake(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    events = db.update_events()
    while await events.wait(0.05):
        pass
    with pytest.raises(KeyError), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise KeyError("abort")
    assert await events.wait(0.3) is False


async def test_bursts_coalesce_and_wake_is_buffered(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    events = db.update_events()
    while await events.wait(0.05):
        pass
    for i in range(20):
        with db.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (?)", [i])
    await asyncio.sleep(0.1)  # the wake lands before anyone waits: it must be kept
    assert await events.wait(0) is True
    assert await events.wait(0.1) is False  # ...and the burst was one wake


def test_thread_subscribers(db: honker.Database) -> None:
    sub = db.engine.subscribe()
    got = threading.Event()

    def waiter() -> None:
        if sub.wait_sync(5):
            got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    thread.join(5)
    assert got.is_set()
    sub.close()


async def test_replaced_file_kills_the_watcher(db_path: str, tmp_path: object) -> None:
    db = honker.open(db_path)
    other = str(db_path) + ".copy"
    shutil.copy(db_path, other)
    events = db.update_events()
    listener = db.listen("c")
    await asyncio.sleep(0.05)
    os.replace(other, db_path)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="update watcher died"):
        await asyncio.wait_for(events.__anext__(), 5)
    with pytest.raises(RuntimeError, match="update watcher died"):
        await asyncio.wait_for(listener.__anext__(), 5)
    assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError, match="update watcher died"):
        await db.update_events().__anext__()
    db.close()


async def test_close_ends_update_events(db: honker.Database) -> None:
    events = db.update_events()

    async def consume() -> list[None]:
        return [item async for item in events]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    db.close()
    assert await asyncio.wait_for(task, 5) == []


async def test_one_thread_for_many_subscribers_and_no_leak(db: honker.Database) -> None:
    def watcher_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("honker-watcher"))

    baseline = watcher_threads()
    listeners = [db.listen(f"c{i}") for i in range(50)]
    assert db.engine.watcher.subscriber_count == 50
    assert watcher_threads() == baseline + 1
    del listeners
    for i in range(300):
        listener = db.listen(f"d{i}")
        del listener
    gc.collect()
    assert db.engine.watcher.subscriber_count == 0
    assert watcher_threads() <= baseline + 1


async def test_watcher_restarts_after_idle_exit(
    db: honker.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from honker import _watcher

    monkeypatch.setattr(_watcher, "IDLE_EXIT_S", 0.2)
    events = db.update_events()
    events.close()
    deadline = time.monotonic() + 5
    while db.engine.watcher.running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not db.engine.watcher.running
    events = db.update_events()
    assert db.engine.watcher.running
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    assert await events.wait(5) is True


async def test_wake_between_subscribe_and_first_wait_is_kept(db: honker.Database) -> None:
    events = db.update_events()
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    await asyncio.sleep(0.05)
    assert await events.wait(0) is True


def test_child_process_commit_wakes_thread_subscriber(db: honker.Database, db_path: str) -> None:
    sub = db.engine.subscribe()
    child = Child(
        """
import sys, honker
db = honker.open(sys.argv[1])
with db.transaction() as tx:
    tx.execute("CREATE TABLE t (x)")
print("DONE")
""",
        db_path,
    )
    child.expect("DONE")
    assert child.wait() == 0
    assert sub.wait_sync(5) is True
    sub.close()
