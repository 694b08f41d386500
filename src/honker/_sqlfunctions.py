"""``notify()`` and the ``honker_*`` SQL functions, registered on a ``sqlite3.Connection``.

Same names, arities, argument meanings, return values and JSON shapes as the reference's
loadable extension (``SQL_FUNCTIONS.md``). Each function is a thin adapter over ``_ops``, the
same code the Python API runs, so ``SELECT honker_enqueue(...)`` inside an application's own
transaction and ``queue.enqueue(...)`` have identical effects on disk.

Two ways in:

* :func:`register` — used by ``honker.open()`` on its writer connection (autocommit mode;
  every write is wrapped in ``BEGIN IMMEDIATE`` by the library).
* :func:`attach` (public as ``honker.attach``) — for a connection the application owns
  (plain ``sqlite3``, SQLAlchemy, Django...): registers the functions and, unless told not
  to, installs the schema without disturbing the caller's transaction.

Arguments are checked as strictly as the reference does: TEXT arguments must be SQL TEXT,
INTEGER arguments SQL INTEGER (a REAL is rejected, even a whole one), and NULL only where
the contract allows it. A violation fails the calling statement. Python's ``sqlite3``
reports every exception raised by a Python-defined SQL function with the fixed text
"user-defined function raised exception"; the reason is kept per thread
(:func:`last_error`) and honker's own ``Transaction.query/execute`` put it back into the
``RuntimeError`` they raise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from . import _errors, _ops, _schema

# Argument kinds: "t" text, "i" integer, "t?" text or NULL, "i?" integer or NULL.
_KINDS: dict[str, tuple[type, ...]] = {
    "t": (str,),
    "i": (int,),
    "t?": (str, type(None)),
    "i?": (int, type(None)),
}
_KIND_NAMES = {"t": "TEXT", "i": "INTEGER", "t?": "TEXT or NULL", "i?": "INTEGER or NULL"}
_STORAGE_CLASS = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB", type(None): "NULL"}


def _compact(value: Any) -> str:
    """JSON text as the reference writes it: compact, keys in alphabetical order."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def last_error() -> str | None:
    """Why the most recent honker SQL function call on this thread failed (or None).

    ``sqlite3`` reports such a failure only as "user-defined function raised exception";
    this is the missing reason, e.g. ``"honker_enqueue(): argument 2 (payload) must be
    TEXT, got INTEGER"``.
    """
    return _errors.function_error_detail()


def _parse_signature(signature: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"queue:t run_at:i?"`` → (("queue", "run_at"), ("t", "i?"))."""
    if not signature:
        return (), ()
    names, kinds = zip(*(item.split(":") for item in signature.split()), strict=True)
    return tuple(names), tuple(kinds)


def _checked(
    name: str, signature: str, fn: Callable[..., Any], conn: sqlite3.Connection
) -> Callable[..., Any]:
    """Wrap ``fn`` with the storage-class checks of ``signature`` and error recording.

    While ``fn`` runs, ``conn`` has the default ``row_factory``/``text_factory`` (an
    application's connection may have its own): ``_ops`` reads rows by position and text as
    ``str``. A cursor keeps the row factory it was created with and text is converted when
    a row is fetched, so the application's own statement is unaffected.
    """
    arg_names, kinds = _parse_signature(signature)
    allowed = tuple(_KINDS[k] for k in kinds)

    def reject(args: tuple[Any, ...]) -> None:
        """Raise for the first argument of the wrong storage class."""
        for position, (value, ok) in enumerate(zip(args, allowed, strict=True), start=1):
            if type(value) in ok:
                continue
            got = _STORAGE_CLASS.get(type(value), type(value).__name__)
            expected = _KIND_NAMES[kinds[position - 1]]
            problem = "must not be NULL" if value is None else f"must be {expected}, got {got}"
            raise TypeError(f"argument {position} ({arg_names[position - 1]}) {problem}")

    def wrapper(*args: Any) -> Any:
        try:
            for value, ok in zip(args, allowed, strict=True):
                if type(value) not in ok:
                    reject(args)
            if conn.row_factory is None and conn.text_factory is str:
                return fn(*args)
            row_factory, text_factory = conn.row_factory, conn.text_factory
            conn.row_factory, conn.text_factory = None, str
            try:
                return fn(*args)
            finally:
                conn.row_factory, conn.text_factory = row_factory, text_factory
        except Exception as exc:
            _errors.record_function_error(f"{name}(): {exc}")
            raise

    wrapper.__name__ = name
    return wrapper


def _claim_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": row[0],
        "queue": row[1],
        "payload": row[2],
        "worker_id": row[3],
        "attempts": row[4],
        "claim_expires_at": row[5],
    }


Spec = tuple[str, str, Callable[..., Any]]


def _functions(conn: sqlite3.Connection) -> list[Spec]:
    """(name, "arg:kind ..." signature, implementation) for every function, bound to ``conn``."""

    def bootstrap() -> int:
        # Unlike the reference's honker_bootstrap() this also creates _honker_notifications
        # (the reference creates it when the extension loads); harmless when it exists, and
        # it lets attach(conn, bootstrap=False) + SELECT honker_bootstrap() yield a full file.
        _schema.install(conn)
        return 1

    def claim_batch(queue: str, worker: str, n: int, visibility: int) -> str:
        # SQLite treats a negative LIMIT as "no limit"; so does the reference. Rows are
        # chosen in claim order (priority, run_at, id) but listed by id, like the reference.
        rows = _ops.claim_batch(conn, queue, worker, n if n >= 0 else 2**62, visibility)
        return _compact([_claim_json(r) for r in sorted(rows, key=lambda r: int(r[0]))])

    def get_job(job_id: int) -> str:
        job = _ops.get_job(conn, job_id)
        return "" if job is None else _compact(job)

    def register(
        name: str,
        queue: str,
        expr: str,
        payload: str,
        priority: int,
        expires: int | None,
        max_attempts: int = 3,
    ) -> int:
        _ops.scheduler_register(conn, name, queue, expr, payload, priority, expires, max_attempts)
        return 1

    def update(
        name: str,
        expr: str | None,
        payload: str | None,
        priority: int | None,
        expires: int | None,
        touch_expires: int,
        max_attempts: int | None = None,
        touch_max: int = 0,
    ) -> int:
        changed = _ops.scheduler_update(
            conn,
            name,
            expr,
            payload,
            priority,
            expires,
            touch_expires != 0,
            max_attempts,
            touch_max != 0,
        )
        return int(changed)

    def result_save(job_id: int, value: str, ttl: int) -> int:
        _ops.result_save(conn, job_id, value, ttl)
        return 1

    def stream_read_since(topic: str, offset: int, limit: int) -> str:
        rows = _ops.stream_read_since(conn, topic, offset, limit)
        return _compact([dict(zip(_ops.STREAM_COLUMNS, r, strict=True)) for r in rows])

    def cron_next_after(expr: str, from_unix: int) -> int:
        from .cron import next_after_unix

        return next_after_unix(expr, from_unix)

    register_args = "name:t queue:t cron_expr:t payload:t priority:i expires_s:i?"
    update_args = "name:t cron_expr:t? payload:t? priority:i? expires_s:i? touch_expires:i"
    return [
        ("notify", "channel:t payload:t", lambda ch, p: _ops.notify(conn, ch, p)),
        ("honker_bootstrap", "", bootstrap),
        (
            "honker_enqueue",
            "queue:t payload:t run_at:i? delay:i? priority:i max_attempts:i expires:i?",
            lambda q, p, run_at, delay, prio, budget, exp: _ops.enqueue(
                conn, q, p, run_at, delay, prio, budget, exp
            ),
        ),
        (
            "honker_claim_batch",
            "queue:t worker_id:t n:i visibility_timeout_s:i",
            claim_batch,
        ),
        ("honker_ack", "job_id:i worker_id:t", lambda i, w: int(_ops.ack(conn, i, w))),
        (
            "honker_ack_batch",
            "ids_json:t worker_id:t",
            lambda ids, w: _ops.ack_batch(conn, ids, w),
        ),
        (
            "honker_retry",
            "job_id:i worker_id:t delay_s:i error:t",
            lambda i, w, d, e: int(_ops.retry(conn, i, w, d, e)),
        ),
        (
            "honker_fail",
            "job_id:i worker_id:t error:t",
            lambda i, w, e: int(_ops.fail(conn, i, w, e)),
        ),
        (
            "honker_heartbeat",
            "job_id:i worker_id:t extend_s:i",
            lambda i, w, x: int(_ops.heartbeat(conn, i, w, x)),
        ),
        ("honker_cancel", "job_id:i", lambda i: int(_ops.cancel(conn, i))),
        ("honker_get_job", "job_id:i", get_job),
        ("honker_sweep_expired", "queue:t", lambda q: _ops.sweep_expired(conn, q)),
        (
            "honker_queue_next_claim_at",
            "queue:t",
            lambda q: _ops.queue_next_claim_at(conn, q),
        ),
        (
            "honker_lock_acquire",
            "name:t owner:t ttl_s:i",
            lambda n, o, t: int(_ops.lock_acquire(conn, n, o, t)),
        ),
        (
            "honker_lock_renew",
            "name:t owner:t ttl_s:i",
            lambda n, o, t: int(_ops.lock_renew(conn, n, o, t)),
        ),
        (
            "honker_lock_release",
            "name:t owner:t",
            lambda n, o: int(_ops.lock_release(conn, n, o)),
        ),
        (
            "honker_rate_limit_try",
            "name:t limit:i per:i",
            lambda n, limit, per: int(_ops.rate_limit_try(conn, n, limit, per)),
        ),
        (
            "honker_rate_limit_sweep",
            "older_than_s:i",
            lambda s: _ops.rate_limit_sweep(conn, s),
        ),
        ("honker_scheduler_register", register_args, register),
        ("honker_scheduler_register", register_args + " max_attempts:i", register),
        (
            "honker_scheduler_unregister",
            "name:t",
            lambda n: _ops.scheduler_unregister(conn, n),
        ),
        (
            "honker_scheduler_tick",
            "now_unix:i",
            lambda now: _compact(_ops.scheduler_tick(conn, now)),
        ),
        ("honker_scheduler_soonest", "", lambda: _ops.scheduler_soonest(conn)),
        (
            "honker_scheduler_pause",
            "name:t",
            lambda n: int(_ops.scheduler_set_enabled(conn, n, False)),
        ),
        (
            "honker_scheduler_resume",
            "name:t",
            lambda n: int(_ops.scheduler_set_enabled(conn, n, True)),
        ),
        ("honker_scheduler_list", "", lambda: _compact(_ops.scheduler_list(conn))),
        ("honker_scheduler_update", update_args, update),
        (
            "honker_scheduler_update",
            update_args + " max_attempts:i? touch_max_attempts:i",
            update,
        ),
        ("honker_cron_next_after", "expr:t from_unix:i", cron_next_after),
        ("honker_result_save", "job_id:i value:t ttl_s:i", result_save),
        ("honker_result_get", "job_id:i", lambda i: _ops.result_get(conn, i)),
        ("honker_result_sweep", "", lambda: _ops.result_sweep(conn)),
        (
            "honker_stream_publish",
            "topic:t key:t? payload:t",
            lambda t, k, p: _ops.stream_publish(conn, t, k, p),
        ),
        ("honker_stream_read_since", "topic:t offset:i limit:i", stream_read_since),
        (
            "honker_stream_save_offset",
            "consumer:t topic:t offset:i",
            lambda c, t, o: int(_ops.stream_save_offset(conn, c, t, o)),
        ),
        (
            "honker_stream_get_offset",
            "consumer:t topic:t",
            lambda c, t: _ops.stream_get_offset(conn, c, t),
        ),
    ]


FUNCTION_NAMES: frozenset[str] = frozenset(
    name
    for name, _, _ in _functions(None)  # type: ignore[arg-type]
)


def _register_functions(conn: sqlite3.Connection) -> None:
    for name, signature, fn in _functions(conn):
        conn.create_function(
            name,
            len(_parse_signature(signature)[1]),
            _checked(name, signature, fn, conn),
            deterministic=name == "honker_cron_next_after",
        )


def register(conn: sqlite3.Connection) -> None:
    """Create ``_honker_notifications`` if missing and register every function on ``conn``.

    For the library's own writer connection (autocommit mode); applications use
    :func:`attach`.
    """
    _schema.create_notifications(conn)
    _register_functions(conn)


def attach(conn: sqlite3.Connection, *, bootstrap: bool = True) -> None:
    """Register ``notify()`` and the ``honker_*`` SQL functions on your own connection.

    ``conn`` is a ``sqlite3.Connection`` the application owns (opened by you, by
    SQLAlchemy, by Django...). Afterwards ``SELECT honker_enqueue(...)``,
    ``SELECT notify(...)`` and every other function of the SQL surface run inside the
    application's own transaction on that connection: they commit with it and roll back with
    it, and honker workers in any process wake when it commits.

    With ``bootstrap`` (the default) the honker schema is installed if the file lacks any
    of it (a pure read when it is complete, the usual case):

    * outside a transaction, in a short ``BEGIN IMMEDIATE … COMMIT`` of its own;
    * inside an open transaction, the DDL *joins* that transaction (under a savepoint, so
      a failure leaves the caller's transaction as it was): it becomes durable when the
      caller commits and disappears if the caller rolls back. Nothing is committed or
      rolled back on the caller's behalf.

    With ``bootstrap=False`` nothing is written; the schema must already exist (created by
    ``honker.open()``, an earlier ``attach``, ``SELECT honker_bootstrap()`` or another
    honker binding). honker's extra tables (``_honker_stats``, ``_honker_scheduler_tz``)
    are part of that schema: ack and dead-letter moves count outcomes in them.

    The connection may use any ``isolation_level``, ``row_factory`` or ``text_factory``.
    The registered functions keep a reference to ``conn``: ``close()`` it when you are done
    (connection pools do).
    """
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(
            f"honker.attach() needs a sqlite3.Connection, not {type(conn).__name__} "
            "(with SQLAlchemy use the DBAPI connection of a 'connect' event; with Django "
            "connection.connection)"
        )
    _register_functions(conn)
    if bootstrap:
        ensure_schema(conn)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Install the honker schema on ``conn`` if incomplete, respecting an open transaction."""
    row_factory, text_factory = conn.row_factory, conn.text_factory
    conn.row_factory, conn.text_factory = None, str
    try:
        _schema.ensure(conn)
    finally:
        conn.row_factory, conn.text_factory = row_factory, text_factory
