"""The engine seam: how a ``Database`` reaches its storage.

Feature modules (queues, streams, notify, locks, results, the scheduler, the worker) never
touch a driver. They call an :class:`Engine`: ``write(fn, *args)`` runs ``fn(conn, *args)``
in a write transaction of its own and commits, ``read`` runs it on a reader that sees
committed data only, ``in_tx`` joins the caller's ``Transaction`` when one is given, and
``subscribe`` hands out a wake-on-commit subscription. ``fn`` is always a function of the
engine's own ``ops`` module (``engine.ops.enqueue`` …): each engine ships a module with the
same function names and signatures as :mod:`honker._ops`, written in its own SQL dialect.

``awrite``/``aread`` run the same work on the engine's small I/O thread pool, so async code
(claim loops, listeners, the worker) never blocks its event loop on a lock or on I/O.

:class:`SqliteEngine` is the SQLite implementation: one writer connection behind a lock
(every write is ``BEGIN IMMEDIATE`` … ``COMMIT``), a bounded pool of reader connections and
one update watcher, started on the first subscription.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from . import _ops, _schema, _sqlfunctions
from ._errors import (
    CLOSED_MESSAGE,
    NESTED_TX_MESSAGE,
    DatabaseClosed,
    SQLiteError,
    translate,
)
from ._validate import check_int64_params, check_str
from ._watcher import Subscription, UpdateWatcher, create_watcher

if TYPE_CHECKING:
    from ._database import Transaction

T = TypeVar("T")

PRAGMAS: tuple[str, ...] = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-32000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA wal_autocheckpoint=10000",
)

MEMORY_MESSAGE = (
    "honker requires a file-backed database: {path!r} is an in-memory database, and separate "
    "connections (writer, readers, update watcher, other processes) would each see a "
    "different one; use a temporary file instead"
)

# Accepted spellings of ``watcher_backend``. None picks one: the kernel backend where
# inotify works on a local file system, else polling (see docs/watchers.md).
BACKENDS = {
    None: "auto",
    "polling": "polling",
    "poll": "polling",
    "kernel": "kernel",
    "kernel-watcher": "kernel",
    "shm": "shm",
    "shm-fast-path": "shm",
}

_SQL_TYPES = (str, int, float, bytes, bytearray, memoryview)

# Threads of an engine's I/O pool (``awrite``/``aread``). Writes serialise on the writer
# anyway; a few threads let reads and waits for the writer overlap.
IO_THREADS = 4


@runtime_checkable
class Engine(Protocol):
    """What feature modules need from a storage engine (SQLite today; others can be added).

    Every ``fn`` passed in takes the engine's connection first and comes from ``ops``.
    Errors surface as the public exceptions of :mod:`honker._errors` (``RuntimeError``
    subclasses for storage failures, ``DatabaseClosed`` after :meth:`close`).
    """

    kind: str
    """Short engine name: ``"sqlite"``."""
    path: str
    """What ``open()`` was given (for messages and ``repr``)."""
    ops: ModuleType
    """The module of every statement, in this engine's dialect (same API as ``_ops``)."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        ...

    def write(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a write transaction of its own and commit it.

        ``quiet`` marks work that can never make a job claimable (claims, acks): an engine
        may skip waking other processes for it.
        """
        ...

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a connection that sees committed data only."""
        ...

    def in_tx(self, tx: Transaction | None, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` inside ``tx`` when given (commits with it), else :meth:`write` it."""
        ...

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """Run any blocking ``fn(*args)`` that uses this engine on its I/O threads."""
        ...

    async def awrite(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """:meth:`write` on the engine's I/O threads (the event loop stays free)."""
        ...

    async def aread(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`read` on the engine's I/O threads."""
        ...

    def subscribe(self) -> Subscription:
        """A wake-on-commit subscription (any commit, any process)."""
        ...

    def begin(self) -> Any:
        """Take the writer for a ``db.transaction()`` block and return its connection."""
        ...

    def end(self, conn: Any, commit: bool) -> None:
        """Commit (or roll back) and release what :meth:`begin` took."""
        ...

    def holds_writer(self) -> bool:
        """Whether the calling thread is inside a transaction of this engine."""
        ...

    def run_sql(self, conn: Any, sql: str, params: Iterable[Any] | None) -> list[dict[str, Any]]:
        """Execute the application's own SQL on ``conn``; every row as a dict."""
        ...

    def query(self, sql: str, params: Iterable[Any] | None) -> list[dict[str, Any]]:
        """The application's own SQL on a reader; every row as a dict."""
        ...

    def install_schema(self, conn: Any) -> None:
        """Idempotently install the schema inside the transaction of ``conn``."""
        ...

    def ensure_queue_schema(self) -> None:
        """One-time schema work before the first queue of this engine is used."""
        ...

    def change_token(self) -> Hashable | None:
        """A value that changes whenever claimable work may have appeared.

        ``None`` means "unknown": callers must then assume something changed. A claim loop
        that saw the same token before and after a wake may skip its claim.
        """
        ...

    def close(self) -> None:
        """Release every connection and thread. Idempotent."""
        ...


def check_params(params: Any) -> Sequence[Any]:
    """Validate SQL parameters: ``None`` or a positional sequence of SQL-storable values."""
    if params is None:
        return ()
    if isinstance(params, (str, bytes, bytearray, dict)) or hasattr(params, "keys"):
        raise TypeError(
            f"SQL params must be a positional sequence (list or tuple), not {type(params).__name__}"
        )
    if type(params) is not list and type(params) is not tuple:
        try:
            params = tuple(params)
        except TypeError:
            raise TypeError(
                f"SQL params must be a positional sequence, not {type(params).__name__}"
            ) from None
    for value in params:
        if value is not None and not isinstance(value, _SQL_TYPES):
            raise TypeError(
                f"unsupported SQL parameter type: {type(value).__name__} "
                "(use None, bool, int, float, str or bytes)"
            )
    check_int64_params(params)
    return params  # type: ignore[no-any-return]


def rows_as_dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Fetch every row of ``cur`` as a ``dict`` of column name to value."""
    desc = cur.description
    if desc is None:
        cur.fetchall()
        return []
    names = [d[0] for d in desc]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def normalize_path(path: Any) -> tuple[str, str, bool]:
    """Return ``(path as given, filesystem path, is_uri)``; reject in-memory databases."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    if path in ("", ":memory:"):
        raise ValueError(MEMORY_MESSAGE.format(path=path))
    if path.startswith("file:"):
        parts = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(parts.query)
        fs_path = urllib.parse.unquote(parts.path)
        if "memory" in query.get("mode", []) or fs_path in ("", ":memory:"):
            raise ValueError(MEMORY_MESSAGE.format(path=path))
        return path, fs_path, True
    return path, path, False


def _set_wal(conn: sqlite3.Connection, patience_s: float = 5.0) -> None:
    """Switch to WAL, retrying while another process holds the file.

    Changing the journal mode needs an exclusive lock and SQLite reports "database is
    locked" at once (without calling the busy handler) when two processes race to convert
    a fresh file, so this retries for up to the busy timeout.
    """
    deadline = time.monotonic() + patience_s
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class _Connector:
    """Opens connections to one database file; holds no reference to the engine."""

    __slots__ = ("is_uri", "path", "target")

    def __init__(self, path: str, target: str, is_uri: bool) -> None:
        self.path = path
        self.target = target
        self.is_uri = is_uri

    def connect(self) -> sqlite3.Connection:
        """A library connection with the standard PRAGMAs (SQLite errors → RuntimeError)."""
        try:
            conn = sqlite3.connect(
                self.target,
                isolation_level=None,
                check_same_thread=False,
                uri=self.is_uri,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise SQLiteError(f"{exc}: {self.path!r}") from None
        try:
            for pragma in PRAGMAS:
                if pragma == "PRAGMA journal_mode=WAL":
                    _set_wal(conn)
                else:
                    conn.execute(pragma).fetchall()
        except sqlite3.Error as exc:
            conn.close()
            raise SQLiteError(f"{exc}: {self.path!r}") from None
        return conn

    def connect_watcher(self) -> sqlite3.Connection:
        """A bare connection for the update watcher (no PRAGMAs)."""
        return sqlite3.connect(
            self.target, isolation_level=None, check_same_thread=False, uri=self.is_uri
        )


class _Writer:
    """The single writer connection, its lock and the thread currently holding it."""

    __slots__ = ("close_pending", "conn", "lock", "owner", "work_gen")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.lock = threading.Lock()
        self.owner: int | None = None
        self.close_pending = False
        # Bumped by every committed write of this process that may create claimable work
        # (see SqliteEngine.change_token).
        self.work_gen = 0

    def close_now(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            conn.close()


class _ReaderPool:
    """Lazily opened reader connections, at most ``size`` of them."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int) -> None:
        self._connect = connect
        self._size = max(1, int(size))
        self._idle: list[sqlite3.Connection] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def open_count(self) -> int:
        """Reader connections currently open (idle or in use)."""
        return self._count

    @property
    def idle_count(self) -> int:
        """Reader connections open and waiting to be used."""
        return len(self._idle)

    def acquire(self) -> sqlite3.Connection:
        with self._cond:
            while True:
                if self._closed:
                    raise DatabaseClosed(CLOSED_MESSAGE)
                if self._idle:
                    return self._idle.pop()
                if self._count < self._size:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def release(self, conn: sqlite3.Connection) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._count -= 1
        conn.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()


class _IoPool:
    """A lazily started thread pool for an engine's ``awrite``/``aread``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def get(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=IO_THREADS, thread_name_prefix=self._name
                    )
        return pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _Resources:
    """Everything an engine must release; kept apart so GC can release it without the owner."""

    def __init__(
        self, writer: _Writer, readers: _ReaderPool, watcher: UpdateWatcher, io: _IoPool
    ) -> None:
        self.writer = writer
        self.readers = readers
        self.watcher = watcher
        self.io = io
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.io.close()
        self.watcher.close()
        self.readers.close()
        writer = self.writer
        if writer.lock.acquire(blocking=False):
            try:
                writer.close_now()
            finally:
                writer.lock.release()
        else:
            # A transaction is in flight on another thread: it finishes on its own
            # connection, and the thread that releases the writer closes it.
            writer.close_pending = True
        # Last: a backend's descriptor on the database's files (shm). Closing it drops the
        # process's POSIX locks on that file, so the backend defers the close while any
        # other descriptor of it (a still-open SQLite connection) remains.
        self.watcher.release_files()


class SqliteEngine:
    """The SQLite engine: one writer behind a lock, a reader pool, one update watcher."""

    kind = "sqlite"
    ops: ModuleType = _ops

    def __init__(
        self,
        path: Any,
        max_readers: int = 8,
        watcher_backend: str | None = None,
        watcher_poll_interval_ms: int | None = None,
    ) -> None:
        given, fs_path, is_uri = normalize_path(path)
        check_str(watcher_backend, "watcher_backend", optional=True)
        if watcher_backend not in BACKENDS:
            raise ValueError(
                f"unknown watcher backend {watcher_backend!r}; "
                "expected None, 'polling', 'poll', 'kernel', 'kernel-watcher', 'shm' "
                "or 'shm-fast-path'"
            )
        if watcher_poll_interval_ms is None:
            interval_ms = 1
        else:
            interval_ms = int(watcher_poll_interval_ms)
            if interval_ms <= 0:
                raise ValueError(
                    f"watcher poll interval must be positive, got {watcher_poll_interval_ms!r}"
                )
        self.path: str = given
        self.backend_requested = watcher_backend
        self._connector = _Connector(given, given, is_uri)
        self._queue_schema_ready = False

        writer_conn = self._connector.connect()
        try:
            _sqlfunctions.register(writer_conn)
            try:
                _schema.ensure(writer_conn)
            except sqlite3.Error as exc:
                raise SQLiteError(f"{exc}: {self.path!r}") from None
            backend = BACKENDS[watcher_backend]
            if backend == "auto" and watcher_poll_interval_ms is not None:
                backend = "polling"  # an explicit cadence asks for the poller
            watcher = create_watcher(
                backend,
                watcher_backend,
                fs_path,
                self._connector.connect_watcher,
                interval_ms / 1000.0,
            )
        except BaseException:
            writer_conn.close()
            raise
        self._writer = _Writer(writer_conn)
        self._readers = _ReaderPool(self._connector.connect, max_readers)
        self._watcher = watcher
        self._io = _IoPool(f"honker-io-{os.path.basename(fs_path)}")
        self._res = _Resources(self._writer, self._readers, watcher, self._io)

    # -- state ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._res.closed

    @property
    def watcher(self) -> UpdateWatcher:
        """The update watcher (its class tells which backend is in use)."""
        return self._watcher

    @property
    def readers(self) -> _ReaderPool:
        """The reader connection pool."""
        return self._readers

    def connect(self) -> sqlite3.Connection:
        """A fresh library connection with the standard PRAGMAs (caller closes it)."""
        return self._connector.connect()

    def _check_open(self) -> None:
        if self._res.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)

    # -- the writer ----------------------------------------------------------------------
    def holds_writer(self) -> bool:
        """Whether the calling thread holds the writer (is inside a transaction)."""
        return self._writer.owner == threading.get_ident()

    def begin(self) -> sqlite3.Connection:
        """Take the writer lock and ``BEGIN IMMEDIATE``; nested use on a thread raises."""
        writer = self._writer
        ident = threading.get_ident()
        if writer.owner == ident:
            raise RuntimeError(NESTED_TX_MESSAGE)
        writer.lock.acquire()
        conn = writer.conn
        if conn is None:
            writer.lock.release()
            raise DatabaseClosed(CLOSED_MESSAGE)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            writer.lock.release()
            raise translate(exc) from None
        writer.owner = ident
        return conn

    def end(self, conn: sqlite3.Connection, commit: bool, quiet: bool = False) -> None:
        """``COMMIT`` (or ``ROLLBACK``) and release the writer lock."""
        writer = self._writer
        try:
            if commit:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise translate(exc) from None
                if not quiet:
                    writer.work_gen += 1
            else:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        finally:
            writer.owner = None
            if writer.close_pending:
                writer.close_now()
            writer.lock.release()

    def write(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """Run ``fn(conn, *args)`` in its own ``BEGIN IMMEDIATE`` transaction and commit."""
        conn = self.begin()
        try:
            result = fn(conn, *args)
        except BaseException as exc:
            self.end(conn, False)
            if isinstance(exc, (sqlite3.Error, sqlite3.Warning)):
                raise translate(exc) from None
            raise
        self.end(conn, True, quiet)
        return result

    def in_tx(self, tx: Transaction | None, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` inside ``tx`` when given, else in its own transaction."""
        if tx is None:
            return self.write(fn, *args)
        conn = tx._active_conn()
        try:
            return fn(conn, *args)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a reader connection (committed data only)."""
        readers = self._readers
        conn = readers.acquire()
        try:
            return fn(conn, *args)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None
        finally:
            readers.release(conn)

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking ``fn(*args)`` on the I/O threads (the event loop stays free)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._io.get(), functools.partial(fn, *args))
        except RuntimeError as exc:
            if self._res.closed and "shutdown" in str(exc):
                raise DatabaseClosed(CLOSED_MESSAGE) from None
            raise

    async def awrite(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """:meth:`write` on the I/O threads."""
        return await self.arun(functools.partial(self.write, fn, *args, quiet=quiet))

    async def aread(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`read` on the I/O threads."""
        return await self.arun(functools.partial(self.read, fn, *args))

    def change_token(self) -> Hashable | None:
        """``(commits by other connections, claimable-work commits by this process)``.

        ``PRAGMA data_version`` on the writer changes exactly when another connection (any
        process) commits; ``work_gen`` counts this process's own commits that were not
        marked quiet. Read without a transaction, so it costs no file lock.
        """
        writer = self._writer
        with writer.lock:
            conn = writer.conn
            if conn is None:
                return None
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                return None
            return (version, writer.work_gen)

    # -- SQL of the application ------------------------------------------------------------
    def run_sql(
        self, conn: sqlite3.Connection, sql: str, params: Iterable[Any] | None
    ) -> list[dict[str, Any]]:
        """Execute ``sql`` on ``conn``; every row as a dict."""
        bound = check_params(params)
        try:
            return rows_as_dicts(conn.execute(sql, bound))
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None

    def query(self, sql: str, params: Iterable[Any] | None) -> list[dict[str, Any]]:
        """Run ``sql`` on a reader connection; every row as a dict."""
        self._check_open()
        bound = check_params(params)
        return self.read(lambda conn: rows_as_dicts(conn.execute(sql, bound)))

    # -- schema --------------------------------------------------------------------------
    def install_schema(self, conn: sqlite3.Connection) -> None:
        """Idempotently install the schema inside the open transaction of ``conn``."""
        try:
            _schema.install(conn)
        except sqlite3.Error as exc:
            raise translate(exc) from None

    def ensure_queue_schema(self) -> None:
        """Install or refresh the ``_honker_jobs`` view before the first queue is used."""
        if self.holds_writer():
            raise RuntimeError(
                "cannot construct Queue inside an open db.transaction() on the same thread: "
                "create it (db.queue(name)) before the transaction"
            )
        if self._queue_schema_ready:
            return
        if not self.read(_schema.jobs_view_current):
            self.write(_schema.install_jobs_view)
        self._queue_schema_ready = True

    # -- subscriptions and life cycle ------------------------------------------------------
    def subscribe(self) -> Subscription:
        """Subscribe to commits of any connection to this file."""
        self._check_open()
        return self._watcher.subscribe()

    def close(self) -> None:
        """Stop the watcher and the I/O threads and close every connection. Idempotent."""
        self._res.close()

    def finalizer_target(self) -> Callable[[], None]:
        """The close action, holding no reference to the engine (for ``weakref.finalize``)."""
        return self._res.close
