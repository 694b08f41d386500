"""Database, Transaction and open(): PRAGMAs, reads/writes, nesting, close, bad input."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import honker


def test_open_creates_file_and_applies_pragmas(db: honker.Database, db_path: str) -> None:
    assert isinstance(db, honker.Database)
    assert os.path.exists(db_path)
    conn = db.engine.readers.acquire()
    try:
        values = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in (
                "journal_mode",
                "synchronous",
                "busy_timeout",
                "foreign_keys",
                "cache_size",
                "temp_store",
                "wal_autocheckpoint",
            )
        }
    finally:
        db.engine.readers.release(conn)
    assert values == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 5000,
        "foreign_keys": 1,
        "cache_size": -32000,
        "temp_store": 2,
        "wal_autocheckpoint": 10000,
    }


def test_query_returns_dicts_with_sqlite_types(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
        tx.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [1, 2.5, "x", b"\x00\x01", None])
        tx.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", (True, 0.0, "", b"", None))
    rows = db.query("SELECT * FROM t ORDER BY rowid")
    assert rows == [
        {"i": 1, "r": 2.5, "s": "x", "b": b"\x00\x01", "n": None},
        {"i": 1, "r": 0.0, "s": "", "b": b"", "n": None},
    ]
    assert db.query("SELECT 1 AS one WHERE 0") == []
    assert db.query("SELECT ? AS v", iter([7])) == [{"v": 7}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": 1}, "positional sequence"),
        ("abc", "positional sequence"),
        (b"abc", "positional sequence"),
        ([object()], "unsupported SQL parameter type"),
        ([[1, 2]], "unsupported SQL parameter type"),
        (5, "positional sequence"),
    ],
)
def test_bad_params_raise_type_error(db: honker.Database, params: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        db.query("SELECT ?", params)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message), db.transaction() as tx:
        tx.execute("SELECT ?", params)  # type: ignore[arg-type]


def test_sql_errors_are_runtime_errors(db: honker.Database) -> None:
    with pytest.raises(RuntimeError, match="no such table"):
        db.query("SELECT * FROM missing")
    with pytest.raises(RuntimeError, match="syntax error"), db.transaction() as tx:
        tx.execute("SELEC 1")
    assert not db.engine.holds_writer()
    with pytest.raises(RuntimeError):
        db.query("SELECT 1; SELECT 2")


def test_reader_sees_only_committed_data(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    with db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        assert tx.query("SELECT COUNT(*) AS n FROM t") == [{"n": 1}]
        assert db.query("SELECT COUNT(*) AS n FROM t") == [{"n": 0}]
    assert db.query("SELECT COUNT(*) AS n FROM t") == [{"n": 1}]


def test_transaction_rolls_back_on_exception(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    with pytest.raises(ZeroDivisionError), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        _ = 1 / 0
    assert db.query("SELECT COUNT(*) AS n FROM t") == [{"n": 0}]
    assert not db.engine.holds_writer()


def test_nested_transaction_raises_at_once(db: honker.Database) -> None:
    with db.transaction() as tx:
        assert db.engine.holds_writer()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"nested db\.transaction\(\) is not supported"):
            with db.transaction():
                pass
        assert time.monotonic() - started < 1.0
        with pytest.raises(RuntimeError, match="nested"):
            db.prune_notifications(max_keep=0)
        tx.execute("SELECT 1")  # the outer transaction is still usable
    assert not db.engine.holds_writer()


def test_other_threads_wait_for_the_writer(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait()
        with db.transaction() as tx2:
            order.append("other")
            tx2.execute("INSERT INTO t VALUES (2)")

    thread = threading.Thread(target=other)
    thread.start()
    with db.transaction() as tx:
        inside.set()
        time.sleep(0.2)
        order.append("first")
        tx.execute("INSERT INTO t VALUES (1)")
    thread.join(5)
    assert order == ["first", "other"]
    assert db.query("SELECT x FROM t ORDER BY rowid") == [{"x": 1}, {"x": 2}]


def test_transaction_methods_outside_block(db: honker.Database) -> None:
    tx = db.transaction()
    with pytest.raises(RuntimeError, match="Transaction not started"):
        tx.execute("SELECT 1")
    with tx:
        tx.execute("SELECT 1")
    for call in (
        lambda: tx.execute("SELECT 1"),
        lambda: tx.query("SELECT 1"),
        lambda: tx.notify("c", 1),
        tx.bootstrap_honker_schema,
    ):
        with pytest.raises(RuntimeError, match="Transaction not started"):
            call()


def test_commit_failure_rolls_back_and_releases(db: honker.Database) -> None:
    with db.transaction() as tx:
        tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        tx.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(RuntimeError, match="FOREIGN KEY"), db.transaction() as tx:
        tx.execute("INSERT INTO child VALUES (99)")
    assert not db.engine.holds_writer()
    assert db.query("SELECT COUNT(*) AS n FROM child") == [{"n": 0}]
    with db.transaction() as tx:  # the writer was released
        tx.execute("INSERT INTO parent VALUES (1)")


def test_close_is_idempotent_and_final(db_path: str) -> None:
    db = honker.open(db_path)
    events = db.update_events()
    db.close()
    db.close()
    assert db.closed
    for call in (db.transaction, lambda: db.query("SELECT 1"), db.update_events):
        with pytest.raises(RuntimeError, match="Database is closed"):
            call()
    events.close()
    assert not db.engine.watcher.running


def test_close_waits_for_in_flight_transaction(db_path: str) -> None:
    db = honker.open(db_path)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    entered = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with db.transaction() as tx:
            entered.set()
            release.wait(5)
            tx.execute("INSERT INTO t VALUES (1)")

    thread = threading.Thread(target=writer)
    thread.start()
    entered.wait(5)
    db.close()
    release.set()
    thread.join(5)
    check = honker.open(db_path)
    assert check.query("SELECT COUNT(*) AS n FROM t") == [{"n": 1}]
    check.close()


def test_context_manager_closes(db_path: str) -> None:
    with honker.open(db_path) as db:
        db.query("SELECT 1")
    assert db.closed


@pytest.mark.parametrize(
    "path",
    [
        ":memory:",
        "",
        "file::memory:",
        "file::memory:?cache=shared",
        "file:x?mode=memory&cache=shared",
    ],
)
def test_memory_databases_are_rejected(path: str) -> None:
    with pytest.raises(ValueError, match="file-backed"):
        honker.open(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="unable to open"):
        honker.open(str(tmp_path / "no" / "such" / "dir" / "app.db"))
    assert not (tmp_path / "no").exists()


def test_not_a_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"this is not a database, just text\n" * 200
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="not a database"):
        honker.open(str(path))
    assert path.read_bytes() == content


def test_read_only_database(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    honker.open(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE").fetchall()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="readonly"):
        db = honker.open(f"file:{path}?mode=ro")
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x)")
    assert path.read_bytes() == before


def test_read_only_mount(tmp_path: Path) -> None:
    """A database on a read-only filesystem: open works for reads, writes fail clearly."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size=4m tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        honker.open(str(mnt / "app.db")).close()
        conn = sqlite3.connect(mnt / "app.db")
        conn.execute("PRAGMA journal_mode=DELETE").fetchall()
        conn.close()
        assert os.system(f"mount -o remount,ro {mnt}") == 0
        before = (mnt / "app.db").read_bytes()
        with pytest.raises(RuntimeError, match=r"readonly|read-only|unable to open"):
            db = honker.open(str(mnt / "app.db"))
            with db.transaction() as tx:
                tx.execute("CREATE TABLE t (x)")
        assert (mnt / "app.db").read_bytes() == before
    finally:
        os.system(f"umount -l {mnt}")


def test_backend_validation(db_path: str) -> None:
    for bad in ("KERNEL", " polling ", "auto", "inotify"):
        with pytest.raises(ValueError, match="unknown watcher backend"):
            honker.open(db_path, watcher_backend=bad)
    with pytest.raises(ValueError, match="watcher poll interval must be positive"):
        honker.open(db_path, watcher_poll_interval_ms=0)
    for alias in ("polling", "poll", None):
        honker.open(db_path, watcher_backend=alias).close()


def test_path_types(tmp_path: Path) -> None:
    db = honker.open(tmp_path / "p.db")
    assert db.path == str(tmp_path / "p.db")
    db.close()
    with pytest.raises(TypeError):
        honker.open(42)  # type: ignore[arg-type]


def test_uri_filenames_are_accepted(tmp_path: Path) -> None:
    db = honker.open(f"file:{tmp_path / 'u.db'}?cache=private")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (x)")
    db.close()
    assert (tmp_path / "u.db").exists()


def test_max_readers_bounds_the_pool(db_path: str) -> None:
    db = honker.open(db_path, max_readers=2)
    a = db.engine.readers.acquire()
    b = db.engine.readers.acquire()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(db.query("SELECT 1 AS x")))
    thread.start()
    time.sleep(0.2)
    assert got == []  # blocked: both readers are busy
    db.engine.readers.release(a)
    thread.join(5)
    assert got == [[{"x": 1}]]
    db.engine.readers.release(b)
    db.close()


def test_garbage_collected_database_releases_handles(db_path: str) -> None:
    import gc
    import weakref

    db = honker.open(db_path)
    db.query("SELECT 1")
    ref = weakref.ref(db)
    res = db.engine._res
    del db
    gc.collect()
    assert ref() is None
    assert res.closed
