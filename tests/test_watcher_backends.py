"""Every watcher backend ("polling", "kernel", "shm") against real files and real processes.

Listeners here use ``fallback_poll_s=None`` and workers ``idle_poll_s=None``: only the
watcher wakes them, so a missed wake shows up as a hang (and a readline timeout), not as a
slow pass. Timings are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import honker
from helpers import DRAIN_WORKER, Child

BACKENDS = ["polling", "kernel", "shm"]


def _unavailable(backend: str, tmp_path: Path) -> str | None:
    probe = str(tmp_path / "probe.db")
    try:
        honker.open(probe, watcher_backend=backend).close()
    except ValueError as exc:
        return str(exc)
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(probe + suffix)
            except FileNotFoundError:
                pass
    return None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each watcher backend in turn (skipped where this platform cannot run it)."""
    name: str = request.param
    reason = _unavailable(name, tmp_path)
    if reason is not None:
        pytest.skip(reason)
    return name


@pytest.fixture
def bdb(db_path: str, backend: str) -> Iterator[honker.Database]:
    """A Database on a fresh file using the backend under test."""
    database = honker.open(db_path, watcher_backend=backend)
    yield database
    database.close()


def shm_identity(path: str) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of ``path`` + "-shm" (which exists while a Database is open)."""
    st = os.stat(path + "-shm")
    return (st.st_dev, st.st_ino)


def fds_on(identity: tuple[int, int]) -> list[int]:
    """Descriptors of this process open on the file ``identity`` (stat only, even if
    the file was unlinked meanwhile)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fst = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if (fst.st_dev, fst.st_ino) == identity:
            found.append(int(name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


LISTENER = """
import asyncio, json, sys, time
import honker

async def main():
    db = honker.open(sys.argv[1], watcher_backend=sys.argv[2])
    want = int(sys.argv[4])
    listener = db.listen(sys.argv[3], fallback_poll_s=None)
    print("READY", flush=True)
    got = []
    async for note in listener:
        got.append(note.payload)
        if len(got) >= want:
            break
    print(json.dumps(got), flush=True)

asyncio.run(main())
"""

WRITER = """
import sys
import honker
db = honker.open(sys.argv[1])
for payload in sys.argv[3:]:
    with db.transaction() as tx:
        tx.notify(sys.argv[2], payload)
print("DONE", flush=True)
"""

# A writer driven over stdin, one command per line (plain sqlite3, WAL).
SCRIPTED_WRITER = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
conn.execute("PRAGMA journal_mode=WAL")
print("READY", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "notify":
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO _honker_notifications (channel, payload) VALUES ('c', ?)",
            [json.dumps(arg)],
        )
        conn.execute("COMMIT")
        print("OK", flush=True)
    elif cmd == "rollback":
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO _honker_notifications (channel, payload) VALUES ('c', ?)",
            [json.dumps(arg)],
        )
        conn.execute("ROLLBACK")
        print("OK", flush=True)
    elif cmd == "checkpoint":
        row = conn.execute(f"PRAGMA wal_checkpoint({arg})").fetchone()
        print("OK " + json.dumps(list(row)), flush=True)
    elif cmd == "quit":
        break
"""


async def next_payload(listener: honker.Listener, timeout: float = 10.0) -> object:
    return (await asyncio.wait_for(listener.__anext__(), timeout)).payload


# -- wakes ---------------------------------------------------------------------------------
async def test_same_process_commit_wakes(bdb: honker.Database, backend: str) -> None:
    assert bdb.engine.watcher.backend == backend
    listener = bdb.listen("c", fallback_poll_s=None)
    started = time.monotonic()
    with bdb.transaction() as tx:
        tx.notify("c", "here")
    assert await next_payload(listener) == "here"
    print(f"{backend}: same-process wake {1000 * (time.monotonic() - started):.2f} ms")


def test_thread_subscriber_woken_by_child_commit(
    bdb: honker.Database, db_path: str, children: list[Child]
) -> None:
    sub = bdb.engine.subscribe()
    while sub.wait_sync(0.1):
        pass
    child = Child(WRITER, db_path, "c", "x")
    children.append(child)
    child.expect("DONE")
    assert sub.wait_sync(10) is True
    sub.close()


async def test_commit_in_other_process_wakes_listener(
    bdb: honker.Database, db_path: str, backend: str, children: list[Child]
) -> None:
    listener = bdb.listen("c", fallback_poll_s=None)
    child = Child(WRITER, db_path, "c", "from-child")
    children.append(child)
    assert await next_payload(listener) == "from-child"
    # ...and the other way round: a listener process using this backend.
    kid = Child(LISTENER, db_path, backend, "back", "1")
    children.append(kid)
    kid.expect("READY")
    with bdb.transaction() as tx:
        tx.notify("back", {"n": 1})
    assert json.loads(kid.readline()) == [{"n": 1}]


def test_1000_notifications_reach_3_processes_in_order(
    bdb: honker.Database, db_path: str, backend: str, children: list[Child]
) -> None:
    kids = [Child(LISTENER, db_path, backend, "burst", "1000") for _ in range(3)]
    children.extend(kids)
    for kid in kids:
        kid.expect("READY")
    started = time.monotonic()
    for i in range(1000):
        with bdb.transaction() as tx:
            tx.notify("burst", i)
    for kid in kids:
        assert json.loads(kid.readline(timeout=90)) == list(range(1000))
    print(f"{backend}: 1000 x 3 delivered in {time.monotonic() - started:.2f} s")


async def test_writer_process_restarting(
    bdb: honker.Database, db_path: str, children: list[Child]
) -> None:
    listener = bdb.listen("c", fallback_poll_s=None)
    for generation in range(3):
        child = Child(WRITER, db_path, "c", f"gen{generation}-a", f"gen{generation}-b")
        children.append(child)
        child.expect("DONE")
        assert child.wait() == 0  # the writer process is gone before we even look
        assert await next_payload(listener) == f"gen{generation}-a"
        assert await next_payload(listener) == f"gen{generation}-b"




def test_four_worker_processes_drain_without_double_claim(
    bdb: honker.Database, db_path: str, backend: str, children: list[Child]
) -> None:
    jobs = 2000
    q = bdb.queue("work")
    kids = [Child(DRAIN_WORKER, db_path, backend, f"w{i}") for i in range(4)]
    children.extend(kids)
    for kid in kids:
        kid.expect("READY")
    started = time.monotonic()
    for start in range(0, jobs, 100):
        with bdb.transaction() as tx:
            for i in range(start, start + 100):
                q.enqueue(i, tx=tx)
    with bdb.transaction() as tx:
        for _ in kids:
            q.enqueue("stop", tx=tx)
    results = [json.loads(kid.readline(timeout=120)) for kid in kids]
    counts = Counter(x for r in results for x in r)
    assert sorted(counts) == list(range(jobs))
    assert set(counts.values()) == {1}
    assert bdb.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]
    print(
        f"{backend}: {jobs} jobs drained in {time.monotonic() - started:.2f} s, "
        f"per worker {[len(r) for r in results]}"
    )


# -- no data from rollbacks ----------------------------------------------------------------
async def test_rollback_delivers_nothing(
    bdb: honker.Database, db_path: str, children: list[Child]
) -> None:
    listener = bdb.listen("c", fallback_poll_s=None)
    with pytest.raises(KeyError), bdb.transaction() as tx:
        tx.notify("c", "same-process rollback")
        raise KeyError("abort")
    writer = Child(SCRIPTED_WRITER, db_path)
    children.append(writer)
    writer.expect("READY")
    writer.send("rollback other-process-rollback")
    assert writer.readline() == "OK"
    with pytest.raises(asyncio.TimeoutError):
        await next_payload(listener, 0.5)
    writer.send("notify committed")
    assert writer.readline() == "OK"
    assert await next_payload(listener) == "committed"
    writer.send("quit")
    assert writer.wait() == 0


# -- checkpoints and WAL resets ------------------------------------------------------------
async def test_checkpoint_and_wal_reset_from_other_process_still_wake(
    bdb: honker.Database, db_path: str, children: list[Child]
) -> None:
    listener = bdb.listen("c", fallback_poll_s=None)
    writer = Child(SCRIPTED_WRITER, db_path)
    children.append(writer)
    writer.expect("READY")
    expected = 0
    for mode in ("TRUNCATE", "RESTART", "PASSIVE", "TRUNCATE"):
        for _ in range(3):
            writer.send(f"notify n{expected}")
            assert writer.readline() == "OK"
            assert await next_payload(listener) == f"n{expected}"
            expected += 1
        writer.send(f"checkpoint {mode}")
        busy, log, done = json.loads(writer.readline().split(" ", 1)[1])
        print(f"wal_checkpoint({mode}) -> busy={busy} log={log} checkpointed={done}")
        if mode == "TRUNCATE" and not busy:
            assert os.path.getsize(db_path + "-wal") == 0
    # Commits after the reset (the WAL restarts at frame 1 with new salts) still wake.
    for _ in range(3):
        writer.send(f"notify n{expected}")
        assert writer.readline() == "OK"
        assert await next_payload(listener) == f"n{expected}"
        expected += 1
    # And a checkpoint run by this process's writer does too.
    bdb.engine.read(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    writer.send("notify last")
    assert writer.readline() == "OK"
    assert await next_payload(listener) == "last"
    writer.send("quit")
    assert writer.wait() == 0


# -- dead-man's switch ---------------------------------------------------------------------
async def test_replaced_file_kills_every_subscriber(db_path: str, backend: str) -> None:
    db = honker.open(db_path, watcher_backend=backend)
    shutil.copy(db_path, db_path + ".copy")
    events = db.update_events()
    listener = db.listen("c")
    await asyncio.sleep(0.05)
    os.replace(db_path + ".copy", db_path)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="update watcher died"):
        await asyncio.wait_for(events.__anext__(), 10)
    with pytest.raises(RuntimeError, match="update watcher died"):
        await asyncio.wait_for(listener.__anext__(), 10)
    print(f"{backend}: died {1000 * (time.monotonic() - started):.0f} ms after the replace")
    with pytest.raises(RuntimeError, match="update watcher died"):
        await db.update_events().__anext__()
    db.close()


# -- life cycle ----------------------------------------------------------------------------
async def test_restart_after_idle_exit(
    bdb: honker.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from honker import _watcher

    monkeypatch.setattr(_watcher, "IDLE_EXIT_S", 0.2)
    events = bdb.update_events()
    events.close()
    assert wait_until(lambda: not bdb.engine.watcher.running)
    with bdb.transaction() as tx:  # lands while no thread runs: not a wake for later
        tx.notify("c", "before")
    listener = bdb.listen("c", fallback_poll_s=None)
    assert bdb.engine.watcher.running
    with bdb.transaction() as tx:
        tx.notify("c", "after")
    assert await next_payload(listener) == "after"


# -- rollback-journal mode (watcher level: honker itself always runs in WAL) --------------
RAW_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
print("MODE " + conn.execute("PRAGMA journal_mode").fetchone()[0], flush=True)
for line in sys.stdin:
    cmd = line.strip()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("COMMIT" if cmd == "commit" else "ROLLBACK")
    print("OK", flush=True)
"""


def _raw_connect(path: str) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    return connect


@pytest.mark.parametrize("watcher_backend", ["polling", "kernel"])
def test_rollback_journal_mode(tmp_path: Path, watcher_backend: str, children: list[Child]) -> None:
    from honker._watcher import create_watcher

    if _unavailable(watcher_backend, tmp_path):
        pytest.skip(f"{watcher_backend} unavailable")
    path = str(tmp_path / "delete.db")
    setup = sqlite3.connect(path, isolation_level=None)
    assert setup.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    setup.execute("CREATE TABLE t (x)")
    setup.close()
    watcher = create_watcher(watcher_backend, watcher_backend, path, _raw_connect(path), 0.001)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        sub = watcher.subscribe()
        child = Child(RAW_WRITER, path)
        children.append(child)
        assert child.readline() == "MODE delete"
        for i in range(1, 6):
            child.send("commit")
            assert child.readline() == "OK"
            assert sub.wait_sync(10) is True
            assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == i
        child.send("rollback")
        assert child.readline() == "OK"
        sub.wait_sync(0.3)  # a spurious wake is allowed; data is not
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 5
        child.send("commit")
        assert child.readline() == "OK"
        assert sub.wait_sync(10) is True
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 6
        assert not os.path.exists(path + "-wal")
    finally:
        reader.close()
        watcher.close()
        watcher.release_files()


# -- probing and failure modes -------------------------------------------------------------
def test_shm_rejects_a_database_not_in_wal_mode(tmp_path: Path) -> None:
    from honker._watcher import create_watcher

    path = str(tmp_path / "delete.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ValueError, match="requires the WAL journal mode"):
        create_watcher("shm", "shm-fast-path", path, _raw_connect(path), 0.001)


def test_shm_without_a_wal_index_file_is_a_value_error(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from honker import _backends

    def missing(path: str) -> object:
        raise FileNotFoundError(path)

    # With honker's own connections open the -shm always exists; simulate a WAL database
    # without one (exclusive locking mode elsewhere, a VFS without shared memory).
    monkeypatch.setattr(_backends, "acquire_map", missing)
    with pytest.raises(ValueError, match="requires the WAL-index file"):
        honker.open(db_path, watcher_backend="shm")


def test_kernel_without_inotify_is_a_value_error(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from honker import _backends

    monkeypatch.setattr(_backends, "_inotify", None)
    monkeypatch.setattr(_backends, "_inotify_error", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ValueError, match="requires the Linux inotify API"):
        honker.open(db_path, watcher_backend="kernel-watcher")
    monkeypatch.undo()
    # Nothing was left open: the same file opens fine afterwards.
    honker.open(db_path).close()


def test_shm_map_failure_is_a_probe_failure(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from honker import _backends

    mm = _backends._load_mmap()

    def broken_map(fd: int, length: int) -> int:
        raise OSError(12, "mmap failed: out of memory (simulated)")

    monkeypatch.setattr(mm, "map", broken_map)
    keep = honker.open(db_path)  # keeps the -shm file (and SQLite's locks on it) alive
    shm = shm_identity(db_path)
    with pytest.raises(RuntimeError, match="watcher_backend probe failed"):
        honker.open(db_path, watcher_backend="shm")
    # The descriptor opened for the map is not closed while SQLite holds locks on the
    # file through its own descriptor; it goes once SQLite's does.
    assert len(fds_on(shm)) == 2
    keep.close()
    assert wait_until(lambda: fds_on(shm) == [])


def test_kernel_watcher_opens_no_database_file(db_path: str) -> None:
    polling = honker.open(db_path)
    polling.update_events()
    shm = shm_identity(db_path)
    before = len(fds_on(shm))
    db = honker.open(db_path, watcher_backend="kernel")
    try:
        db.update_events()
        ifd = db.engine.watcher._ifd  # type: ignore[attr-defined]
        assert os.readlink(f"/proc/self/fd/{ifd}") == "anon_inode:inotify"
        assert len(fds_on(shm)) == before == 1  # SQLite's own -shm descriptor only
    finally:
        db.close()
        polling.close()


# -- the shm descriptor's life -------------------------------------------------------------
def test_shm_descriptor_closes_after_the_connections(db_path: str) -> None:
    db = honker.open(db_path, watcher_backend="shm")
    db.update_events()
    shm = shm_identity(db_path)
    assert len(fds_on(shm)) == 2  # SQLite's and the map's
    db.close()
    assert fds_on(shm) == []


def test_shm_map_is_shared_and_outlives_other_databases(db_path: str) -> None:
    first = honker.open(db_path, watcher_backend="shm")
    second = honker.open(db_path, watcher_backend="shm")
    assert first.engine.watcher._shm is second.engine.watcher._shm  # type: ignore[attr-defined]
    shm = shm_identity(db_path)
    fds = fds_on(shm)
    assert len(fds) == 2
    first.close()
    assert fds_on(shm) == fds  # second's connections still hold SQLite's locks
    sub = second.engine.subscribe()
    while sub.wait_sync(0.1):
        pass
    with second.transaction() as tx:
        tx.notify("c", 1)
    assert sub.wait_sync(10) is True
    second.close()
    assert fds_on(shm) == []


def test_shm_descriptor_waits_for_a_transaction_in_flight(db_path: str) -> None:
    db = honker.open(db_path, watcher_backend="shm")
    shm = shm_identity(db_path)
    inside = threading.Event()
    finish = threading.Event()

    def slow_transaction() -> None:
        with db.transaction() as tx:
            tx.notify("c", 1)
            inside.set()
            finish.wait(10)

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    assert inside.wait(10)
    db.close()  # the writer is busy: its connection closes when the transaction ends
    assert len(fds_on(shm)) == 2  # so the map's descriptor must stay open too
    finish.set()
    thread.join(10)
    assert wait_until(lambda: fds_on(shm) == [])
