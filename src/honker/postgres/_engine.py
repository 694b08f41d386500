"""PostgresEngine: honker's engine protocol on a PostgreSQL server (psycopg 3).

* Connections come from one bounded ``psycopg_pool.ConnectionPool`` per Database, in
  autocommit mode; every write is an explicit ``BEGIN`` … ``COMMIT`` on one of them.
* A write that is not ``quiet`` also runs ``SELECT pg_notify(<channel>, '')`` inside its
  transaction, which wakes every subscriber in every process at commit (``_notifier``).
* ``db.transaction()`` holds one pooled connection for the block; one per thread at a time
  (a nested one raises, as on SQLite).
* A connection that breaks before ``COMMIT`` was sent (server restart, failover, network)
  makes the operation retry on a fresh connection for up to ``retry_s`` seconds: nothing
  of it was committed, so running it again is safe. A break *during* ``COMMIT`` leaves the
  outcome unknown and is raised.
* psycopg errors become :class:`PostgresError` (a ``RuntimeError``, like SQLite errors),
  a closed pool becomes :class:`honker._errors.DatabaseClosed`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from .._engine import _IoPool
from .._errors import CLOSED_MESSAGE, NESTED_TX_MESSAGE, DatabaseClosed
from .._watcher import Subscription
from . import _ops, _schema
from ._notifier import Notifier, channel_for
from ._schema import check_schema_name, quote_ident

T = TypeVar("T")
log = logging.getLogger("honker.postgres")

RETRY_S = 30.0
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
}
ABORTED_MESSAGE = (
    "the transaction was rolled back: a statement in it failed, and PostgreSQL aborts the "
    "whole transaction on any error (unlike SQLite, a caught error cannot be committed past)"
)
PLACEHOLDER_HINT = " (PostgreSQL placeholders are %s, not ?; write a literal % as %%)"


class PostgresError(RuntimeError):
    """A PostgreSQL failure (cannot connect, SQL error, constraint violation...).

    A ``RuntimeError`` subclass, like the SQLite engine's errors; the message carries the
    server's own text. ``sqlstate`` is the five-character SQLSTATE code when there is one.
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def translate(exc: BaseException) -> RuntimeError:
    """Turn a psycopg (or pool) error into the ``RuntimeError`` the public API promises."""
    if isinstance(exc, RuntimeError):
        return exc
    if isinstance(exc, psycopg_pool.PoolClosed):
        return DatabaseClosed(CLOSED_MESSAGE)
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.ProgrammingError) and "placeholder" in message:
        message += PLACEHOLDER_HINT
    sqlstate = getattr(exc, "sqlstate", None)
    return PostgresError(message, sqlstate)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for repr and messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _transient(exc: BaseException, conn: Any) -> bool:
    """A broken connection (or a pool that could not connect): the server may be back soon."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return True
    return isinstance(exc, psycopg.OperationalError) and (conn is None or conn.broken)


class PostgresEngine:
    """The engine of a Database opened on a ``postgresql://`` URL."""

    kind = "postgres"
    ops: ModuleType = _ops

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        pool_size: int = 8,
        retry_s: float = RETRY_S,
        safety_wake_s: float | None = None,
    ) -> None:
        if schema is not None:
            schema = check_schema_name(schema)
        self.url = url
        self.path = redact(url)
        self.retry_s = float(retry_s)
        self._schema = schema
        self._local = threading.local()
        self.closed = False
        # Connect once up front: a wrong URL or a down server fails here, at once.
        try:
            first = self._connect()
        except psycopg.Error as exc:
            raise PostgresError(f"cannot connect to {self.path}: {exc}") from None
        try:
            try:
                _schema.ensure(first, schema)
                self.schema = str(first.execute("SELECT current_schema()").fetchone()[0])
            except psycopg.Error as exc:
                raise translate(exc) from None
        finally:
            first.close()
        self.channel = channel_for(self.schema)
        # NOTIFY and COMMIT in one round trip (a parameterless multi-statement string).
        literal = "'" + self.channel.replace("'", "''") + "'"
        self._notify_commit_sql = f"SELECT pg_notify({literal}, ''); COMMIT"
        size = max(1, int(pool_size))
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            kwargs={"autocommit": True, **KEEPALIVES},
            configure=self._configure,
            min_size=1,
            max_size=size,
            open=True,
            name=f"honker:{self.schema}",
            timeout=self.retry_s,
        )
        self._io = _IoPool(f"honker-io-{self.schema}")
        self._notifier = Notifier(
            self.path,
            self._connect,
            self.channel,
            **({} if safety_wake_s is None else {"safety_s": safety_wake_s}),
        )

    # -- connections ---------------------------------------------------------------------
    def _configure(self, conn: Any) -> None:
        if self._schema is not None:
            conn.execute(f"SET search_path TO {quote_ident(self._schema)}")

    def _connect(self) -> Any:
        conn = psycopg.connect(self.url, autocommit=True, **KEEPALIVES)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _getconn(self) -> Any:
        if self.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        return self._pool.getconn()

    def _putconn(self, conn: Any) -> None:
        try:
            self._pool.putconn(conn)
        except psycopg_pool.PoolClosed:
            conn.close()

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` again while it fails on a broken connection, up to ``retry_s``."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.05
        while True:
            try:
                return attempt()
            except _Retry as retry:
                if self.closed or time.monotonic() + delay > deadline:
                    raise translate(retry.error) from None
                log.warning("connection lost, retrying in %.2fs: %s", delay, retry.error)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _rollback(conn: Any) -> None:
        if conn.broken or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def _commit(self, conn: Any, quiet: bool) -> None:
        """NOTIFY (unless quiet) and COMMIT; a failure here is raised, never retried."""
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            self._rollback(conn)
            raise PostgresError(ABORTED_MESSAGE, "25P02")
        try:
            conn.execute("COMMIT" if quiet else self._notify_commit_sql)
        except psycopg.Error as exc:
            self._rollback(conn)
            raise translate(exc) from None

    def _attempt(self, body: Callable[[Any], T], release: bool = True) -> T:
        """``body(conn)`` on a pooled connection, retried while the connection was broken.

        A failure rolls back whatever ``body`` began; ``release=False`` keeps the
        connection checked out after success (``begin``).
        """

        def once() -> T:
            conn = None
            ok = False
            try:
                conn = self._getconn()
                result = body(conn)
                ok = True
                return result
            except Exception as exc:
                if conn is not None:
                    self._rollback(conn)
                if _transient(exc, conn):
                    raise _Retry(exc) from None
                if isinstance(exc, (psycopg.Error, psycopg_pool.PoolTimeout)):
                    raise translate(exc) from None
                raise
            except BaseException:
                if conn is not None:
                    self._rollback(conn)
                raise
            finally:
                if conn is not None and (release or not ok):
                    self._putconn(conn)

        return self._retrying(once)

    # -- the engine protocol -------------------------------------------------------------
    def holds_writer(self) -> bool:
        """Whether the calling thread is inside a ``db.transaction()`` of this engine."""
        return getattr(self._local, "conn", None) is not None

    def write(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """Run ``fn(conn, *args)`` in its own transaction and commit (NOTIFY unless quiet)."""
        if self.holds_writer():
            raise RuntimeError(NESTED_TX_MESSAGE)

        def body(conn: Any) -> T:
            conn.execute("BEGIN")
            result = fn(conn, *args)
            self._commit(conn, quiet)
            return result

        return self._attempt(body)

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a pooled connection (committed data only)."""
        return self._attempt(lambda conn: fn(conn, *args))

    def in_tx(self, tx: Any, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` inside ``tx`` (a Transaction) when given, else in its own write."""
        if tx is None:
            return self.write(fn, *args)
        conn = tx._active_conn()
        try:
            return fn(conn, *args)
        except psycopg.Error as exc:
            raise translate(exc) from None

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """Run any blocking ``fn(*args)`` that uses this engine on its I/O threads."""
        if self.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._io.get(), functools.partial(fn, *args))
        except RuntimeError as exc:
            if self.closed and "shutdown" in str(exc):
                raise DatabaseClosed(CLOSED_MESSAGE) from None
            raise

    async def awrite(self, fn: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """:meth:`write` on the engine's I/O threads (the event loop stays free)."""
        return await self.arun(functools.partial(self.write, fn, *args, quiet=quiet))

    async def aread(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`read` on the engine's I/O threads."""
        return await self.arun(functools.partial(self.read, fn, *args))

    def subscribe(self) -> Subscription:
        """A wake subscription (any commit of a non-quiet write, any process or host)."""
        if self.closed:
            raise DatabaseClosed(CLOSED_MESSAGE)
        return self._notifier.subscribe()

    def begin(self) -> Any:
        """Start ``db.transaction()``: a pooled connection with ``BEGIN`` sent."""
        if self.holds_writer():
            raise RuntimeError(NESTED_TX_MESSAGE)

        def body(conn: Any) -> Any:
            conn.execute("BEGIN")
            return conn

        conn = self._attempt(body, release=False)
        self._local.conn = conn
        return conn

    def end(self, conn: Any, commit: bool, quiet: bool = False) -> None:
        """Finish ``db.transaction()``: NOTIFY and COMMIT, or ROLLBACK; release the connection."""
        try:
            if commit:
                self._commit(conn, quiet)
            else:
                self._rollback(conn)
        finally:
            self._local.conn = None
            self._putconn(conn)

    def run_sql(self, conn: Any, sql: str, params: Iterable[Any] | None) -> list[dict[str, Any]]:
        """Run one user statement (``%s`` placeholders); rows as dicts (empty if none)."""
        bound = None if params is None else tuple(params)
        try:
            cur = conn.execute(sql, bound or None)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except psycopg.Error as exc:
            raise translate(exc) from None

    def query(self, sql: str, params: Iterable[Any] | None) -> list[dict[str, Any]]:
        """``run_sql`` on a pooled connection outside any transaction (``db.query``)."""
        return self.read(self.run_sql, sql, params)

    def install_schema(self, conn: Any) -> None:
        """Idempotently install the schema inside the transaction of ``conn``."""
        try:
            _schema.install(conn)
        except psycopg.Error as exc:
            raise translate(exc) from None

    def ensure_queue_schema(self) -> None:
        """No schema work (``open()`` made the view); refuses inside a transaction, as SQLite
        must, so code that runs here also runs on SQLite."""
        if self.holds_writer():
            raise RuntimeError(
                "cannot construct Queue inside an open db.transaction() on the same thread "
                "(as on SQLite): create it (db.queue(name)) before the transaction"
            )

    def change_token(self) -> None:
        """Always "unknown": a server has no cheap commit counter, so callers re-read."""
        return None

    @property
    def watcher(self) -> Notifier:
        """The LISTEN notifier (an UpdateWatcher: ``subscriber_count``, ``running``...)."""
        return self._notifier

    def finalizer_target(self) -> Callable[[], None]:
        """What a Database's finalizer calls: :meth:`close` (holds no Database reference)."""
        return self.close

    def close(self) -> None:
        """Stop the notifier and close every pooled connection. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._io.close()
        self._notifier.close()
        self._notifier.release_files()
        self._pool.close(timeout=5.0)

    def __repr__(self) -> str:
        return f"<PostgresEngine {self.path!r} schema={self.schema!r}>"


class _Retry(Exception):
    """Internal: an attempt failed on a broken connection before anything was committed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
