"""``open()``, ``Database`` (the public facade) and ``Transaction``.

A ``Database`` owns one :class:`~honker._engine.Engine` (today always a
:class:`~honker._engine.SqliteEngine`: one writer connection behind a lock, a reader pool
and an update watcher) and hands it to every queue, stream, listener, lock and scheduler it
creates. Feature modules talk to that engine, never to a driver.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._engine import Engine, SqliteEngine, check_params, rows_as_dicts
from ._errors import CLOSED_MESSAGE, DatabaseClosed
from ._json import dumps
from ._validate import check_str
from ._watcher import UpdateEvents

if TYPE_CHECKING:
    from typing import Unpack

    from .locks import _Lock
    from .notify import Listener
    from .outbox import Outbox
    from .queue import Queue
    from .scheduler import CronSchedule
    from .stream import Stream
    from .tasks import PeriodicTaskOptions, TaskDecorator, TaskOptions

__all__ = ["Database", "Transaction", "check_params", "open", "rows_as_dicts"]

_UNSET: Any = object()


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
        retention: Any = None,
        *,
        engine: Any = None,
    ) -> None:
        from .retention import Retention

        self.retention: Retention = Retention.of(retention)  # checked before any I/O
        if engine is None:
            engine = SqliteEngine(path, max_readers, watcher_backend, watcher_poll_interval_ms)
        self._engine: Engine = engine
        self.path: str = engine.path
        self._queues: dict[str, Queue] = {}
        self._streams: dict[str, Stream] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._registry_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, engine.finalizer_target())

    @property
    def engine(self) -> Engine:
        """The storage engine behind this database (for honker's own modules and tools)."""
        return self._engine

    # -- public API ----------------------------------------------------------------------
    def transaction(self) -> Transaction:
        """Return a context manager for one write transaction.

        ``with db.transaction() as tx:`` takes the writer (other threads wait), runs
        ``BEGIN IMMEDIATE``, commits on normal exit and rolls back if the block raises.
        Opening a second transaction on the same thread raises ``RuntimeError`` at once.
        """
        if self._engine.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        return Transaction(self._engine)

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` on a reader connection and return every row as a dict."""
        return self._engine.query(sql, params)

    def update_events(self) -> UpdateEvents:
        """Subscribe to database updates (any commit, any process); see ``UpdateEvents``."""
        return UpdateEvents(self._engine.subscribe(), self.path)

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
        engine = self._engine
        return int(engine.write(engine.ops.prune_notifications, older, max_keep))

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

        check_str(name, "queue name")
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
    def task(
        self,
        queue: str = "default",
        *,
        name: str | None = None,
        **options: Unpack[TaskOptions],
    ) -> TaskDecorator:
        """``db.queue(queue).task(name=name, **options)``: note the first argument is the
        queue name."""
        return self.queue(queue).task(name, **options)

    def periodic_task(
        self,
        schedule: CronSchedule | str,
        queue: str = "default",
        **options: Unpack[PeriodicTaskOptions],
    ) -> TaskDecorator:
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
        """Names of every queue with live or dead jobs (or recent activity, or paused)."""
        return self._engine.read(self._engine.ops.queue_names)

    def paused_queues(self) -> list[str]:
        """Names of the paused queues (see :meth:`Queue.pause`), sorted."""
        return self._engine.read(self._engine.ops.paused_queues)

    def streams_info(self) -> list[dict[str, Any]]:
        """Each stream topic with its size, and each consumer's offset and lag."""
        return self._engine.read(self._engine.ops.streams_info)

    def locks_info(self) -> list[dict[str, Any]]:
        """Named locks currently held: name, owner, expiry and seconds left."""
        return self._engine.read(self._engine.ops.locks_info)

    def notifications_count(self) -> int:
        """Rows in the notifications table (prune with :meth:`prune_notifications`)."""
        return int(self._engine.read(self._engine.ops.notifications_count))

    def lock(self, name: str, ttl: int = 60, owner: str | None = None) -> _Lock:
        """A named advisory lock (context manager); raises ``LockHeld`` if taken."""
        from .locks import _Lock

        return _Lock(self._engine, name, ttl, owner)

    def try_rate_limit(self, name: str, limit: int, per: int) -> bool:
        """Fixed-window limiter: ``True`` (and counted) while under ``limit`` per window."""
        from .locks import try_rate_limit

        return try_rate_limit(self._engine, name, limit, per)

    def sweep_rate_limits(self, older_than_s: int = 3600) -> int:
        """Delete rate-limit windows older than ``older_than_s`` seconds; returns the count."""
        from .locks import sweep_rate_limits

        return sweep_rate_limits(self._engine, older_than_s)

    def close(self) -> None:
        """Stop the watcher and close every connection. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine.closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine.closed else "open"
        return f"<honker.Database {self.path!r} {state}>"


class Transaction:
    """One write transaction on the writer connection, yielded by ``db.transaction()``.

    Valid only inside its ``with`` block.
    """

    __slots__ = ("_conn", "_engine", "_state")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._state = 0

    def __enter__(self) -> Transaction:
        if self._state != 0:
            raise RuntimeError("a Transaction can only be entered once")
        self._conn = self._engine.begin()
        self._state = 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self._conn
        if self._state != 1 or conn is None:
            return
        self._state = 2
        self._conn = None
        self._engine.end(conn, exc_type is None)

    def _active_conn(self) -> Any:
        conn = self._conn
        if conn is None:
            raise RuntimeError("Transaction not started")
        return conn

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        """Execute one statement inside this transaction."""
        self._engine.run_sql(self._active_conn(), sql, params)

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """Execute one statement and return its rows as dicts (sees this transaction's writes)."""
        return self._engine.run_sql(self._active_conn(), sql, params)

    def notify(self, channel: str, payload: Any) -> int:
        """Queue a notification on ``channel``; listeners see it only if this commits."""
        check_str(channel, "channel")
        text = dumps(payload)
        engine = self._engine
        return int(engine.in_tx(self, engine.ops.notify, channel, text))

    def bootstrap_honker_schema(self) -> None:
        """Idempotently install the honker schema and migrations inside this transaction."""
        self._engine.install_schema(self._active_conn())


def open(
    path: Any,
    max_readers: int = 8,
    watcher_backend: str | None = None,
    watcher_poll_interval_ms: int | None = None,
    retention: Any = None,
    *,
    schema: str | None = None,
) -> Database:
    """Open (or create) a honker database at ``path``.

    Applies the standard PRAGMAs (WAL, ``synchronous=NORMAL``, 5 s busy timeout...),
    registers ``notify()`` and the ``honker_*`` SQL functions on the writer connection and
    installs the schema. The update watcher starts lazily on the first subscription.

    ``retention`` (a dict or :class:`honker.Retention`, e.g. ``{"dead": "30d", "results":
    "1h"}``) says how long dead jobs, results, notifications, stream events and job
    history are kept; the scheduler leader (or one worker) applies it. Default: only
    expired results (and this library's history of gone jobs, after an hour) are pruned.

    A ``postgresql://`` (or ``postgres://``) URL opens the same API on a PostgreSQL server
    instead (the ``honker[postgres]`` extra; ``schema=`` picks the schema, ``max_readers``
    bounds the connection pool): see docs/postgres.md.
    """
    from . import postgres

    if postgres.is_url(path):  # honker[postgres]: see docs/postgres.md
        from .retention import Retention

        checked = Retention.of(retention)  # before any I/O
        engine = postgres.engine(path, schema, max_readers, watcher_backend)
        return Database(path, retention=checked, engine=engine)
    if schema is not None:
        raise ValueError("schema= applies only to PostgreSQL URLs (postgresql://...)")
    return Database(path, max_readers, watcher_backend, watcher_poll_interval_ms, retention)
