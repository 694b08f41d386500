"""``open()``, ``Database`` and ``Transaction``.

One writer connection behind a lock (every write runs in ``BEGIN IMMEDIATE`` … ``COMMIT``),
a small pool of reader connections for ``Database.query()`` (committed data only), and at
most one update watcher per ``Database``, started on the first subscription.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _ops, _schema, _sqlfunctions
from ._errors import (
    CLOSED_MESSAGE,
    NESTED_TX_MESSAGE,
    DatabaseClosed,
    SQLiteError,
    translate,
)
from ._json import dumps
from ._validate import check_int64_params
from ._watcher import Subscription, UpdateEvents, UpdateWatcher, create_watcher

if TYPE_CHECKING:
    from .locks import _Lock
    from .notify import Listener
    from .outbox import Outbox
    from .queue import Queue
    from .stream import Stream

T = TypeVar("T")
_UNSET: Any = object()

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

_BACKENDS = {
    None: "polling",
    "polling": "polling",
    "poll": "polling",
    "kernel": "kernel",
    "kernel-watcher": "kernel",
    "shm": "shm",
    "shm-fast-path": "shm",
}

_SQL_TYPES = (str, int, float, bytes, bytearray, memoryview)


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


def _normalize_path(path: Any) -> tuple[str, str, bool]:
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
    """Opens connections to one database file; holds no reference to the Database."""

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

    __slots__ = ("close_pending", "conn", "lock", "owner")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.lock = threading.Lock()
        self.owner: int | None = None
        self.close_pending = False

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


class _Resources:
    """Everything a Database must release; kept apart so GC can release it without the owner."""

    def __init__(self, writer: _Writer, readers: _ReaderPool, watcher: UpdateWatcher) -> None:
        self.writer = writer
        self.readers = readers
        self.watcher = watcher
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
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


class Database:
    """A honker database: one SQLite file holding your data, queues, streams and schedules.

    Obtain one with :func:`honker.open`. Thread-safe: every write goes through one writer
    connection behind a lock; reads use a pool of reader connections.
    """

    def __init__(
        self,
        path: Any,
        max_readers: int = 8,
        watcher_backend: str | None = None,
        watcher_poll_interval_ms: int | None = None,
    ) -> None:
        given, fs_path, is_uri = _normalize_path(path)
        if watcher_backend is not None and not isinstance(watcher_backend, str):
            raise TypeError("watcher_backend must be a str or None")
        if watcher_backend not in _BACKENDS:
            raise ValueError(
                f"unknown watcher backend {watcher_backend!r}; "
                "expected None, 'polling', 'poll', 'kernel', 'kernel-watcher', 'shm' "
                "or 'shm-fast-path'"
            )
        backend = _BACKENDS[watcher_backend]
        if watcher_poll_interval_ms is None:
            interval_ms = 1
        else:
            interval_ms = int(watcher_poll_interval_ms)
            if interval_ms <= 0:
                raise ValueError(
                    f"watcher poll interval must be positive, got {watcher_poll_interval_ms!r}"
                )
        self.path: str = given
        self._connector = _Connector(given, given, is_uri)
        self._backend = backend
        self._queues: dict[str, Queue] = {}
        self._streams: dict[str, Stream] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._jobs_view_ready = False
        self._registry_lock = threading.Lock()

        writer_conn = self._connect()
        try:
            _sqlfunctions.register(writer_conn)
            self._ensure_schema(writer_conn)
        except BaseException:
            writer_conn.close()
            raise
        try:
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
        readers = _ReaderPool(self._connector.connect, max_readers)
        self._res = _Resources(self._writer, readers, watcher)
        self._readers = readers
        self._watcher = watcher
        self._finalizer = weakref.finalize(self, self._res.close)

    # -- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """Open a library connection with the standard PRAGMAs (SQLite errors → RuntimeError)."""
        return self._connector.connect()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        try:
            if _schema.is_complete(conn):
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                _schema.create_notifications(conn)
                _schema.bootstrap(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SQLiteError(f"{exc}: {self.path!r}") from None

    # -- the writer ----------------------------------------------------------------------
    @property
    def _tx_depth(self) -> int:
        """1 while the calling thread holds the writer (inside a transaction), else 0."""
        return 1 if self._writer.owner == threading.get_ident() else 0

    def _acquire_writer(self) -> sqlite3.Connection:
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

    def _release_writer(self, conn: sqlite3.Connection, commit: bool) -> None:
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

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in its own ``BEGIN IMMEDIATE`` transaction and commit."""
        conn = self._acquire_writer()
        try:
            result = fn(conn, *args)
        except BaseException as exc:
            self._release_writer(conn, False)
            if isinstance(exc, (sqlite3.Error, sqlite3.Warning)):
                raise translate(exc) from None
            raise
        self._release_writer(conn, True)
        return result

    def _in_tx(self, tx: Transaction | None, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` inside ``tx`` when given, else in its own transaction."""
        if tx is None:
            return self._write(fn, *args)
        conn = tx._active_conn()
        try:
            return fn(conn, *args)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a reader connection (committed data only)."""
        readers = self._readers
        conn = readers.acquire()
        try:
            return fn(conn, *args)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None
        finally:
            readers.release(conn)

    # -- public API ----------------------------------------------------------------------
    def transaction(self) -> Transaction:
        """Return a context manager for one write transaction.

        ``with db.transaction() as tx:`` takes the writer (other threads wait), runs
        ``BEGIN IMMEDIATE``, commits on normal exit and rolls back if the block raises.
        Opening a second transaction on the same thread raises ``RuntimeError`` at once.
        """
        if self._res.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        return Transaction(self)

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` on a reader connection and return every row as a dict."""
        if self._res.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        bound = check_params(params)
        return self._read(lambda conn: rows_as_dicts(conn.execute(sql, bound)))

    def update_events(self) -> UpdateEvents:
        """Subscribe to database updates (any commit, any process); see ``UpdateEvents``."""
        return UpdateEvents(self._subscribe(), self.path)

    def _subscribe(self) -> Subscription:
        if self._res.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        return self._watcher.subscribe()

    def listen(self, channel: str, fallback_poll_s: float | None = 15.0) -> Listener:
        """Listen for notifications on ``channel`` committed after this call (async iterator)."""
        from .notify import Listener

        return Listener(self, channel, fallback_poll_s)

    def prune_notifications(
        self, older_than_s: float | None = None, max_keep: int | None = None
    ) -> int:
        """Delete old notifications (all channels); returns how many were deleted.

        ``older_than_s`` removes rows created more than that many seconds ago; ``max_keep``
        keeps only the newest ``max_keep`` rows. A row matching either condition goes.
        """
        if max_keep is not None:
            max_keep = int(max_keep)
            if max_keep < 0:
                raise ValueError("max_keep must not be negative")
            if max_keep > 2**63 - 1:
                max_keep = None
        older = None if older_than_s is None else int(older_than_s)
        if older is None and max_keep is None:
            return 0
        return self._write(_ops.prune_notifications, older, max_keep)

    # -- queues, locks, rate limits --------------------------------------------------------
    def queue(
        self,
        name: str,
        visibility_timeout_s: Any = _UNSET,
        max_attempts: Any = _UNSET,
    ) -> Queue:
        """The (memoized) work queue called ``name``.

        Without options this returns the existing handle, or creates one with the defaults
        (visibility 300 s, 3 attempts). Options given for an existing name must match it,
        else ``ValueError``.
        """
        from .queue import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT_S, Queue

        if not isinstance(name, str):
            raise TypeError(f"queue name must be a str, not {type(name).__name__}")
        lookup = visibility_timeout_s is _UNSET and max_attempts is _UNSET
        vt = (
            DEFAULT_VISIBILITY_TIMEOUT_S
            if visibility_timeout_s is _UNSET
            else int(visibility_timeout_s)
        )
        ma = DEFAULT_MAX_ATTEMPTS if max_attempts is _UNSET else int(max_attempts)
        with self._registry_lock:
            existing = self._queues.get(name)
            if existing is not None:
                if lookup or (existing.visibility_timeout_s, existing.max_attempts) == (vt, ma):
                    return existing
                raise ValueError(
                    f"queue {name!r} already opened with visibility_timeout_s="
                    f"{existing.visibility_timeout_s}, max_attempts={existing.max_attempts}; "
                    f"requested visibility_timeout_s={vt}, max_attempts={ma}"
                )
            created = Queue(self, name, vt, ma)
            self._queues[name] = created
            return created

    def _init_queue_schema(self) -> None:
        """Schema step of a first Queue construction: own transaction, view, legacy cleanup."""
        if self._tx_depth:
            raise RuntimeError(
                "cannot construct Queue inside an open db.transaction() on the same thread: "
                "create it (db.queue(name)) before the transaction"
            )
        if self._jobs_view_ready:
            return
        if not self._read(_schema.jobs_view_current):
            self._write(_schema.install_jobs_view)
        self._jobs_view_ready = True

    def stream(self, name: str) -> Stream:
        """The (memoized) durable stream called ``name``; no I/O, safe inside a transaction."""
        from .stream import Stream

        with self._registry_lock:
            existing = self._streams.get(name)
            if existing is None:
                existing = self._streams[name] = Stream(self, name)
            return existing

    def outbox(
        self,
        name: str,
        delivery: Callable[[Any], Any],
        max_attempts: int = 5,
        base_backoff_s: int = 5,
        visibility_timeout_s: int = 60,
    ) -> Outbox:
        """The (memoized) transactional outbox ``name`` delivering with ``delivery``."""
        from .outbox import Outbox

        if not callable(delivery):
            raise TypeError(f"delivery must be callable, got {type(delivery).__name__}")
        options = (int(max_attempts), int(base_backoff_s), int(visibility_timeout_s))
        with self._registry_lock:
            existing = self._outboxes.get(name)
            if existing is not None:
                have = (
                    existing.max_attempts,
                    existing.base_backoff_s,
                    existing.visibility_timeout_s,
                )
                if have != options or existing.delivery is not delivery:
                    raise ValueError(
                        f"outbox {name!r} already opened with a different delivery "
                        f"function or options (max_attempts, base_backoff_s, "
                        f"visibility_timeout_s) = {have}; requested {options}"
                    )
                return existing
        created = Outbox(self, name, delivery, *options)
        with self._registry_lock:
            self._outboxes.setdefault(name, created)
            return self._outboxes[name]

    # -- tasks ---------------------------------------------------------------------------
    def task(self, queue: str = "default", **options: Any) -> Any:
        """``db.queue(queue).task(**options)``: note the first argument is the queue name."""
        return self.queue(queue).task(**options)

    def periodic_task(self, schedule: Any, queue: str = "default", **options: Any) -> Any:
        """``db.queue(queue).periodic_task(schedule, **options)``."""
        return self.queue(queue).periodic_task(schedule, **options)

    async def run_workers(
        self,
        queue: str | None = None,
        concurrency: int | None = None,
        stop_event: Any = None,
        *,
        grace_period_s: float = 30.0,
    ) -> None:
        """Run registered tasks until ``stop_event`` is set (``honker.run_workers``)."""
        from .tasks import run_workers

        await run_workers(
            self,
            queue=queue,
            concurrency=concurrency,
            stop_event=stop_event,
            grace_period_s=grace_period_s,
        )

    # -- inspection ----------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        """Names of every queue with live or dead jobs (or recent activity)."""
        return self._read(_ops.queue_names)

    def streams_info(self) -> list[dict[str, Any]]:
        """Each stream topic with its size, and each consumer's offset and lag."""
        return self._read(_ops.streams_info)

    def locks_info(self) -> list[dict[str, Any]]:
        """Named locks currently held: name, owner, expiry and seconds left."""
        return self._read(_ops.locks_info)

    def notifications_count(self) -> int:
        """Rows in the notifications table (prune with :meth:`prune_notifications`)."""
        return self._read(_ops.notifications_count)

    def lock(self, name: str, ttl: int = 60, owner: str | None = None) -> _Lock:
        """A named advisory lock (context manager); raises ``LockHeld`` if taken."""
        from .locks import _Lock

        return _Lock(self, name, ttl, owner)

    def try_rate_limit(self, name: str, limit: int, per: int) -> bool:
        """Fixed-window limiter: ``True`` (and counted) while under ``limit`` per window."""
        from .locks import try_rate_limit

        return try_rate_limit(self, name, limit, per)

    def sweep_rate_limits(self, older_than_s: int = 3600) -> int:
        """Delete rate-limit windows older than ``older_than_s`` seconds; returns the count."""
        from .locks import sweep_rate_limits

        return sweep_rate_limits(self, older_than_s)

    def close(self) -> None:
        """Stop the watcher and close every connection. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._res.closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._res.closed else "open"
        return f"<honker.Database {self.path!r} {state}>"


class Transaction:
    """One write transaction on the writer connection, yielded by ``db.transaction()``.

    Valid only inside its ``with`` block.
    """

    __slots__ = ("_conn", "_db", "_state")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None
        self._state = 0

    def __enter__(self) -> Transaction:
        if self._state != 0:
            raise RuntimeError("a Transaction can only be entered once")
        self._conn = self._db._acquire_writer()
        self._state = 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self._conn
        if self._state != 1 or conn is None:
            return
        self._state = 2
        self._conn = None
        self._db._release_writer(conn, exc_type is None)

    def _active_conn(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise RuntimeError("Transaction not started")
        return conn

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        """Execute one statement inside this transaction."""
        conn = self._active_conn()
        bound = check_params(params)
        try:
            conn.execute(sql, bound).fetchall()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """Execute one statement and return its rows as dicts (sees this transaction's writes)."""
        conn = self._active_conn()
        bound = check_params(params)
        try:
            return rows_as_dicts(conn.execute(sql, bound))
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise translate(exc) from None

    def notify(self, channel: str, payload: Any) -> int:
        """Queue a notification on ``channel``; listeners see it only if this commits."""
        conn = self._active_conn()
        if not isinstance(channel, str):
            raise TypeError(f"channel must be a str, not {type(channel).__name__}")
        text = dumps(payload)
        try:
            return _ops.notify(conn, channel, text)
        except sqlite3.Error as exc:
            raise translate(exc) from None

    def bootstrap_honker_schema(self) -> None:
        """Idempotently install the honker schema and migrations inside this transaction."""
        conn = self._active_conn()
        try:
            _schema.create_notifications(conn)
            _schema.bootstrap(conn)
        except sqlite3.Error as exc:
            raise translate(exc) from None


def open(
    path: Any,
    max_readers: int = 8,
    watcher_backend: str | None = None,
    watcher_poll_interval_ms: int | None = None,
) -> Database:
    """Open (or create) a honker database at ``path``.

    Applies the standard PRAGMAs (WAL, ``synchronous=NORMAL``, 5 s busy timeout...),
    registers ``notify()`` and the ``honker_*`` SQL functions on the writer connection and
    installs the schema. The update watcher starts lazily on the first subscription.
    """
    return Database(path, max_readers, watcher_backend, watcher_poll_interval_ms)
