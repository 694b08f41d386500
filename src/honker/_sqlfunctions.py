"""``notify()`` and the ``honker_*`` SQL functions, registered on a ``sqlite3.Connection``.

Same names, arities, argument meanings, return values and JSON shapes as the reference's
loadable extension (``SQL_FUNCTIONS.md``). Each function is a thin adapter over ``_ops``, the
same code the Python API runs, so ``SELECT honker_enqueue(...)`` inside an application's own
transaction and ``queue.enqueue(...)`` have identical effects on disk.

Arguments are checked as strictly as the reference does: TEXT arguments must be SQL TEXT,
INTEGER arguments SQL INTEGER, and NULL only where the contract allows it. A violation is
reported as an ordinary SQLite error of the calling statement.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from . import _ops, _schema

# Argument kinds: "t" text, "i" integer, "t?" text or NULL, "i?" integer or NULL.
_KINDS = {"t": (str,), "i": (int,), "t?": (str, type(None)), "i?": (int, type(None))}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _checked(name: str, kinds: tuple[str, ...], fn: Callable[..., Any]) -> Callable[..., Any]:
    allowed = [_KINDS[k] for k in kinds]

    def wrapper(*args: Any) -> Any:
        for position, (value, ok) in enumerate(zip(args, allowed, strict=True), start=1):
            if type(value) not in ok:
                raise TypeError(
                    f"{name}: argument {position} must be {kinds[position - 1]}, "
                    f"got {type(value).__name__}"
                )
        return fn(*args)

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


def _functions(conn: sqlite3.Connection) -> list[tuple[str, tuple[str, ...], Callable[..., Any]]]:
    """(name, argument kinds, implementation) for every function, bound to ``conn``."""

    def bootstrap() -> int:
        _schema.bootstrap(conn)
        return 1

    def claim_batch(queue: str, worker: str, n: int, visibility: int) -> str:
        rows = _ops.claim_batch(conn, queue, worker, n if n >= 0 else 2**62, visibility)
        return _compact([_claim_json(r) for r in rows])

    def get_job(job_id: int) -> str:
        job = _ops.get_job(conn, job_id)
        return "" if job is None else _compact(job)

    def lock_renew(name: str, owner: str, ttl: int) -> int:
        return int(_ops.lock_renew(conn, name, owner, ttl))

    def rate_limit_try(name: str, limit: int, per: int) -> int:
        return int(_ops.rate_limit_try(conn, name, limit, per))

    def register6(
        name: str, queue: str, expr: str, payload: str, priority: int, expires: int | None
    ) -> int:
        _ops.scheduler_register(conn, name, queue, expr, payload, priority, expires, 3)
        return 1

    def register7(
        name: str,
        queue: str,
        expr: str,
        payload: str,
        priority: int,
        expires: int | None,
        max_attempts: int,
    ) -> int:
        _ops.scheduler_register(conn, name, queue, expr, payload, priority, expires, max_attempts)
        return 1

    def update6(
        name: str,
        expr: str | None,
        payload: str | None,
        priority: int | None,
        expires: int | None,
        touch_expires: int,
    ) -> int:
        return int(
            _ops.scheduler_update(conn, name, expr, payload, priority, expires, touch_expires != 0)
        )

    def update8(
        name: str,
        expr: str | None,
        payload: str | None,
        priority: int | None,
        expires: int | None,
        touch_expires: int,
        max_attempts: int | None,
        touch_max: int,
    ) -> int:
        return int(
            _ops.scheduler_update(
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
        )

    def scheduler_list() -> str:
        return _compact(_ops.scheduler_list(conn))

    def result_save(job_id: int, value: str, ttl: int) -> int:
        _ops.result_save(conn, job_id, value, ttl)
        return 1

    def stream_read_since(topic: str, offset: int, limit: int) -> str:
        rows = _ops.stream_read_since(conn, topic, offset, limit)
        return _compact([dict(zip(_ops.STREAM_COLUMNS, r, strict=True)) for r in rows])

    def cron_next_after(expr: str, from_unix: int) -> int:
        from .cron import next_after_unix

        return next_after_unix(expr, from_unix)

    return [
        ("notify", ("t", "t"), lambda ch, p: _ops.notify(conn, ch, p)),
        ("honker_bootstrap", (), bootstrap),
        (
            "honker_enqueue",
            ("t", "t", "i?", "i?", "i", "i", "i?"),
            lambda q, p, run_at, delay, prio, budget, exp: _ops.enqueue(
                conn, q, p, run_at, delay, prio, budget, exp
            ),
        ),
        ("honker_claim_batch", ("t", "t", "i", "i"), claim_batch),
        ("honker_ack", ("i", "t"), lambda i, w: int(_ops.ack(conn, i, w))),
        ("honker_ack_batch", ("t", "t"), lambda ids, w: _ops.ack_batch(conn, ids, w)),
        (
            "honker_retry",
            ("i", "t", "i", "t"),
            lambda i, w, d, e: int(_ops.retry(conn, i, w, d, e)),
        ),
        ("honker_fail", ("i", "t", "t"), lambda i, w, e: int(_ops.fail(conn, i, w, e))),
        (
            "honker_heartbeat",
            ("i", "t", "i"),
            lambda i, w, x: int(_ops.heartbeat(conn, i, w, x)),
        ),
        ("honker_cancel", ("i",), lambda i: int(_ops.cancel(conn, i))),
        ("honker_get_job", ("i",), get_job),
        ("honker_sweep_expired", ("t",), lambda q: _ops.sweep_expired(conn, q)),
        ("honker_queue_next_claim_at", ("t",), lambda q: _ops.queue_next_claim_at(conn, q)),
        (
            "honker_lock_acquire",
            ("t", "t", "i"),
            lambda n, o, t: int(_ops.lock_acquire(conn, n, o, t)),
        ),
        ("honker_lock_renew", ("t", "t", "i"), lock_renew),
        ("honker_lock_release", ("t", "t"), lambda n, o: int(_ops.lock_release(conn, n, o))),
        ("honker_rate_limit_try", ("t", "i", "i"), rate_limit_try),
        ("honker_rate_limit_sweep", ("i",), lambda s: _ops.rate_limit_sweep(conn, s)),
        ("honker_scheduler_register", ("t", "t", "t", "t", "i", "i?"), register6),
        ("honker_scheduler_register", ("t", "t", "t", "t", "i", "i?", "i"), register7),
        ("honker_scheduler_unregister", ("t",), lambda n: _ops.scheduler_unregister(conn, n)),
        (
            "honker_scheduler_tick",
            ("i",),
            lambda now: _compact(_ops.scheduler_tick(conn, now)),
        ),
        ("honker_scheduler_soonest", (), lambda: _ops.scheduler_soonest(conn)),
        (
            "honker_scheduler_pause",
            ("t",),
            lambda n: int(_ops.scheduler_set_enabled(conn, n, False)),
        ),
        (
            "honker_scheduler_resume",
            ("t",),
            lambda n: int(_ops.scheduler_set_enabled(conn, n, True)),
        ),
        ("honker_scheduler_list", (), scheduler_list),
        ("honker_scheduler_update", ("t", "t?", "t?", "i?", "i?", "i"), update6),
        ("honker_scheduler_update", ("t", "t?", "t?", "i?", "i?", "i", "i?", "i"), update8),
        ("honker_cron_next_after", ("t", "i"), cron_next_after),
        ("honker_result_save", ("i", "t", "i"), result_save),
        ("honker_result_get", ("i",), lambda i: _ops.result_get(conn, i)),
        ("honker_result_sweep", (), lambda: _ops.result_sweep(conn)),
        (
            "honker_stream_publish",
            ("t", "t?", "t"),
            lambda t, k, p: _ops.stream_publish(conn, t, k, p),
        ),
        ("honker_stream_read_since", ("t", "i", "i"), stream_read_since),
        (
            "honker_stream_save_offset",
            ("t", "t", "i"),
            lambda c, t, o: int(_ops.stream_save_offset(conn, c, t, o)),
        ),
        (
            "honker_stream_get_offset",
            ("t", "t"),
            lambda c, t: _ops.stream_get_offset(conn, c, t),
        ),
    ]


FUNCTION_NAMES: frozenset[str] = frozenset(
    name
    for name, _, _ in _functions(None)  # type: ignore[arg-type]
)


def register(conn: sqlite3.Connection) -> None:
    """Create ``_honker_notifications`` if missing and register every function on ``conn``.

    Works on any ``sqlite3.Connection`` (the library's writer, or one the application owns).
    """
    _schema.create_notifications(conn)
    for name, kinds, fn in _functions(conn):
        conn.create_function(
            name,
            len(kinds),
            _checked(name, kinds, fn),
            deterministic=name == "honker_cron_next_after",
        )
