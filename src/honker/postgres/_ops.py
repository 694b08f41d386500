"""Every statement honker runs, in PostgreSQL: the same functions as ``honker._ops``.

Each function has the name, signature and result of its ``honker._ops`` counterpart and
takes a psycopg 3 connection first, so feature modules call ``engine.ops.<name>`` without
knowing the engine. Conventions:

* Functions never BEGIN/COMMIT; the engine runs them inside one transaction.
* "Now" is the **server's** clock (:data:`NOW`: unix seconds of the statement's start),
  never a client's, so hosts with skewed clocks agree on claimability, expiry, locks,
  windows and schedules.
* A claim is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`` statement;
  candidates whose attempt budget is spent are moved to ``_honker_dead`` by the same
  statement. Every move to dead is one ``DELETE … RETURNING`` feeding an ``INSERT`` in a
  single statement: a job is never in both tables, nor in neither.
* Stream events and notifications get their offset/id while the publisher holds the row
  lock of its topic/channel (``_honker_stream_topics`` / ``_honker_notify_channels``), so
  on one topic ids commit in id order and a reader reading ``id > last`` never skips one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .. import _ops as _sqlite_ops
from .._ops import (
    ATTEMPT_COLUMNS,
    ATTEMPTS_KEEP,
    BAD_UTF8_ERROR,
    CANCEL_MODES,
    CLAIM_COLUMNS,
    JOB_COLUMNS,
    JOB_DETAIL_COLUMNS,
    JOB_STATES,
    MAX_ATTEMPTS_EXCEEDED,
    RETENTION_INDEXES,
    RETENTION_TARGETS,
    SCHEDULE_COLUMNS,
    STATS_BUCKET_S,
    STATS_KEEP_S,
    STREAM_COLUMNS,
    TASK_NAMES_LIMIT,
    TASK_NAMES_SCAN,
    TICK_CAP,
    WORKER_COLUMNS,
    WORKER_PRUNE_AFTER_S,
    _next_after,
    zone,
)
from ._schema import NOW

__all__ = [
    "ATTEMPTS_KEEP",
    "ATTEMPT_COLUMNS",
    "BAD_UTF8_ERROR",
    "CANCEL_MODES",
    "CLAIM_COLUMNS",
    "JOB_COLUMNS",
    "JOB_DETAIL_COLUMNS",
    "JOB_STATES",
    "MAX_ATTEMPTS_EXCEEDED",
    "RETENTION_INDEXES",
    "RETENTION_TARGETS",
    "SCHEDULE_COLUMNS",
    "STATS_BUCKET_S",
    "STATS_KEEP_S",
    "STREAM_COLUMNS",
    "TASK_NAMES_LIMIT",
    "TASK_NAMES_SCAN",
    "TICK_CAP",
    "WORKER_COLUMNS",
    "WORKER_PRUNE_AFTER_S",
    "zone",
]

Row = tuple[Any, ...]
Conn = Any  # psycopg.Connection[tuple[Any, ...]]


def _one(conn: Conn, sql: str, params: Any = ()) -> Row | None:
    row: Row | None = conn.execute(sql, params).fetchone()
    return row


def _all(conn: Conn, sql: str, params: Any = ()) -> list[Row]:
    rows: list[Row] = conn.execute(sql, params).fetchall()
    return rows


def _count(conn: Conn, sql: str, params: Any = ()) -> int:
    return int(conn.execute(sql, params).rowcount)


# -- notifications -------------------------------------------------------------------------

# The channel row is upserted (and so row-locked until commit) before the id is drawn.
_NOTIFY_SQL = (
    "WITH ch AS (INSERT INTO _honker_notify_channels (channel) VALUES (%s) "
    "ON CONFLICT (channel) DO UPDATE SET channel = EXCLUDED.channel RETURNING channel) "
    "INSERT INTO _honker_notifications (channel, payload) SELECT channel, %s FROM ch "
    "RETURNING id"
)


def notify(conn: Conn, channel: str, payload: str) -> int:
    """Insert one notification row and return its id (visible to others at commit)."""
    row = _one(conn, _NOTIFY_SQL, (channel, payload))
    return int(row[0]) if row else 0


def notifications_max_id(conn: Conn, channel: str) -> int:
    """Highest notification id on ``channel`` (0 if none): where a new listener starts."""
    row = _one(conn, "SELECT MAX(id) FROM _honker_notifications WHERE channel = %s", (channel,))
    return int(row[0] or 0) if row else 0


def _after(conn: Conn, columns: str, table: str, key: str, pos: str, args: Any) -> list[Row]:
    """Rows of ``table`` whose ``key`` is args[0] and ``pos`` > args[1], ascending, args[2] max."""
    return _all(
        conn,
        f"SELECT {columns} FROM {table} WHERE {key} = %s AND {pos} > %s ORDER BY {pos} LIMIT %s",
        args,
    )


def notifications_since(conn: Conn, channel: str, after_id: int, limit: int) -> list[Row]:
    """``(id, channel, payload, created_at)`` rows of ``channel`` with ``id > after_id``."""
    columns = "id, channel, payload, created_at"
    return _after(
        conn, columns, "_honker_notifications", "channel", "id", (channel, after_id, limit)
    )


def prune_notifications(conn: Conn, older_than_s: int | None, max_keep: int | None) -> int:
    """Delete notifications older than ``older_than_s`` or beyond the newest ``max_keep``."""
    clauses = []
    params: list[int] = []
    if older_than_s is not None:
        clauses.append(f"created_at < {NOW} - %s")
        params.append(older_than_s)
    if max_keep is not None:
        clauses.append(
            "id <= (SELECT id FROM _honker_notifications ORDER BY id DESC LIMIT 1 OFFSET %s)"
        )
        params.append(max_keep)
    if not clauses:
        return 0
    return _count(conn, "DELETE FROM _honker_notifications WHERE " + " OR ".join(clauses), params)


# -- jobs: enqueue and claim -----------------------------------------------------------

_ENQUEUE_SQL = (
    "INSERT INTO _honker_live (queue, payload, run_at, priority, max_attempts, expires_at) "
    f"VALUES (%(q)s, %(p)s, COALESCE({NOW} + %(delay)s::bigint, %(run_at)s::bigint, {NOW}), "
    f"%(prio)s, %(ma)s, {NOW} + %(exp)s::bigint) RETURNING id"
)
_ENQUEUE_KEYS = ("q", "p", "run_at", "delay", "prio", "ma", "exp")


def enqueue(
    conn: Conn,
    queue: str,
    payload: str,
    run_at: int | None,
    delay: int | None,
    priority: int,
    max_attempts: int,
    expires: int | None,
) -> int:
    """Insert one pending job and return its id.

    ``run_at`` = now + ``delay`` when a delay is given (it wins), else ``run_at``, else now.
    ``expires_at`` = now + ``expires`` when given, else never.
    """
    params = (queue, payload, run_at, delay, priority, max_attempts, expires)
    row = conn.execute(_ENQUEUE_SQL, dict(zip(_ENQUEUE_KEYS, params, strict=True))).fetchone()
    return int(row[0])


def enqueue_many(
    conn: Conn, queue: str, payloads: Iterable[str], priority: int, max_attempts: int
) -> int:
    """Insert many immediately claimable jobs; returns how many were inserted."""
    texts = list(payloads)
    if not texts:
        return 0
    return _count(
        conn,
        "INSERT INTO _honker_live (queue, payload, priority, max_attempts) "
        "SELECT %s, p, %s, %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(p, n) ORDER BY n",
        (queue, priority, max_attempts, texts),
    )


def enqueue_batch(
    conn: Conn,
    queue: str,
    payloads: Sequence[str],
    run_at: int | None,
    delay: int | None,
    priority: int,
    max_attempts: int,
    expires: int | None,
) -> list[int]:
    """Insert one pending job per payload (same options for all); returns their ids in
    payload order (one statement: identity values are drawn in insertion order)."""
    if not payloads:
        return []
    rows = _all(
        conn,
        "INSERT INTO _honker_live (queue, payload, run_at, priority, max_attempts, expires_at) "
        f"SELECT %(q)s, p, COALESCE({NOW} + %(delay)s::bigint, %(run_at)s::bigint, {NOW}), "
        f"%(prio)s, %(ma)s, {NOW} + %(exp)s::bigint "
        "FROM unnest(%(ps)s::text[]) WITH ORDINALITY AS u(p, n) ORDER BY n RETURNING id",
        {
            "q": queue,
            "ps": list(payloads),
            "run_at": run_at,
            "delay": delay,
            "prio": priority,
            "ma": max_attempts,
            "exp": expires,
        },
    )
    return sorted(int(r[0]) for r in rows)


_DEAD_COLUMNS = (
    "id, queue, payload, priority, run_at, max_attempts, attempts, last_error, created_at"
)
_LIVE_TO_DEAD = "id, queue, payload, priority, run_at, max_attempts, attempts, created_at"


def _stats_cte(source: str, column: str) -> str:
    """A CTE counting the ``queue`` column of ``source`` into ``_honker_stats.column``."""
    return (
        f"stats AS (INSERT INTO _honker_stats (queue, bucket, {column}) "
        f"SELECT queue, {NOW} / {STATS_BUCKET_S} * {STATS_BUCKET_S}, count(*) FROM {source} "
        f"GROUP BY queue ON CONFLICT (queue, bucket) DO UPDATE "
        f"SET {column} = _honker_stats.{column} + EXCLUDED.{column})"
    )


def _dead_move(where: str, error_param: str) -> str:
    """One statement moving the live rows matching ``where`` to dead; returns their ids."""
    return (
        f"WITH moved AS (DELETE FROM _honker_live WHERE {where} RETURNING {_LIVE_TO_DEAD}), "
        f"ins AS (INSERT INTO _honker_dead ({_DEAD_COLUMNS}) "
        f"SELECT id, queue, payload, priority, run_at, max_attempts, attempts, "
        f"{error_param}, created_at FROM moved RETURNING id, queue), "
        f"{_stats_cte('ins', 'dead')} SELECT id FROM ins"
    )


_CLAIMABLE = (
    "queue = %(q)s AND state IN ('pending', 'processing') "
    f"AND ((state = 'pending' AND run_at <= {NOW}) "
    f"OR (state = 'processing' AND claim_expires_at < {NOW})) "
    f"AND (expires_at IS NULL OR expires_at > {NOW}) "
    "AND NOT EXISTS (SELECT 1 FROM _honker_paused WHERE queue = %(q)s)"
)

# One statement: lock up to n candidates in claim order (skipping rows other claimers
# hold), dead-letter those whose budget is spent, claim the rest. The outer join always
# yields one row carrying how many died, so the caller can refill their slots.
_CLAIM_SQL = (
    "WITH cand AS (SELECT id, attempts < max_attempts AS ok FROM _honker_live "
    f"WHERE {_CLAIMABLE} ORDER BY priority DESC, run_at, id LIMIT %(n)s "
    "FOR UPDATE SKIP LOCKED), "
    "moved AS (DELETE FROM _honker_live l USING cand WHERE l.id = cand.id AND NOT cand.ok "
    f"RETURNING l.{_LIVE_TO_DEAD.replace(', ', ', l.')}), "
    f"ins AS (INSERT INTO _honker_dead ({_DEAD_COLUMNS}) "
    "SELECT id, queue, payload, priority, run_at, max_attempts, attempts, "
    "%(err)s, created_at FROM moved RETURNING id, queue), "
    f"{_stats_cte('ins', 'dead')}, "
    "claimed AS (UPDATE _honker_live l SET state = 'processing', worker_id = %(w)s, "
    f"claim_expires_at = {NOW} + %(vis)s, attempts = l.attempts + 1 "
    "FROM cand WHERE l.id = cand.id AND cand.ok "
    f"RETURNING {', '.join('l.' + c for c in CLAIM_COLUMNS)}) "
    f"SELECT d.died, {', '.join('c.' + c for c in CLAIM_COLUMNS)} "
    "FROM (SELECT array_agg(id) AS died FROM ins) d LEFT JOIN claimed c ON true "
    "ORDER BY c.priority DESC, c.run_at, c.id"
)


def claim_batch(conn: Conn, queue: str, worker_id: str, n: int, visibility_s: int) -> list[Row]:
    """Claim up to ``n`` claimable jobs of ``queue`` in claim order; rows per CLAIM_COLUMNS.

    Claimable: pending and due, or processing with an expired claim; not expired; within
    its attempt budget. A candidate whose budget is already spent is moved to
    ``_honker_dead`` ('max attempts exceeded') instead, and its slot is refilled. Rows other
    transactions hold are skipped (``SKIP LOCKED``), so concurrent claimers never wait on
    each other nor get the same job.
    """
    claimed: list[Row] = []
    want = n
    params = {"q": queue, "w": worker_id, "vis": visibility_s, "err": MAX_ATTEMPTS_EXCEEDED}
    while want > 0:
        rows = _all(conn, _CLAIM_SQL, {**params, "n": want})
        died = rows[0][0] if rows else None
        if died:
            unique_release(conn, died)
        got = [r[1:] for r in rows if r[1] is not None]
        claimed.extend(got)
        want -= len(got)
        if not died:
            break
    if len(claimed) > 1:
        claimed.sort(key=lambda r: (-r[6], r[7], r[0]))
    return claimed


# -- outcome counters (extra table _honker_stats) -------------------------------------

_stats_pruned_at = 0.0


def count_outcome(conn: Conn, queue: str, outcome: str, n: int) -> None:
    """Add ``n`` to this queue's ``done`` or ``dead`` counter for the current 10 s bucket."""
    global _stats_pruned_at
    column = "done" if outcome == "done" else "dead"
    conn.execute(
        f"INSERT INTO _honker_stats (queue, bucket, {column}) "
        f"VALUES (%s, {NOW} / {STATS_BUCKET_S} * {STATS_BUCKET_S}, %s) "
        f"ON CONFLICT (queue, bucket) DO UPDATE "
        f"SET {column} = _honker_stats.{column} + EXCLUDED.{column}",
        (queue, n),
    )
    now = time.monotonic()
    if now - _stats_pruned_at > 600:
        _stats_pruned_at = now
        conn.execute(f"DELETE FROM _honker_stats WHERE bucket < {NOW} - %s", (STATS_KEEP_S,))


# -- jobs: outcomes --------------------------------------------------------------------

_HELD = f"id = %(id)s AND worker_id = %(w)s AND state = 'processing' AND claim_expires_at >= {NOW}"


def ack(conn: Conn, job_id: int, worker_id: str) -> bool:
    """Delete the job iff ``worker_id`` still holds a valid claim on it (counted as done)."""
    rows = _all(
        conn,
        f"WITH gone AS (DELETE FROM _honker_live WHERE {_HELD} RETURNING queue), "
        f"{_stats_cte('gone', 'done')} SELECT 1 FROM gone",
        {"id": job_id, "w": worker_id},
    )
    if rows:
        unique_release(conn, (job_id,))
    return bool(rows)


def ack_batch(conn: Conn, ids_json: str, worker_id: str) -> int:
    """Delete every job in the JSON id array still validly held by ``worker_id``."""
    rows = _all(
        conn,
        "WITH gone AS (DELETE FROM _honker_live WHERE id IN "
        "(SELECT value::bigint FROM json_array_elements_text(%(ids)s::json)) "
        "AND worker_id = %(w)s AND state = 'processing' "
        f"AND claim_expires_at >= {NOW} RETURNING queue, id), "
        f"{_stats_cte('gone', 'done')} SELECT id FROM gone",
        {"ids": ids_json, "w": worker_id},
    )
    unique_release(conn, [int(r[0]) for r in rows])
    return len(rows)


def retry(conn: Conn, job_id: int, worker_id: str, delay_s: int, error: str) -> bool:
    """Put a held job back to pending after ``delay_s``, or dead-letter it if its budget is spent.

    Returns False (and changes nothing) when the claim is no longer valid.
    """
    return _retry_outcome(conn, job_id, worker_id, delay_s, error) is not None


def _retry_outcome(conn: Conn, job_id: int, worker_id: str, delay_s: int, error: str) -> str | None:
    """:func:`retry`, telling what happened: "retried", "dead" or None (claim lapsed)."""
    params = {"id": job_id, "w": worker_id, "delay": delay_s, "err": error}
    if _count(
        conn,
        f"UPDATE _honker_live SET state = 'pending', run_at = {NOW} + %(delay)s, "
        f"worker_id = NULL, claim_expires_at = NULL WHERE {_HELD} AND attempts < max_attempts",
        params,
    ):
        job_error_save(conn, job_id, error)
        return "retried"
    return "dead" if _moved(conn, _dead_move(_HELD, "%(err)s"), params) > 0 else None


def _moved(conn: Conn, sql: str, params: Any) -> int:
    """Run a :func:`_dead_move` statement; release the unique keys of the moved jobs."""
    ids = [int(r[0]) for r in _all(conn, sql, params)]
    unique_release(conn, ids)
    return len(ids)


def fail(conn: Conn, job_id: int, worker_id: str, error: str) -> bool:
    """Move a held job to ``_honker_dead`` with ``error``, whatever its attempts."""
    params = {"id": job_id, "w": worker_id, "err": error}
    return _moved(conn, _dead_move(_HELD, "%(err)s"), params) > 0


def heartbeat(conn: Conn, job_id: int, worker_id: str, extend_s: int) -> bool:
    """Extend a still-valid claim to now + ``extend_s`` (a late heartbeat revives nothing)."""
    return (
        _count(
            conn,
            f"UPDATE _honker_live SET claim_expires_at = {NOW} + %(ext)s WHERE {_HELD}",
            {"id": job_id, "w": worker_id, "ext": extend_s},
        )
        > 0
    )


def release_claim(conn: Conn, job_id: int, worker_id: str) -> bool:
    """Hand a held job back untouched: pending, due now, attempt not counted."""
    return snooze(conn, job_id, worker_id, 0)


def snooze(conn: Conn, job_id: int, worker_id: str, delay_s: int) -> bool:
    """Put a held job back to pending, due in ``delay_s`` seconds, its attempt given back."""
    return (
        _count(
            conn,
            "UPDATE _honker_live SET state = 'pending', worker_id = NULL, "
            "claim_expires_at = NULL, attempts = GREATEST(attempts - 1, 0), "
            f"run_at = {NOW} + %(delay)s WHERE {_HELD}",
            {"id": job_id, "w": worker_id, "delay": delay_s},
        )
        > 0
    )


def cancel(conn: Conn, job_id: int, pending_only: bool = False) -> bool:
    """Delete a pending or processing job whoever holds it (only if pending, on request)."""
    states = "('pending')" if pending_only else "('pending', 'processing')"
    if not _count(conn, f"DELETE FROM _honker_live WHERE id = %s AND state IN {states}", (job_id,)):
        return False
    unique_release(conn, (job_id,))
    return True


def get_job(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """The live row of ``job_id`` as a dict, or None when it is not in ``_honker_live``."""
    row = _one(conn, f"SELECT {', '.join(JOB_COLUMNS)} FROM _honker_live WHERE id = %s", (job_id,))
    return None if row is None else dict(zip(JOB_COLUMNS, row, strict=True))


def sweep_expired(conn: Conn, queue: str) -> int:
    """Move ``queue``'s pending rows whose ``expires_at`` passed to ``_honker_dead``."""
    where = f"queue = %s AND state = 'pending' AND expires_at IS NOT NULL AND expires_at <= {NOW}"
    return _moved(conn, _dead_move(where, "'expired'"), (queue,))


def queue_next_claim_at(conn: Conn, queue: str) -> int:
    """Earliest future moment a claim on ``queue`` could succeed with no new write (0: none)."""
    if queue_is_paused(conn, queue):
        return 0  # resuming is a commit, which wakes the queue's workers
    live = f"AND (expires_at IS NULL OR expires_at > {NOW}) AND attempts < max_attempts"
    row = _one(
        conn,
        "SELECT LEAST("
        f"(SELECT run_at FROM _honker_live WHERE queue = %(q)s AND state = 'pending' "
        f" AND run_at > {NOW} {live} ORDER BY run_at LIMIT 1), "
        "(SELECT claim_expires_at + 1 FROM _honker_live WHERE queue = %(q)s "
        f" AND state = 'processing' AND claim_expires_at >= {NOW} {live} "
        " ORDER BY claim_expires_at LIMIT 1))",
        {"q": queue},
    )
    return int(row[0] or 0) if row else 0


# -- results ---------------------------------------------------------------------------


def result_save(conn: Conn, job_id: int, value: str, ttl_s: int) -> None:
    """Upsert a stored result; ``ttl_s <= 0`` means it never expires."""
    conn.execute(
        "INSERT INTO _honker_results (job_id, value, expires_at) VALUES "
        f"(%(id)s, %(v)s, CASE WHEN %(ttl)s::bigint > 0 THEN {NOW} + %(ttl)s::bigint END) "
        "ON CONFLICT (job_id) DO UPDATE SET value = EXCLUDED.value, "
        "expires_at = EXCLUDED.expires_at",
        {"id": job_id, "v": value, "ttl": ttl_s},
    )


def result_get(conn: Conn, job_id: int) -> str | None:
    """The stored result text (``'null'`` is a stored None), or None when absent/expired."""
    row = _one(
        conn,
        "SELECT value FROM _honker_results WHERE job_id = %s "
        f"AND (expires_at IS NULL OR expires_at > {NOW})",
        (job_id,),
    )
    return None if row is None else str(row[0]) if row[0] is not None else None


def result_sweep(conn: Conn) -> int:
    """Delete expired results; returns how many."""
    return _count(
        conn, f"DELETE FROM _honker_results WHERE expires_at IS NOT NULL AND expires_at <= {NOW}"
    )


# -- locks and rate limits -------------------------------------------------------------


def lock_acquire(conn: Conn, name: str, owner: str, ttl_s: int) -> bool:
    """Take the named lock for ``owner`` (replacing a stale holder); True iff ours.

    One upsert: a new row, or a takeover of a row whose expiry passed. The conflicting row
    is locked by the upsert, so two acquirers cannot both win.
    """
    row = _one(
        conn,
        f"INSERT INTO _honker_locks (name, owner, expires_at) VALUES (%s, %s, {NOW} + %s) "
        "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, "
        f"expires_at = EXCLUDED.expires_at WHERE _honker_locks.expires_at <= {NOW} "
        "RETURNING owner",
        (name, owner, ttl_s),
    )
    if row is not None:
        return True
    held = _one(conn, "SELECT owner FROM _honker_locks WHERE name = %s", (name,))
    return held is not None and held[0] == owner


def lock_expires_at(conn: Conn, name: str) -> int | None:
    """Expiry (unix s) of the named lock's current row, or None when nobody holds it."""
    row = _one(conn, "SELECT expires_at FROM _honker_locks WHERE name = %s", (name,))
    return None if row is None else int(row[0])


def lock_renew(conn: Conn, name: str, owner: str, ttl_s: int) -> bool:
    """Push the lock's expiry to now + ``ttl_s`` if ``owner`` still has the row."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    return (
        _count(
            conn,
            f"UPDATE _honker_locks SET expires_at = {NOW} + %s WHERE name = %s AND owner = %s",
            (ttl_s, name, owner),
        )
        > 0
    )


def lock_release(conn: Conn, name: str, owner: str) -> bool:
    """Delete the lock row only if ``owner`` holds it."""
    return (
        _count(conn, "DELETE FROM _honker_locks WHERE name = %s AND owner = %s", (name, owner)) > 0
    )


def rate_limit_try(conn: Conn, name: str, limit: int, per: int) -> bool:
    """Count one call in the current fixed window if fewer than ``limit`` were counted."""
    if limit <= 0 or per <= 0:
        raise ValueError("limit and per must be positive")
    return (
        _count(
            conn,
            "INSERT INTO _honker_rate_limits (name, window_start, count) "
            f"VALUES (%(n)s, ({NOW} / %(per)s) * %(per)s, 1) "
            "ON CONFLICT (name, window_start) DO UPDATE "
            "SET count = _honker_rate_limits.count + 1 WHERE _honker_rate_limits.count < %(lim)s",
            {"n": name, "per": per, "lim": limit},
        )
        > 0
    )


def rate_limit_sweep(conn: Conn, older_than_s: int) -> int:
    """Delete windows that started more than ``older_than_s`` seconds ago."""
    return _count(
        conn, f"DELETE FROM _honker_rate_limits WHERE window_start < {NOW} - %s", (older_than_s,)
    )


# -- streams ---------------------------------------------------------------------------

# The topic row is upserted (and so row-locked until commit) before the offset is drawn.
_PUBLISH_SQL = (
    "WITH t AS (INSERT INTO _honker_stream_topics (topic) VALUES (%s) "
    "ON CONFLICT (topic) DO UPDATE SET topic = EXCLUDED.topic RETURNING topic) "
    "INSERT INTO _honker_stream (topic, key, payload) SELECT topic, %s, %s FROM t "
    'RETURNING "offset"'
)


def stream_publish(conn: Conn, topic: str, key: str | None, payload: str) -> int:
    """Append one event; returns its (global, monotonic) offset."""
    row = _one(conn, _PUBLISH_SQL, (topic, key, payload))
    return int(row[0]) if row else 0


def stream_read_since(conn: Conn, topic: str, offset: int, limit: int) -> list[Row]:
    """Events of ``topic`` after ``offset`` in order, at most ``limit``; rows per STREAM_COLUMNS."""
    columns = '"offset", topic, key, payload, created_at'
    return _after(conn, columns, "_honker_stream", "topic", '"offset"', (topic, offset, limit))


def stream_read_events(conn: Conn, topic: str, offset: int, limit: int) -> list[Row]:
    """``(offset, key, payload, created_at)`` rows of ``topic`` after ``offset``."""
    columns = '"offset", key, payload, created_at'
    return _after(conn, columns, "_honker_stream", "topic", '"offset"', (topic, offset, limit))


def stream_save_offset(conn: Conn, consumer: str, topic: str, offset: int) -> bool:
    """Raise a consumer's saved offset (never lowers it); True if inserted or advanced."""
    return (
        _count(
            conn,
            'INSERT INTO _honker_stream_consumers (name, topic, "offset") VALUES (%s, %s, %s) '
            'ON CONFLICT (name, topic) DO UPDATE SET "offset" = EXCLUDED."offset" '
            'WHERE EXCLUDED."offset" > _honker_stream_consumers."offset"',
            (consumer, topic, offset),
        )
        > 0
    )


def stream_get_offset(conn: Conn, consumer: str, topic: str) -> int:
    """Saved offset of ``consumer`` on ``topic``, 0 if none."""
    row = _one(
        conn,
        'SELECT "offset" FROM _honker_stream_consumers WHERE name = %s AND topic = %s',
        (consumer, topic),
    )
    return int(row[0]) if row else 0


# -- scheduler -------------------------------------------------------------------------


def server_now(conn: Conn) -> int:
    """The server's clock in unix seconds (what every "now" here is)."""
    row = _one(conn, f"SELECT {NOW}")
    return int(row[0]) if row else 0


sqlite_now = server_now  # the name honker._ops uses for "the database's clock"


def _schedule_tz(conn: Conn, name: str) -> str | None:
    row = _one(conn, "SELECT tz FROM _honker_scheduler_tz WHERE name = %s", (name,))
    return None if row is None else str(row[0])


def _set_schedule_tz(conn: Conn, name: str, tz: str | None) -> None:
    if tz is None:
        conn.execute("DELETE FROM _honker_scheduler_tz WHERE name = %s", (name,))
    else:
        conn.execute(
            "INSERT INTO _honker_scheduler_tz (name, tz) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET tz = EXCLUDED.tz",
            (name, tz),
        )


def scheduler_register(
    conn: Conn,
    name: str,
    queue: str,
    cron_expr: str,
    payload: str,
    priority: int,
    expires_s: int | None,
    max_attempts: int = 3,
    tz: str | None = None,
    set_tz: bool = False,
) -> None:
    """Upsert a schedule; ``next_fire_at`` = next boundary after now; ``enabled`` is kept."""
    zone_name = tz if set_tz else _schedule_tz(conn, name)
    next_fire = _next_after(cron_expr, server_now(conn), zone_name)
    conn.execute(
        "INSERT INTO _honker_scheduler_tasks (name, queue, cron_expr, payload, priority, "
        "expires_s, next_fire_at, max_attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET queue = EXCLUDED.queue, "
        "cron_expr = EXCLUDED.cron_expr, payload = EXCLUDED.payload, "
        "priority = EXCLUDED.priority, expires_s = EXCLUDED.expires_s, "
        "next_fire_at = EXCLUDED.next_fire_at, max_attempts = EXCLUDED.max_attempts",
        (name, queue, cron_expr, payload, priority, expires_s, next_fire, max(1, max_attempts)),
    )
    if set_tz:
        _set_schedule_tz(conn, name, tz)


def scheduler_unregister(conn: Conn, name: str) -> int:
    """Delete a schedule; returns rows deleted (0 or 1)."""
    conn.execute("DELETE FROM _honker_scheduler_tz WHERE name = %s", (name,))
    return _count(conn, "DELETE FROM _honker_scheduler_tasks WHERE name = %s", (name,))


def scheduler_set_enabled(conn: Conn, name: str, enabled: bool) -> bool:
    """Pause (False) or resume (True); True only when the state changed."""
    new, old = (1, 0) if enabled else (0, 1)
    return (
        _count(
            conn,
            "UPDATE _honker_scheduler_tasks SET enabled = %s WHERE name = %s AND enabled = %s",
            (new, name, old),
        )
        > 0
    )


def scheduler_soonest(conn: Conn) -> int:
    """Smallest ``next_fire_at`` among enabled schedules, 0 when there are none."""
    row = _one(conn, "SELECT MIN(next_fire_at) FROM _honker_scheduler_tasks WHERE enabled = 1")
    return int(row[0] or 0) if row else 0


def scheduler_count(conn: Conn) -> int:
    """Number of schedules (enabled or not)."""
    row = _one(conn, "SELECT COUNT(*) FROM _honker_scheduler_tasks")
    return int(row[0]) if row else 0


def scheduler_list(conn: Conn, with_tz: bool = False) -> list[dict[str, Any]]:
    """Every schedule ordered by name; ``enabled`` as bool (``tz`` too, with ``with_tz``)."""
    columns = ", ".join(f"t.{c}" for c in SCHEDULE_COLUMNS)
    rows = _all(
        conn,
        f"SELECT {columns}, z.tz FROM _honker_scheduler_tasks t "
        "LEFT JOIN _honker_scheduler_tz z ON z.name = t.name ORDER BY t.name",
    )
    out = []
    for row in rows:
        item = dict(zip(SCHEDULE_COLUMNS, row[:-1], strict=True))
        item["enabled"] = bool(item["enabled"])
        if item["max_attempts"] is None:
            item["max_attempts"] = 3
        if with_tz and row[-1] is not None:
            item["tz"] = row[-1]
        out.append(item)
    return out


def scheduler_tick(conn: Conn, now_unix: int) -> list[dict[str, Any]]:
    """Fire every enabled schedule whose ``next_fire_at <= now_unix``; returns fire records.

    As on SQLite: one job per due boundary (at most ``TICK_CAP`` per schedule per tick),
    ``next_fire_at`` advanced by an update conditional on its old value, so two would-be
    leaders never both fire one boundary; the due rows are also row-locked (``FOR UPDATE``)
    so a concurrent tick waits instead of planning the same fires. Schedules are fired in
    name order (PostgreSQL has no rowid).
    """
    due = _all(
        conn,
        "SELECT t.name, queue, cron_expr, payload, priority, expires_s, next_fire_at, "
        "max_attempts, z.tz FROM _honker_scheduler_tasks t "
        "LEFT JOIN _honker_scheduler_tz z ON z.name = t.name "
        "WHERE enabled = 1 AND next_fire_at <= %s ORDER BY t.name FOR UPDATE OF t",
        (now_unix,),
    )
    fires: list[dict[str, Any]] = []
    for name, queue, expr, payload, priority, expires_s, old_next, max_attempts, tz in due:
        budget = 3 if max_attempts is None else max_attempts
        boundary = old_next
        planned: list[int] = []
        try:
            while boundary <= now_unix:
                if len(planned) >= TICK_CAP:
                    boundary = _next_after(expr, now_unix, tz)
                    break
                planned.append(boundary)
                boundary = _next_after(expr, boundary, tz)
        except ValueError:
            continue
        if not _count(
            conn,
            "UPDATE _honker_scheduler_tasks SET next_fire_at = %s "
            "WHERE name = %s AND next_fire_at = %s AND enabled = 1",
            (boundary, name, old_next),
        ):
            continue
        for fire_at in planned:
            job_id = enqueue(conn, queue, payload, None, None, priority, budget, expires_s)
            fires.append({"name": name, "queue": queue, "fire_at": fire_at, "job_id": job_id})
    return fires


def scheduler_update(
    conn: Conn,
    name: str,
    cron_expr: str | None,
    payload: str | None,
    priority: int | None,
    expires_s: int | None,
    touch_expires: bool,
    max_attempts: int | None = None,
    touch_max_attempts: bool = False,
    tz: str | None = None,
    touch_tz: bool = False,
) -> bool:
    """Change only the given fields of a schedule, all at once; False if unknown or no field."""
    if touch_tz and cron_expr is None:
        row = _one(conn, "SELECT cron_expr FROM _honker_scheduler_tasks WHERE name = %s", (name,))
        if row is None:
            return False
        cron_expr = str(row[0])
    next_fire = None
    if cron_expr is not None:
        zone_name = tz if touch_tz else _schedule_tz(conn, name)
        next_fire = _next_after(cron_expr, server_now(conn), zone_name)
    sets, params = _sqlite_ops._schedule_update_fields(
        "%s",
        cron_expr,
        next_fire,
        payload,
        priority,
        expires_s,
        touch_expires,
        max_attempts,
        touch_max_attempts,
    )
    if not sets:
        return False
    changed = _count(
        conn,
        f"UPDATE _honker_scheduler_tasks SET {', '.join(sets)} WHERE name = %s",
        (*params, name),
    )
    if changed and touch_tz:
        _set_schedule_tz(conn, name, tz)
    return changed > 0


# -- worker composites: group-committed outcomes, claim cycles, batched heartbeats -------

# One finished job (see honker._ops.Outcome): ("done", id, result_json | None, ttl_s),
# ("retry", id, delay_s, error), ("dead", id, None, error), ("release", id, None, None).
Outcome = tuple[str, int, Any, Any]
# (job_id, attempt, worker_id, started_at, ended_at, duration_s, error)
AttemptRow = tuple[int, int, str | None, float | None, float, float | None, str | None]

# Acks of a whole flush, their results and the done counters: one statement. A result is
# written only for a job whose ack matched (the join on ``gone``).
_ACK_WITH_RESULTS = (
    "WITH gone AS (DELETE FROM _honker_live WHERE id = ANY(%(ids)s::bigint[]) "
    "AND worker_id = %(w)s AND state = 'processing' "
    f"AND claim_expires_at >= {NOW} RETURNING id, queue), "
    "res AS (INSERT INTO _honker_results (job_id, value, expires_at) "
    f"SELECT r.id, r.v, CASE WHEN r.ttl > 0 THEN {NOW} + r.ttl END "
    "FROM unnest(%(rid)s::bigint[], %(rv)s::text[], %(rttl)s::bigint[]) AS r(id, v, ttl) "
    "JOIN gone ON gone.id = r.id "
    "ON CONFLICT (job_id) DO UPDATE SET value = EXCLUDED.value, "
    "expires_at = EXCLUDED.expires_at), "
    f"{_stats_cte('gone', 'done')} SELECT id FROM gone"
)


def apply_outcomes(
    conn: Conn,
    worker_id: str,
    outcomes: Sequence[Outcome],
    history: Sequence[AttemptRow | None] | None = None,
) -> list[bool]:
    """Record many finished jobs of ``worker_id`` in the caller's transaction.

    Per outcome, whether it took effect: ``False`` when the claim had lapsed, and then
    nothing is written for that job, not even its result. ``history`` (parallel to
    ``outcomes``) holds each attempt's row for ``_honker_job_attempts``.
    """
    applied = [False] * len(outcomes)
    written: list[str | None] = [None] * len(outcomes)
    done = [i for i, o in enumerate(outcomes) if o[0] == "done"]
    if done:
        with_result = [outcomes[i] for i in done if outcomes[i][2] is not None]
        rows = _all(
            conn,
            _ACK_WITH_RESULTS,
            {
                "ids": [outcomes[i][1] for i in done],
                "w": worker_id,
                "rid": [o[1] for o in with_result],
                "rv": [o[2] for o in with_result],
                "rttl": [int(o[3]) for o in with_result],
            },
        )
        acked = {int(row[0]) for row in rows}
        unique_release(conn, sorted(acked))
        for i in done:
            applied[i] = outcomes[i][1] in acked
            written[i] = "done" if applied[i] else None
    _sqlite_ops._apply_per_job_outcomes(
        sys.modules[__name__], conn, worker_id, outcomes, applied, written
    )
    if history:
        attempts_record(conn, history, written)
    return applied


def claim_cycle(
    conn: Conn,
    queue: str,
    worker_id: str,
    n: int,
    visibility_s: int,
    outcomes: Sequence[Outcome],
    history: Sequence[AttemptRow | None] | None = None,
) -> tuple[list[bool], list[Row], int]:
    """One worker round trip: record ``outcomes``, then claim up to ``n`` jobs.

    Returns ``(applied per outcome, claimed rows, next claim time or 0)``.
    """
    applied = apply_outcomes(conn, worker_id, outcomes, history) if outcomes else []
    rows = claim_batch(conn, queue, worker_id, n, visibility_s) if n > 0 else []
    next_at = queue_next_claim_at(conn, queue) if len(rows) < n else 0
    return applied, rows, next_at


def heartbeat_many(conn: Conn, worker_id: str, job_ids: Sequence[int], extend_s: int) -> list[int]:
    """Extend every still-valid claim of ``worker_id`` among ``job_ids``; returns those ids."""
    rows = _all(
        conn,
        f"UPDATE _honker_live SET claim_expires_at = {NOW} + %s "
        "WHERE id = ANY(%s::bigint[]) AND worker_id = %s "
        f"AND state = 'processing' AND claim_expires_at >= {NOW} RETURNING id",
        (extend_s, list(job_ids), worker_id),
    )
    return [int(row[0]) for row in rows]


def release_claims(conn: Conn, worker_id: str, job_ids: Sequence[int]) -> int:
    """:func:`release_claim` for many jobs; returns how many were handed back."""
    return sum(release_claim(conn, job_id, worker_id) for job_id in job_ids)


def tick_as_leader(
    conn: Conn, lock_name: str, owner: str, ttl_s: int, now_unix: int
) -> tuple[bool, int]:
    """The scheduler leader's step: renew the lock and fire due schedules, one transaction.

    Fires what is due by the **server's** clock (``now_unix``, the caller's clock, is
    ignored), so leaders on hosts with skewed clocks fire at the same moments.
    """
    if not lock_renew(conn, lock_name, owner, ttl_s):
        return False, 0
    scheduler_tick(conn, server_now(conn))
    return True, scheduler_soonest(conn)


# -- inspection and operator actions (dashboard, CLI) ---------------------------------

_LIVE_DETAIL = (
    f"SELECT id, queue, payload, CASE WHEN state = 'pending' AND run_at > {NOW} "
    "THEN 'delayed' ELSE state END AS state, priority, run_at, worker_id, claim_expires_at, "
    "attempts, max_attempts, created_at, expires_at, "
    "(SELECT error FROM _honker_job_errors WHERE job_id = _honker_live.id) AS last_error, "
    "NULL::bigint AS died_at FROM _honker_live"
)
_DEAD_DETAIL = (
    "SELECT id, queue, payload, 'dead' AS state, priority, run_at, NULL::text AS worker_id, "
    "NULL::bigint AS claim_expires_at, attempts, max_attempts, created_at, "
    "NULL::bigint AS expires_at, last_error, died_at FROM _honker_dead"
)


def queue_names(conn: Conn) -> list[str]:
    """Every queue name that has live or dead jobs or recent outcome counters."""
    rows = _all(
        conn,
        "SELECT DISTINCT queue FROM _honker_live UNION SELECT DISTINCT queue FROM _honker_dead "
        "UNION SELECT DISTINCT queue FROM _honker_stats "
        "UNION SELECT DISTINCT queue FROM _honker_stats_cancelled "
        "UNION SELECT queue FROM _honker_paused ORDER BY 1",
    )
    return [r[0] for r in rows]


def queue_stats(conn: Conn, queue: str) -> dict[str, int | None]:
    """Counts by state, age of the oldest due job and outcomes in the last minute."""
    row = _one(
        conn,
        "SELECT "
        f" count(*) FILTER (WHERE state = 'pending' AND run_at <= {NOW}"
        f"     AND (expires_at IS NULL OR expires_at > {NOW})),"
        f" count(*) FILTER (WHERE state = 'pending' AND run_at > {NOW}),"
        f" count(*) FILTER (WHERE state = 'pending' AND expires_at IS NOT NULL"
        f"     AND expires_at <= {NOW}),"
        " count(*) FILTER (WHERE state = 'processing'),"
        f" MIN(run_at) FILTER (WHERE state = 'pending' AND run_at <= {NOW}),"
        f" {NOW}, "
        " (SELECT count(*) FROM _honker_dead WHERE queue = %(q)s),"
        " (SELECT COALESCE(SUM(done), 0) FROM _honker_stats"
        f"   WHERE queue = %(q)s AND bucket > {NOW} - 60),"
        " (SELECT COALESCE(SUM(dead), 0) FROM _honker_stats"
        f"   WHERE queue = %(q)s AND bucket > {NOW} - 60) "
        "FROM _honker_live WHERE queue = %(q)s",
        {"q": queue},
    )
    assert row is not None
    oldest, now = row[4], row[5]
    return {
        "pending": int(row[0]),
        "delayed": int(row[1]),
        "expired": int(row[2]),
        "processing": int(row[3]),
        "dead": int(row[6]),
        "oldest_pending_age_s": None if oldest is None else max(0, now - oldest),
        "done_last_minute": int(row[7]),
        "dead_last_minute": int(row[8]),
        "paused": queue_is_paused(conn, queue),
        "cancelled_last_minute": cancelled_since(conn, queue, 60),
    }


def _jobs_query(queue: str, state: str | None, search: str | None) -> tuple[str, list[Any]]:
    if state is not None and state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}; expected one of {JOB_STATES}")
    match = ""
    per_branch: list[Any] = [queue]
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        match = " AND payload LIKE %s ESCAPE '\\'"
        per_branch.append(f"%{escaped}%")
    if state == "dead":
        return f"{_DEAD_DETAIL} WHERE queue = %s{match}", per_branch
    if state in ("pending", "delayed", "processing"):
        cond = {
            "pending": f"state = 'pending' AND run_at <= {NOW}",
            "delayed": f"state = 'pending' AND run_at > {NOW}",
            "processing": "state = 'processing'",
        }[state]
        return f"{_LIVE_DETAIL} WHERE queue = %s AND {cond}{match}", per_branch
    sql = f"{_LIVE_DETAIL} WHERE queue = %s{match} UNION ALL {_DEAD_DETAIL} WHERE queue = %s{match}"
    return sql, per_branch * 2


def list_jobs(
    conn: Conn, queue: str, state: str | None, search: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Jobs of ``queue`` (live and dead), newest first, filtered by state and payload text."""
    sql, params = _jobs_query(queue, state, search)
    rows = _all(
        conn,
        f"SELECT * FROM ({sql}) j ORDER BY id DESC LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    return [dict(zip(JOB_DETAIL_COLUMNS, r, strict=True)) for r in rows]


def count_jobs(conn: Conn, queue: str, state: str | None, search: str | None) -> int:
    """How many jobs :func:`list_jobs` would return without paging."""
    sql, params = _jobs_query(queue, state, search)
    row = _one(conn, f"SELECT COUNT(*) FROM ({sql}) j", params)
    return int(row[0]) if row else 0


def find_job(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """A job by id, live or dead, with every column (``state`` may be 'delayed'/'dead')."""
    for sql in (_LIVE_DETAIL, _DEAD_DETAIL):
        row = _one(conn, f"{sql} WHERE id = %s", (job_id,))
        if row is not None:
            return dict(zip(JOB_DETAIL_COLUMNS, row, strict=True))
    return None


def dead_requeue(conn: Conn, queue: str, job_id: int | None) -> int:
    """Move dead jobs of ``queue`` (one, or all) back to pending with a fresh attempt budget."""
    where = "queue = %s" if job_id is None else "queue = %s AND id = %s"
    params: tuple[Any, ...] = (queue,) if job_id is None else (queue, job_id)
    rows = _all(
        conn,
        f"WITH back AS (DELETE FROM _honker_dead WHERE {where} "
        "RETURNING id, queue, payload, priority, max_attempts, created_at) "
        "INSERT INTO _honker_live (id, queue, payload, priority, max_attempts, created_at) "
        "SELECT * FROM back RETURNING id",
        params,
    )
    return len(rows)


def dead_discard(conn: Conn, queue: str, job_id: int | None) -> int:
    """Delete dead jobs of ``queue`` (one, or all)."""
    if job_id is None:
        return _count(conn, "DELETE FROM _honker_dead WHERE queue = %s", (queue,))
    return _count(conn, "DELETE FROM _honker_dead WHERE queue = %s AND id = %s", (queue, job_id))


def streams_info(conn: Conn) -> list[dict[str, Any]]:
    """Each topic with its event count and last offset, and each consumer's offset and lag."""
    topics = _all(
        conn,
        'SELECT topic, COUNT(*), MAX("offset") FROM _honker_stream GROUP BY topic ORDER BY topic',
    )
    consumers = _all(
        conn,
        'SELECT c.topic, c.name, c."offset", (SELECT COUNT(*) FROM _honker_stream s '
        'WHERE s.topic = c.topic AND s."offset" > c."offset") '
        "FROM _honker_stream_consumers c ORDER BY c.topic, c.name",
    )
    by_topic: dict[str, dict[str, Any]] = {
        t: {"topic": t, "events": n, "last_offset": last, "consumers": []} for t, n, last in topics
    }
    for topic, name, offset, lag in consumers:
        info = by_topic.setdefault(
            topic, {"topic": topic, "events": 0, "last_offset": 0, "consumers": []}
        )
        info["consumers"].append({"name": name, "offset": offset, "lag": int(lag)})
    return [by_topic[t] for t in sorted(by_topic)]


def locks_info(conn: Conn) -> list[dict[str, Any]]:
    """Named locks currently held (unexpired), with owner and seconds left."""
    rows = _all(
        conn,
        f"SELECT name, owner, expires_at, expires_at - {NOW} FROM _honker_locks "
        f"WHERE expires_at > {NOW} ORDER BY name",
    )
    return [{"name": n, "owner": o, "expires_at": e, "ttl_left_s": left} for n, o, e, left in rows]


def notifications_count(conn: Conn) -> int:
    """Rows in ``_honker_notifications`` (never pruned automatically)."""
    row = _one(conn, "SELECT COUNT(*) FROM _honker_notifications")
    return int(row[0]) if row else 0


# -- live workers, metrics, tracing (extra tables) ------------------------------------

_WORKER_ALIVE = f"last_seen >= {NOW} - GREATEST(3 * heartbeat_s, 2)"


def worker_register(
    conn: Conn,
    worker_id: str,
    host: str,
    pid: int,
    queues_json: str,
    concurrency: int,
    heartbeat_s: float,
) -> None:
    """Insert (or replace) this worker's row, and prune rows of long-gone workers."""
    conn.execute(
        "INSERT INTO _honker_workers (id, host, pid, queues, concurrency, heartbeat_s, "
        f"started_at, last_seen, running) VALUES (%s, %s, %s, %s, %s, %s, {NOW}, {NOW}, '[]') "
        "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, "
        "queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, "
        "heartbeat_s = EXCLUDED.heartbeat_s, started_at = EXCLUDED.started_at, "
        "last_seen = EXCLUDED.last_seen, running = EXCLUDED.running",
        (worker_id, host, pid, queues_json, concurrency, heartbeat_s),
    )
    worker_prune(conn)


def worker_heartbeat(conn: Conn, worker_id: str, running_json: str) -> bool:
    """Refresh ``last_seen`` and the running job ids; False if the row was pruned."""
    sql = f"UPDATE _honker_workers SET last_seen = {NOW}, running = %s WHERE id = %s"
    return _count(conn, sql, (running_json, worker_id)) > 0


def worker_deregister(conn: Conn, worker_id: str) -> bool:
    """Delete this worker's row (clean stop)."""
    return _count(conn, "DELETE FROM _honker_workers WHERE id = %s", (worker_id,)) > 0


def worker_prune(conn: Conn, older_than_s: int = WORKER_PRUNE_AFTER_S) -> int:
    """Delete rows of workers not seen for ``older_than_s`` seconds."""
    sql = f"DELETE FROM _honker_workers WHERE last_seen < {NOW} - %s"
    return _count(conn, sql, (older_than_s,))


def workers_list(conn: Conn, include_gone: bool) -> list[Row]:
    """Worker rows per WORKER_COLUMNS (``alive`` computed), oldest first."""
    where = "" if include_gone else f" WHERE {_WORKER_ALIVE}"
    return _all(
        conn,
        "SELECT id, host, pid, queues, concurrency, heartbeat_s, started_at, last_seen, "
        f"running, ({_WORKER_ALIVE})::int FROM _honker_workers{where} ORDER BY started_at, id",
    )


def workers_alive_count(conn: Conn) -> int:
    """Number of live workers (heartbeat seen within three intervals)."""
    row = _one(conn, f"SELECT COUNT(*) FROM _honker_workers WHERE {_WORKER_ALIVE}")
    return int(row[0]) if row else 0


def job_trace_save(conn: Conn, job_id: int, carrier_json: str) -> None:
    """Store the trace context of a job (same transaction as its enqueue)."""
    conn.execute(
        "INSERT INTO _honker_job_trace (job_id, carrier) VALUES (%s, %s) "
        "ON CONFLICT (job_id) DO UPDATE SET carrier = EXCLUDED.carrier",
        (job_id, carrier_json),
    )


def job_trace_get(conn: Conn, job_id: int) -> str | None:
    """The stored trace context of a job, or None."""
    row = _one(conn, "SELECT carrier FROM _honker_job_trace WHERE job_id = %s", (job_id,))
    return None if row is None else str(row[0])


def job_trace_prune(conn: Conn, after_id: int, limit: int) -> tuple[int, int]:
    """Delete trace rows of jobs that left ``_honker_live`` among the next ``limit`` rows
    after ``after_id``; ``(deleted, next_after_id)`` (0 once the end is reached)."""
    rows = _all(
        conn,
        "SELECT job_id, EXISTS (SELECT 1 FROM _honker_live WHERE id = job_id) "
        "FROM _honker_job_trace WHERE job_id > %s ORDER BY job_id LIMIT %s",
        (after_id, limit),
    )
    gone = [int(r[0]) for r in rows if not r[1]]
    if gone:
        conn.execute("DELETE FROM _honker_job_trace WHERE job_id = ANY(%s::bigint[])", (gone,))
    return len(gone), (int(rows[-1][0]) if len(rows) == limit else 0)


METRICS_PENDING_SQL = (
    f"SELECT queue, count(*) FILTER (WHERE run_at <= {NOW}), "
    f"count(*) FILTER (WHERE run_at > {NOW}), MIN(run_at), {NOW} "
    "FROM _honker_live WHERE state = 'pending' GROUP BY queue"
)
METRICS_PROCESSING_SQL = (
    "SELECT queue, COUNT(*) FROM _honker_live WHERE state = 'processing' GROUP BY queue"
)
METRICS_DEAD_SQL = "SELECT queue, COUNT(*) FROM _honker_dead GROUP BY queue"
METRICS_OUTCOMES_SQL = (
    "SELECT queue, "
    + ", ".join(
        f"COALESCE(SUM({col}) FILTER (WHERE bucket > {NOW} - {window}), 0)"
        for window in (60, 3600, 86400)
        for col in ("done", "dead")
    )
    + f" FROM _honker_stats WHERE bucket > {NOW} - 86400 GROUP BY queue"
)
METRICS_CONSUMERS_SQL = (
    'SELECT c.topic, c.name, c."offset", (SELECT COUNT(*) FROM _honker_stream s '
    'WHERE s.topic = c.topic AND s."offset" > c."offset") '
    "FROM _honker_stream_consumers c ORDER BY c.topic, c.name"
)
METRICS_QUERIES = (
    METRICS_PENDING_SQL,
    METRICS_PROCESSING_SQL,
    METRICS_DEAD_SQL,
    METRICS_OUTCOMES_SQL,
    METRICS_CONSUMERS_SQL,
)


def metrics_snapshot(conn: Conn) -> dict[str, list[Row]]:
    """Everything one metrics scrape needs, in one REPEATABLE READ transaction."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return {
            "pending": _all(conn, METRICS_PENDING_SQL),
            "processing": _all(conn, METRICS_PROCESSING_SQL),
            "dead": _all(conn, METRICS_DEAD_SQL),
            "outcomes": _all(conn, METRICS_OUTCOMES_SQL),
            "consumers": _all(conn, METRICS_CONSUMERS_SQL),
            "workers": [(workers_alive_count(conn),)],
        }
    finally:
        conn.execute("COMMIT")


# -- unique jobs, paused queues (extra tables _honker_unique, _honker_paused) ---------

_UNIQUE_LOOKUP = (
    f"SELECT job_id, COALESCE(until > {NOW}, false), "
    "EXISTS (SELECT 1 FROM _honker_live WHERE _honker_live.id = _honker_unique.job_id) "
    "FROM _honker_unique WHERE queue = %s AND key = %s"
)


def enqueue_unique(
    conn: Conn,
    queue: str,
    payload: str,
    run_at: int | None,
    delay: int | None,
    priority: int,
    max_attempts: int,
    expires: int | None,
    unique_key: str,
    unique_for_s: int | None,
) -> tuple[int, bool]:
    """:func:`enqueue` unless ``unique_key`` is held on ``queue``; ``(job id, inserted)``.

    The key row is locked first (an upsert placeholder, then ``FOR UPDATE``), so concurrent
    enqueues of one key from any host make exactly one job.
    """
    conn.execute(
        "INSERT INTO _honker_unique (queue, key, job_id, window_s, until) "
        "VALUES (%s, %s, 0, 0, 0) ON CONFLICT (queue, key) DO NOTHING",
        (queue, unique_key),
    )
    row = _one(conn, _UNIQUE_LOOKUP + " FOR UPDATE", (queue, unique_key))
    if row is not None and (row[1] or row[2]):
        return int(row[0]), False
    job_id = enqueue(conn, queue, payload, run_at, delay, priority, max_attempts, expires)
    conn.execute(
        "UPDATE _honker_unique SET job_id = %s, window_s = %s, until = NULL "
        "WHERE queue = %s AND key = %s",
        (job_id, unique_for_s or 0, queue, unique_key),
    )
    conn.execute(
        "DELETE FROM _honker_unique WHERE (queue, key) IN (SELECT queue, key FROM "
        f"_honker_unique WHERE until <= {NOW} ORDER BY until LIMIT 16 FOR UPDATE SKIP LOCKED)"
    )
    return job_id, True


def unique_release(conn: Conn, job_ids: Sequence[int]) -> None:
    """Release the unique keys held by jobs that just left ``_honker_live`` (a key with a
    window stays held by the same job id until ``window_s`` from now)."""
    if not job_ids or _one(conn, "SELECT 1 FROM _honker_unique LIMIT 1") is None:
        return
    conn.execute(
        "WITH gone AS (DELETE FROM _honker_unique WHERE job_id = ANY(%s::bigint[]) "
        "RETURNING queue, key, job_id, window_s) "
        "INSERT INTO _honker_unique (queue, key, job_id, window_s, until) "
        f"SELECT queue, key, job_id, window_s, {NOW} + window_s FROM gone WHERE window_s > 0",
        (list(job_ids),),
    )


def unique_holder(conn: Conn, queue: str, unique_key: str) -> int | None:
    """Id of the job holding ``unique_key`` on ``queue`` (live or in its window), or None."""
    row = _one(conn, _UNIQUE_LOOKUP, (queue, unique_key))
    return int(row[0]) if row is not None and (row[1] or row[2]) else None


def queue_pause(conn: Conn, queue: str) -> bool:
    """Mark ``queue`` paused; True if it was not paused already."""
    sql = "INSERT INTO _honker_paused (queue) VALUES (%s) ON CONFLICT (queue) DO NOTHING"
    return _count(conn, sql, (queue,)) > 0


def queue_resume(conn: Conn, queue: str) -> bool:
    """Unmark ``queue`` paused; True if it was paused."""
    return _count(conn, "DELETE FROM _honker_paused WHERE queue = %s", (queue,)) > 0


def queue_is_paused(conn: Conn, queue: str) -> bool:
    """Whether ``queue`` is paused (one primary-key lookup)."""
    return _one(conn, "SELECT 1 FROM _honker_paused WHERE queue = %s", (queue,)) is not None


def paused_queues(conn: Conn) -> list[str]:
    """Names of the paused queues, sorted."""
    return [str(r[0]) for r in _all(conn, "SELECT queue FROM _honker_paused ORDER BY queue")]


# -- jobs: cancel, progress, failed results, attempt history, retention -----------------


def attempts_record(
    conn: Conn, history: Sequence[AttemptRow | None], outcomes: Sequence[str | None]
) -> int:
    """Write the attempt rows whose outcome took effect; keep the last ATTEMPTS_KEEP."""
    rows = [
        (*h[:6], outcome, h[6])
        for h, outcome in zip(history, outcomes, strict=False)
        if h is not None and outcome is not None
    ]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO _honker_job_attempts (job_id, attempt, worker_id, started_at, "
            "ended_at, duration_s, outcome, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (job_id, attempt) DO UPDATE SET worker_id = EXCLUDED.worker_id, "
            "started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, "
            "duration_s = EXCLUDED.duration_s, outcome = EXCLUDED.outcome, "
            "error = EXCLUDED.error",
            rows,
        )
        old = [(r[0], r[1] - ATTEMPTS_KEEP) for r in rows if r[1] > ATTEMPTS_KEEP]
        if old:
            cur.executemany(
                "DELETE FROM _honker_job_attempts WHERE job_id = %s AND attempt <= %s", old
            )
    return len(rows)


def attempts_list(conn: Conn, job_id: int) -> list[dict[str, Any]]:
    """The recorded attempts of a job (at most the last 20), oldest first."""
    rows = _all(
        conn,
        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM _honker_job_attempts WHERE job_id = %s "
        "ORDER BY attempt",
        (job_id,),
    )
    return [dict(zip(ATTEMPT_COLUMNS, r, strict=True)) for r in rows]


def job_error_save(conn: Conn, job_id: int, error: str) -> None:
    """Remember the last error of a live job (written on every retry)."""
    conn.execute(
        "INSERT INTO _honker_job_errors (job_id, error) VALUES (%s, %s) ON CONFLICT (job_id) "
        f"DO UPDATE SET error = EXCLUDED.error, at = {NOW}",
        (job_id, error),
    )


def job_error_get(conn: Conn, job_id: int) -> str | None:
    """The last error recorded for a live job, or None."""
    row = _one(conn, "SELECT error FROM _honker_job_errors WHERE job_id = %s", (job_id,))
    return None if row is None else str(row[0])


def cancel_requested(conn: Conn, job_id: int) -> bool:
    """Whether a cancel request waits for ``job_id``'s worker."""
    sql = "SELECT 1 FROM _honker_job_cancel WHERE job_id = %s AND cancelled_at IS NULL"
    return _one(conn, sql, (job_id,)) is not None


def cancel_requests(conn: Conn, job_ids: Sequence[int]) -> list[int]:
    """Which of ``job_ids`` have a cancel request."""
    rows = _all(
        conn,
        "SELECT job_id FROM _honker_job_cancel WHERE job_id = ANY(%s::bigint[]) "
        "AND cancelled_at IS NULL",
        (list(job_ids),),
    )
    return [int(r[0]) for r in rows]


def _mark_cancelled(conn: Conn, job_id: int, queue: str) -> None:
    """Record that a job left ``_honker_live`` by cancellation (and free its unique key)."""
    unique_release(conn, (job_id,))
    conn.execute(
        "INSERT INTO _honker_job_cancel (job_id, queue, cancelled_at) "
        f"VALUES (%s, %s, {NOW}) ON CONFLICT (job_id) DO UPDATE SET cancelled_at = {NOW}",
        (job_id, queue),
    )
    count_cancelled(conn, queue, 1)


def cancel_job(conn: Conn, job_id: int, mode: str = "request") -> str | None:
    """``Queue.cancel``: delete a pending job now, or ask the worker of a processing one.

    Returns "cancelled", "requested" or None, as :func:`honker._ops.cancel_job`.
    """
    if mode not in CANCEL_MODES:
        raise ValueError(f"unknown cancel mode {mode!r}; expected one of {CANCEL_MODES}")
    states = "('pending', 'processing')" if mode == "force" else "('pending')"
    row = _one(
        conn,
        f"DELETE FROM _honker_live WHERE id = %s AND state IN {states} RETURNING queue",
        (job_id,),
    )
    if row is not None:
        _mark_cancelled(conn, job_id, row[0])
        return "cancelled"
    if mode != "request":
        return None
    inserted = _count(
        conn,
        "INSERT INTO _honker_job_cancel (job_id, queue) SELECT id, queue FROM _honker_live "
        "WHERE id = %s AND state = 'processing' ON CONFLICT (job_id) DO NOTHING",
        (job_id,),
    )
    return "requested" if inserted > 0 else None


def job_cancel_finish(conn: Conn, job_id: int, worker_id: str) -> bool:
    """End a held job as cancelled: it leaves ``_honker_live`` and is counted as cancelled."""
    row = _one(
        conn,
        f"DELETE FROM _honker_live WHERE {_HELD} RETURNING queue",
        {"id": job_id, "w": worker_id},
    )
    if row is None:
        return False
    _mark_cancelled(conn, job_id, row[0])
    return True


def count_cancelled(conn: Conn, queue: str, n: int) -> None:
    """Add ``n`` to this queue's cancelled counter for the current 10 s bucket."""
    conn.execute(
        "INSERT INTO _honker_stats_cancelled (queue, bucket, cancelled) "
        f"VALUES (%s, {NOW} / {STATS_BUCKET_S} * {STATS_BUCKET_S}, %s) "
        "ON CONFLICT (queue, bucket) DO UPDATE "
        "SET cancelled = _honker_stats_cancelled.cancelled + EXCLUDED.cancelled",
        (queue, n),
    )


def cancelled_since(conn: Conn, queue: str, seconds: int) -> int:
    """Jobs of ``queue`` that ended cancelled in the last ``seconds`` (10 s buckets)."""
    row = _one(
        conn,
        "SELECT COALESCE(SUM(cancelled), 0) FROM _honker_stats_cancelled "
        f"WHERE queue = %s AND bucket > {NOW} - %s",
        (queue, seconds),
    )
    return int(row[0]) if row else 0


def progress_save_many(conn: Conn, rows: Sequence[tuple[int, float | None, str | None]]) -> None:
    """Upsert the latest ``(job_id, fraction, message)`` of many jobs."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO _honker_job_progress (job_id, fraction, message) VALUES (%s, %s, %s) "
            "ON CONFLICT (job_id) DO UPDATE SET fraction = EXCLUDED.fraction, "
            f"message = EXCLUDED.message, updated_at = {NOW}",
            list(rows),
        )


def get_job_extended(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """:func:`get_job` plus ``last_error`` and ``progress`` (``Queue.get_job``)."""
    job = get_job(conn, job_id)
    if job is not None:
        job["last_error"] = job_error_get(conn, job_id)
        job["progress"] = progress_get(conn, job_id)
    return job


def progress_get(conn: Conn, job_id: int) -> dict[str, Any] | None:
    """``{"fraction", "message", "updated_at"}`` of a job's last progress, or None."""
    row = _one(
        conn,
        "SELECT fraction, message, updated_at FROM _honker_job_progress WHERE job_id = %s",
        (job_id,),
    )
    if row is None:
        return None
    return {"fraction": row[0], "message": row[1], "updated_at": row[2]}


def job_outcome(conn: Conn, job_id: int) -> tuple[str, Any]:
    """Where a task's job stands, for ``TaskResult``, in one snapshot (see honker._ops)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        text = result_get(conn, job_id)
        if text is not None:
            return "done", text
        row = _one(conn, "SELECT state FROM _honker_live WHERE id = %s", (job_id,))
        if row is not None:
            return ("running" if row[0] == "processing" else "pending"), None
        row = _one(
            conn, "SELECT attempts, last_error, payload FROM _honker_dead WHERE id = %s", (job_id,)
        )
        if row is not None:
            return "failed", (int(row[0]), row[1], row[2])
        row = _one(
            conn,
            "SELECT 1 FROM _honker_job_cancel WHERE job_id = %s AND cancelled_at IS NOT NULL",
            (job_id,),
        )
        return ("cancelled" if row is not None else "gone"), None
    finally:
        conn.execute("COMMIT")


def _retention_where(target: str, older_than_s: int | None) -> tuple[str, list[Any]]:
    if target not in RETENTION_TARGETS:
        raise ValueError(f"unknown retention target {target!r}")
    _, _, age, extra = RETENTION_TARGETS[target]
    clauses: list[str] = []
    params: list[Any] = []
    if older_than_s is not None:
        clauses.append(f"{age} < {NOW} - %s")
        params.append(int(older_than_s))
    if target == "results":  # expired results always go, as the reference's sweep does
        expired = f"(expires_at IS NOT NULL AND expires_at <= {NOW})"
        clauses = [f"({clauses[0]} OR {expired})"] if clauses else [expired]
    if extra:
        clauses.append(extra)
    return " AND ".join(clauses) or "false", params


_MONOTONE_TARGETS = ("notifications", "stream_events")


def retention_candidates(
    conn: Conn, target: str, older_than_s: int | None, limit: int
) -> list[Any]:
    """Up to ``limit`` keys of rows ``target`` would delete (a read, off the writer)."""
    table, key, age, _ = RETENTION_TARGETS.get(target, ("", "", "", ""))
    where, params = _retention_where(target, older_than_s)
    if target in _MONOTONE_TARGETS:
        if older_than_s is None:
            return []
        rows = _all(
            conn,
            f"SELECT {key}, {age} < {NOW} - %s FROM {table} ORDER BY {key} LIMIT %s",
            (int(older_than_s), limit),
        )
        keys = []
        for row in rows:
            if not row[1]:
                break
            keys.append(row[0])
        return keys
    rows = _all(
        conn, f"SELECT DISTINCT {key} FROM {table} WHERE {where} LIMIT %s", (*params, limit)
    )
    return [r[0] for r in rows]


def retention_delete(conn: Conn, target: str, keys: Sequence[Any], older_than_s: int | None) -> int:
    """Delete the rows of ``keys`` that still match ``target``'s condition; returns how many."""
    table, key, _, _ = RETENTION_TARGETS.get(target, ("", "", "", ""))
    where, params = _retention_where(target, older_than_s)
    if not keys:
        return 0
    cast = "text" if isinstance(keys[0], str) else "bigint"
    return _count(
        conn,
        f"DELETE FROM {table} WHERE ({key}) = ANY(%s::{cast}[]) AND {where}",
        (list(keys), *params),
    )


# -- dashboard reads ---------------------------------------------------------------------

# The task name of a job's envelope, NULL for any other payload. Only payloads that start
# like an envelope are parsed (PostgreSQL 15 has no json_valid(): a payload that starts so
# but is not JSON would fail the read; honker itself never writes one).
_TASK_OF_PAYLOAD = (
    "CASE WHEN starts_with(payload, '{\"__honker_task__\"') "
    "AND json_typeof(payload::json -> '__honker_task__' -> 'task') = 'string' "
    "THEN payload::json -> '__honker_task__' ->> 'task' END"
)


def _jobs_of_task(
    queue: str, state: str | None, search: str | None, task: str | None
) -> tuple[str, list[Any]]:
    sql, params = _jobs_query(queue, state, search)
    if task is None:
        return f"SELECT * FROM ({sql}) j", params
    return f"SELECT * FROM ({sql}) j WHERE {_TASK_OF_PAYLOAD} = %s", [*params, task]


def dashboard_list_jobs(
    conn: Conn,
    queue: str,
    state: str | None,
    search: str | None,
    task: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """:func:`list_jobs` that also filters by task name (``task=None``: every job)."""
    sql, params = _jobs_of_task(queue, state, search, task)
    rows = _all(conn, f"{sql} ORDER BY id DESC LIMIT %s OFFSET %s", (*params, limit, offset))
    return [dict(zip(JOB_DETAIL_COLUMNS, r, strict=True)) for r in rows]


def dashboard_count_jobs(
    conn: Conn, queue: str, state: str | None, search: str | None, task: str | None
) -> int:
    """How many jobs :func:`dashboard_list_jobs` would return without paging."""
    sql, params = _jobs_of_task(queue, state, search, task)
    row = _one(conn, f"SELECT COUNT(*) FROM ({sql}) c", params)
    return int(row[0]) if row else 0


def dashboard_task_names(conn: Conn, queue: str) -> list[str]:
    """The distinct task names among ``queue``'s newest live and dead jobs, sorted."""
    live, dead = (
        f"SELECT {_TASK_OF_PAYLOAD} AS task FROM (SELECT payload FROM {table} "
        f"WHERE queue = %s ORDER BY id DESC LIMIT {TASK_NAMES_SCAN}) p"
        for table in ("_honker_live", "_honker_dead")
    )
    rows = _all(
        conn,
        f"SELECT DISTINCT task FROM ({live} UNION ALL {dead}) t "
        "WHERE task IS NOT NULL ORDER BY task LIMIT %s",
        (queue, queue, TASK_NAMES_LIMIT),
    )
    return [str(r[0]) for r in rows]


def queue_throughput(conn: Conn, queue: str, minutes: int) -> dict[str, Any]:
    """Jobs of ``queue`` done and dead-lettered per minute over the last ``minutes`` minutes."""
    now = server_now(conn)
    first = (now // 60 - (minutes - 1)) * 60
    rows = _all(
        conn,
        "SELECT bucket / 60 * 60, SUM(done), SUM(dead) FROM _honker_stats "
        "WHERE queue = %s AND bucket >= %s GROUP BY 1",
        (queue, first),
    )
    counts = {int(m): (int(done), int(dead)) for m, done, dead in rows}
    series = []
    for i in range(minutes):
        start = first + 60 * i
        done, dead = counts.get(start, (0, 0))
        series.append((start, done, dead))
    return {"now": now, "minutes": series}
