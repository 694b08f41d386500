"""Every SQL statement honker runs against its tables, as functions taking a connection.

This is the one place where jobs, dead letters, notifications, streams, locks, rate limits,
results and schedules are read and written. The Python API and the ``honker_*`` SQL
functions (``_sqlfunctions``) are two thin surfaces over these functions, so both always
have the same effect on disk.

Conventions:
* Functions never BEGIN/COMMIT; callers run them inside a transaction (the writer's
  ``BEGIN IMMEDIATE`` for writes). Multi-statement operations are therefore atomic.
* "Now" is always SQLite's ``unixepoch()`` evaluated inside the statement, never Python's
  clock, so every process and binding agrees on claimability, expiry and windows.
* Every move to ``_honker_dead`` is one ``DELETE … RETURNING`` followed by the matching
  ``INSERT`` in the same transaction: a job is never in both tables, nor in neither.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import tzinfo
from typing import Any

Row = tuple[Any, ...]

# -- notifications -------------------------------------------------------------------------


def notify(conn: sqlite3.Connection, channel: str, payload: str) -> int:
    """Insert one notification row and return its id (visible to others at commit)."""
    cur = conn.execute(
        "INSERT INTO _honker_notifications (channel, payload) VALUES (?, ?)", (channel, payload)
    )
    return int(cur.lastrowid or 0)


def notifications_max_id(conn: sqlite3.Connection, channel: str) -> int:
    """Highest notification id on ``channel`` (0 if none): where a new listener starts."""
    row = conn.execute(
        "SELECT MAX(id) FROM _honker_notifications WHERE channel = ?", (channel,)
    ).fetchone()
    return int(row[0] or 0)


def notifications_since(
    conn: sqlite3.Connection, channel: str, after_id: int, limit: int
) -> list[Row]:
    """``(id, channel, payload, created_at)`` rows of ``channel`` with ``id > after_id``."""
    return conn.execute(
        "SELECT id, channel, payload, created_at FROM _honker_notifications "
        "WHERE channel = ? AND id > ? ORDER BY id LIMIT ?",
        (channel, after_id, limit),
    ).fetchall()


def prune_notifications(
    conn: sqlite3.Connection, older_than_s: int | None, max_keep: int | None
) -> int:
    """Delete notifications older than ``older_than_s`` or beyond the newest ``max_keep``."""
    clauses = []
    params: list[int] = []
    if older_than_s is not None:
        clauses.append("created_at < unixepoch() - ?")
        params.append(older_than_s)
    if max_keep is not None:
        clauses.append(
            "id <= (SELECT id FROM _honker_notifications ORDER BY id DESC LIMIT 1 OFFSET ?)"
        )
        params.append(max_keep)
    if not clauses:
        return 0
    cur = conn.execute("DELETE FROM _honker_notifications WHERE " + " OR ".join(clauses), params)
    return cur.rowcount


# -- jobs: enqueue and claim -----------------------------------------------------------

_ENQUEUE_SQL = (
    "INSERT INTO _honker_live (queue, payload, run_at, priority, max_attempts, expires_at) "
    "VALUES (?1, ?2, CASE WHEN ?4 IS NOT NULL THEN unixepoch() + ?4 "
    "WHEN ?3 IS NOT NULL THEN ?3 ELSE unixepoch() END, ?5, ?6, "
    "CASE WHEN ?7 IS NULL THEN NULL ELSE unixepoch() + ?7 END)"
)


# run_at and created_at default to unixepoch(), expires_at to NULL.
_ENQUEUE_NOW_SQL = (
    "INSERT INTO _honker_live (queue, payload, priority, max_attempts) VALUES (?, ?, ?, ?)"
)


def enqueue(
    conn: sqlite3.Connection,
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
    if run_at is None and delay is None and expires is None:
        # Due now, never expires: the columns' defaults say exactly that.
        cur = conn.execute(_ENQUEUE_NOW_SQL, (queue, payload, priority, max_attempts))
    else:
        cur = conn.execute(
            _ENQUEUE_SQL, (queue, payload, run_at, delay, priority, max_attempts, expires)
        )
    return int(cur.lastrowid or 0)


def enqueue_many(
    conn: sqlite3.Connection,
    queue: str,
    payloads: Iterable[str],
    priority: int,
    max_attempts: int,
) -> int:
    """Insert many immediately claimable jobs; returns how many were inserted."""
    cur = conn.executemany(
        _ENQUEUE_SQL,
        ((queue, p, None, None, priority, max_attempts, None) for p in payloads),
    )
    return cur.rowcount


def enqueue_batch(
    conn: sqlite3.Connection,
    queue: str,
    payloads: Sequence[str],
    run_at: int | None,
    delay: int | None,
    priority: int,
    max_attempts: int,
    expires: int | None,
) -> list[int]:
    """Insert one pending job per payload (same options for all); returns their ids.

    One ``executemany``. The ids are consecutive: the rows are inserted by one statement
    sequence on the single writer, into an AUTOINCREMENT key.
    """
    if not payloads:
        return []
    if run_at is None and delay is None and expires is None:
        conn.executemany(_ENQUEUE_NOW_SQL, [(queue, p, priority, max_attempts) for p in payloads])
    else:
        conn.executemany(
            _ENQUEUE_SQL,
            [(queue, p, run_at, delay, priority, max_attempts, expires) for p in payloads],
        )
    last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
    return list(range(last - len(payloads) + 1, last + 1))


# Columns a claim returns, in this order (see claim_batch).
CLAIM_COLUMNS = (
    "id",
    "queue",
    "payload",
    "worker_id",
    "attempts",
    "claim_expires_at",
    "priority",
    "run_at",
    "max_attempts",
    "created_at",
)


def _blob(column: str) -> str:
    # Payloads are read as bytes: another binding may have stored text that is not valid
    # UTF-8, which sqlite3 cannot return as str (see claim_batch).
    return "CAST(payload AS BLOB)" if column == "payload" else column


# The candidate walk goes through the partial claim index in claim order. Rows whose
# attempt budget is spent are *not* filtered here: filtering them would leave them at the
# head of the index to be walked over by every later claim. Instead the few that reach the
# head are claimed and then moved to _honker_dead in the same transaction (see below).
_CLAIM_SQL = (
    "UPDATE _honker_live SET state = 'processing', worker_id = ?2, "
    "claim_expires_at = unixepoch() + ?4, attempts = attempts + 1 "
    "WHERE id IN (SELECT id FROM _honker_live INDEXED BY _honker_live_claim "
    "WHERE queue = ?1 AND state IN ('pending', 'processing') "
    "AND ((state = 'pending' AND run_at <= unixepoch()) "
    "OR (state = 'processing' AND claim_expires_at < unixepoch())) "
    "AND (expires_at IS NULL OR expires_at > unixepoch()) "
    "AND NOT EXISTS (SELECT 1 FROM _honker_paused WHERE queue = ?1) "
    "ORDER BY priority DESC, run_at, id LIMIT ?3) "
    "RETURNING " + ", ".join(_blob(c) for c in CLAIM_COLUMNS)
)

_DEAD_INSERT = (
    "INSERT INTO _honker_dead (id, queue, payload, priority, run_at, max_attempts, attempts, "
    "last_error, created_at) VALUES (?, ?, CAST(? AS TEXT), ?, ?, ?, ?, ?, ?)"
)
_DEAD_RETURNING = (
    "RETURNING id, queue, CAST(payload AS BLOB), priority, run_at, max_attempts, attempts, "
    "created_at"
)

MAX_ATTEMPTS_EXCEEDED = "max attempts exceeded"
BAD_UTF8_ERROR = "payload is not valid UTF-8"


def _claim_key(row: Row) -> tuple[int, int, int]:
    return (-row[6], row[7], row[0])


def claim_batch(
    conn: sqlite3.Connection, queue: str, worker_id: str, n: int, visibility_s: int
) -> list[Row]:
    """Claim up to ``n`` claimable jobs of ``queue`` in claim order; rows per CLAIM_COLUMNS.

    Claimable: pending and due, or processing with an expired claim; not expired; within
    its attempt budget; its queue not paused (``_honker_paused``: nothing is claimed). A
    candidate whose budget is already spent is moved to ``_honker_dead`` ('max attempts
    exceeded') instead of being handed out, and so is one whose payload is not valid UTF-8
    (written by another binding; 'payload is not valid UTF-8: …'); either way its slot is
    refilled, so such rows never stall the queue. Cost is one indexed ``UPDATE …
    RETURNING`` and does not grow with the number of pending rows.
    """
    claimed: list[Row] = []
    want = n
    while want > 0:
        rows = conn.execute(_CLAIM_SQL, (queue, worker_id, want, visibility_s)).fetchall()
        if not rows:
            break
        good: list[Row] = []
        exhausted: list[int] = []
        for r in rows:
            if r[4] > r[8]:
                exhausted.append(r[0])
                continue
            try:
                text = r[2].decode()
            except UnicodeDecodeError as exc:
                _move_ids_to_dead(conn, [r[0]], f"{BAD_UTF8_ERROR}: {exc}", attempts_delta=-1)
                continue
            good.append((r[0], r[1], text, *r[3:]))
        claimed.extend(good)
        if len(good) == len(rows):
            break
        if exhausted:
            _move_ids_to_dead(conn, exhausted, MAX_ATTEMPTS_EXCEEDED, attempts_delta=-1)
        want -= len(good)
    if len(claimed) > 1:
        claimed.sort(key=_claim_key)
    return claimed


def _move_ids_to_dead(
    conn: sqlite3.Connection, ids: Sequence[int], error: str, attempts_delta: int = 0
) -> int:
    moved = []
    for job_id in ids:
        row = conn.execute(
            f"DELETE FROM _honker_live WHERE id = ? {_DEAD_RETURNING}", (job_id,)
        ).fetchone()
        if row is None:
            continue
        conn.execute(_DEAD_INSERT, (*row[:6], row[6] + attempts_delta, error, row[7]))
        moved.append(row)
    _count_rows(conn, moved, "dead", queue_column=1)
    unique_release(conn, [row[0] for row in moved])
    return len(moved)


def _move_to_dead(conn: sqlite3.Connection, where: str, params: Sequence[Any], error: str) -> int:
    rows = conn.execute(
        f"DELETE FROM _honker_live WHERE {where} {_DEAD_RETURNING}", params
    ).fetchall()
    if rows:
        conn.executemany(_DEAD_INSERT, [(*r[:7], error, r[7]) for r in rows])
        _count_rows(conn, rows, "dead", queue_column=1)
        unique_release(conn, [r[0] for r in rows])
    return len(rows)


# -- outcome counters (extra table _honker_stats; not part of the shared contract) ----

STATS_BUCKET_S = 10
STATS_KEEP_S = 86400
_stats_pruned_at = 0.0


def count_outcome(conn: sqlite3.Connection, queue: str, outcome: str, n: int) -> None:
    """Add ``n`` to this queue's ``done`` or ``dead`` counter for the current 10 s bucket.

    Feeds "jobs done in the last minute" on the dashboard. Counting happens in the same
    transaction as the ack or dead-letter move, so a rolled-back ack is never counted.
    """
    global _stats_pruned_at
    column = "done" if outcome == "done" else "dead"
    conn.execute(
        f"INSERT INTO _honker_stats (queue, bucket, {column}) "
        f"VALUES (?, unixepoch() / {STATS_BUCKET_S} * {STATS_BUCKET_S}, ?) "
        f"ON CONFLICT(queue, bucket) DO UPDATE SET {column} = {column} + excluded.{column}",
        (queue, n),
    )
    now = time.monotonic()
    if now - _stats_pruned_at > 600:
        _stats_pruned_at = now
        conn.execute("DELETE FROM _honker_stats WHERE bucket < unixepoch() - ?", (STATS_KEEP_S,))


def _count_rows(
    conn: sqlite3.Connection, rows: Sequence[Row], outcome: str, queue_column: int = 0
) -> None:
    if not rows:
        return
    if len(rows) == 1:
        count_outcome(conn, rows[0][queue_column], outcome, 1)
        return
    per_queue: dict[str, int] = {}
    for row in rows:
        name = row[queue_column]
        per_queue[name] = per_queue.get(name, 0) + 1
    for name, n in per_queue.items():
        count_outcome(conn, name, outcome, n)


# -- jobs: outcomes --------------------------------------------------------------------

_HELD = "id = ? AND worker_id = ? AND state = 'processing' AND claim_expires_at >= unixepoch()"


def ack(conn: sqlite3.Connection, job_id: int, worker_id: str) -> bool:
    """Delete the job iff ``worker_id`` still holds a valid claim on it."""
    row = conn.execute(
        f"DELETE FROM _honker_live WHERE {_HELD} RETURNING queue", (job_id, worker_id)
    ).fetchone()
    if row is None:
        return False
    count_outcome(conn, row[0], "done", 1)
    unique_release(conn, (job_id,))
    return True


def ack_batch(conn: sqlite3.Connection, ids_json: str, worker_id: str) -> int:
    """Delete every job in the JSON id array still validly held by ``worker_id``."""
    rows = conn.execute(
        "DELETE FROM _honker_live WHERE id IN (SELECT value FROM json_each(?)) "
        "AND worker_id = ? AND state = 'processing' AND claim_expires_at >= unixepoch() "
        "RETURNING queue, id",
        (ids_json, worker_id),
    ).fetchall()
    _count_rows(conn, rows, "done")
    unique_release(conn, [r[1] for r in rows])
    return len(rows)


def retry(conn: sqlite3.Connection, job_id: int, worker_id: str, delay_s: int, error: str) -> bool:
    """Put a held job back to pending after ``delay_s``, or dead-letter it if its budget is spent.

    Returns False (and changes nothing) when the claim is no longer valid.
    """
    return _retry_outcome(conn, job_id, worker_id, delay_s, error) is not None


def _retry_outcome(
    conn: sqlite3.Connection, job_id: int, worker_id: str, delay_s: int, error: str
) -> str | None:
    """:func:`retry`, telling what happened: "retried", "dead" or None (claim lapsed).

    A retried job's error is kept in ``_honker_job_errors`` (its last error while live).
    """
    cur = conn.execute(
        "UPDATE _honker_live SET state = 'pending', run_at = unixepoch() + ?, "
        f"worker_id = NULL, claim_expires_at = NULL WHERE {_HELD} AND attempts < max_attempts",
        (delay_s, job_id, worker_id),
    )
    if cur.rowcount:
        job_error_save(conn, job_id, error)
        return "retried"
    return "dead" if _move_to_dead(conn, _HELD, (job_id, worker_id), error) > 0 else None


def fail(conn: sqlite3.Connection, job_id: int, worker_id: str, error: str) -> bool:
    """Move a held job to ``_honker_dead`` with ``error``, whatever its attempts."""
    return _move_to_dead(conn, _HELD, (job_id, worker_id), error) > 0


def heartbeat(conn: sqlite3.Connection, job_id: int, worker_id: str, extend_s: int) -> bool:
    """Extend a still-valid claim to now + ``extend_s`` (a late heartbeat revives nothing)."""
    cur = conn.execute(
        f"UPDATE _honker_live SET claim_expires_at = unixepoch() + ? WHERE {_HELD}",
        (extend_s, job_id, worker_id),
    )
    return cur.rowcount > 0


def release_claim(conn: sqlite3.Connection, job_id: int, worker_id: str) -> bool:
    """Hand a held job back untouched: pending, due now, attempt not counted.

    Used by graceful shutdown for jobs that never ran (or were abandoned) so another
    worker can take them at once instead of after the visibility timeout.
    """
    return snooze(conn, job_id, worker_id, 0)


def snooze(conn: sqlite3.Connection, job_id: int, worker_id: str, delay_s: int) -> bool:
    """Put a held job back to pending, due in ``delay_s`` seconds, its attempt given back.

    ``raise honker.Snooze(seconds)`` in a task; :func:`release_claim` with a delay.
    """
    cur = conn.execute(
        "UPDATE _honker_live SET state = 'pending', worker_id = NULL, claim_expires_at = NULL, "
        f"attempts = MAX(attempts - 1, 0), run_at = unixepoch() + ? WHERE {_HELD}",
        (delay_s, job_id, worker_id),
    )
    return cur.rowcount > 0


def cancel(conn: sqlite3.Connection, job_id: int, pending_only: bool = False) -> bool:
    """Delete a pending or processing job whoever holds it (only if pending, on request)."""
    states = "('pending')" if pending_only else "('pending', 'processing')"
    cur = conn.execute(f"DELETE FROM _honker_live WHERE id = ? AND state IN {states}", (job_id,))
    if cur.rowcount:
        unique_release(conn, (job_id,))
    return cur.rowcount > 0


JOB_COLUMNS = (
    "id",
    "queue",
    "payload",
    "state",
    "priority",
    "run_at",
    "worker_id",
    "claim_expires_at",
    "attempts",
    "max_attempts",
    "created_at",
    "expires_at",
)


def get_job(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    """The live row of ``job_id`` as a dict, or None when it is not in ``_honker_live``."""
    row = conn.execute(
        f"SELECT {', '.join(_blob(c) for c in JOB_COLUMNS)} FROM _honker_live WHERE id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return _job_dict(JOB_COLUMNS, row)


def _job_dict(columns: Sequence[str], row: Row) -> dict[str, Any]:
    """A job row (payload read as a BLOB) as a dict whose payload is text; bytes that are
    not valid UTF-8 (another binding's) show as U+FFFD instead of failing the read."""
    job = dict(zip(columns, row, strict=True))
    if isinstance(job["payload"], bytes):
        job["payload"] = job["payload"].decode("utf-8", "replace")
    return job


def sweep_expired(conn: sqlite3.Connection, queue: str) -> int:
    """Move ``queue``'s pending rows whose ``expires_at`` passed to ``_honker_dead``."""
    return _move_to_dead(
        conn,
        "queue = ? AND state = 'pending' AND expires_at IS NOT NULL AND expires_at <= unixepoch()",
        (queue,),
        "expired",
    )


def queue_next_claim_at(conn: sqlite3.Connection, queue: str) -> int:
    """Earliest future moment a claim on ``queue`` could succeed with no new write (0: none).

    The smallest future ``run_at`` of a pending row, or ``claim_expires_at + 1`` of a
    processing row (reclaim needs the claim to be strictly past), among rows that are not
    expired and still have attempts left. Both are walks of a deadline index that stop at
    the first qualifying row. A paused queue has no deadline (0): resuming it is a commit,
    which wakes its workers.
    """
    if queue_is_paused(conn, queue):
        return 0
    row = conn.execute(
        "SELECT MIN(t) FROM ("
        " SELECT * FROM (SELECT run_at AS t FROM _honker_live "
        "  INDEXED BY _honker_live_pending_deadline "
        "  WHERE queue = ?1 AND state = 'pending' AND run_at > unixepoch() "
        "  AND (expires_at IS NULL OR expires_at > unixepoch()) AND attempts < max_attempts "
        "  ORDER BY run_at LIMIT 1)"
        " UNION ALL "
        " SELECT * FROM (SELECT claim_expires_at + 1 AS t FROM _honker_live "
        "  INDEXED BY _honker_live_processing_deadline "
        "  WHERE queue = ?1 AND state = 'processing' AND claim_expires_at >= unixepoch() "
        "  AND (expires_at IS NULL OR expires_at > unixepoch()) AND attempts < max_attempts "
        "  ORDER BY claim_expires_at LIMIT 1))",
        (queue,),
    ).fetchone()
    return int(row[0] or 0)


# -- results ---------------------------------------------------------------------------


_RESULT_UPSERT = (
    "INSERT INTO _honker_results (job_id, value, expires_at) VALUES "
    "(?1, ?2, CASE WHEN ?3 > 0 THEN unixepoch() + ?3 ELSE NULL END) "
    "ON CONFLICT(job_id) DO UPDATE SET value = excluded.value, "
    "expires_at = excluded.expires_at"
)


def result_save(conn: sqlite3.Connection, job_id: int, value: str, ttl_s: int) -> None:
    """Upsert a stored result; ``ttl_s <= 0`` means it never expires."""
    conn.execute(_RESULT_UPSERT, (job_id, value, ttl_s))


def result_get(conn: sqlite3.Connection, job_id: int) -> str | None:
    """The stored result text (``'null'`` is a stored None), or None when absent/expired."""
    row = conn.execute(
        "SELECT value FROM _honker_results WHERE job_id = ? "
        "AND (expires_at IS NULL OR expires_at > unixepoch())",
        (job_id,),
    ).fetchone()
    return None if row is None else row[0]


def result_sweep(conn: sqlite3.Connection) -> int:
    """Delete expired results; returns how many."""
    return conn.execute(
        "DELETE FROM _honker_results WHERE expires_at IS NOT NULL AND expires_at <= unixepoch()"
    ).rowcount


# -- locks and rate limits -------------------------------------------------------------


def lock_acquire(conn: sqlite3.Connection, name: str, owner: str, ttl_s: int) -> bool:
    """Take the named lock for ``owner`` (after clearing a stale holder); True iff ours."""
    conn.execute("DELETE FROM _honker_locks WHERE name = ? AND expires_at <= unixepoch()", (name,))
    conn.execute(
        "INSERT INTO _honker_locks (name, owner, expires_at) VALUES (?, ?, unixepoch() + ?) "
        "ON CONFLICT(name) DO NOTHING",
        (name, owner, ttl_s),
    )
    row = conn.execute("SELECT owner FROM _honker_locks WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] == owner


def lock_expires_at(conn: sqlite3.Connection, name: str) -> int | None:
    """Expiry (unix s) of the named lock's current row, or None when nobody holds it."""
    row = conn.execute("SELECT expires_at FROM _honker_locks WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def lock_renew(conn: sqlite3.Connection, name: str, owner: str, ttl_s: int) -> bool:
    """Push the lock's expiry to now + ``ttl_s`` if ``owner`` still has the row."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    cur = conn.execute(
        "UPDATE _honker_locks SET expires_at = unixepoch() + ? WHERE name = ? AND owner = ?",
        (ttl_s, name, owner),
    )
    return cur.rowcount > 0


def lock_release(conn: sqlite3.Connection, name: str, owner: str) -> bool:
    """Delete the lock row only if ``owner`` holds it."""
    cur = conn.execute("DELETE FROM _honker_locks WHERE name = ? AND owner = ?", (name, owner))
    return cur.rowcount > 0


def rate_limit_try(conn: sqlite3.Connection, name: str, limit: int, per: int) -> bool:
    """Count one call in the current fixed window if fewer than ``limit`` were counted."""
    if limit <= 0 or per <= 0:
        raise ValueError("limit and per must be positive")
    cur = conn.execute(
        "INSERT INTO _honker_rate_limits (name, window_start, count) "
        "VALUES (?1, (unixepoch() / ?3) * ?3, 1) "
        "ON CONFLICT(name, window_start) DO UPDATE SET count = count + 1 WHERE count < ?2",
        (name, limit, per),
    )
    return cur.rowcount > 0


def rate_limit_sweep(conn: sqlite3.Connection, older_than_s: int) -> int:
    """Delete windows that started more than ``older_than_s`` seconds ago."""
    return conn.execute(
        "DELETE FROM _honker_rate_limits WHERE window_start < unixepoch() - ?", (older_than_s,)
    ).rowcount


# -- streams ---------------------------------------------------------------------------


def stream_publish(conn: sqlite3.Connection, topic: str, key: str | None, payload: str) -> int:
    """Append one event; returns its (global, monotonic) offset."""
    cur = conn.execute(
        "INSERT INTO _honker_stream (topic, key, payload) VALUES (?, ?, ?)", (topic, key, payload)
    )
    return int(cur.lastrowid or 0)


STREAM_COLUMNS = ("offset", "topic", "key", "payload", "created_at")


def stream_read_since(conn: sqlite3.Connection, topic: str, offset: int, limit: int) -> list[Row]:
    """Events of ``topic`` after ``offset`` in order, at most ``limit``; rows per STREAM_COLUMNS."""
    return conn.execute(
        'SELECT "offset", topic, key, payload, created_at FROM _honker_stream '
        'WHERE topic = ? AND "offset" > ? ORDER BY "offset" LIMIT ?',
        (topic, offset, limit),
    ).fetchall()


def stream_read_events(conn: sqlite3.Connection, topic: str, offset: int, limit: int) -> list[Row]:
    """Like :func:`stream_read_since` without the (known) topic: ``(offset, key, payload,
    created_at)`` rows, for the subscriber's replay loop."""
    return conn.execute(
        'SELECT "offset", key, payload, created_at FROM _honker_stream '
        'WHERE topic = ? AND "offset" > ? ORDER BY "offset" LIMIT ?',
        (topic, offset, limit),
    ).fetchall()


def stream_save_offset(conn: sqlite3.Connection, consumer: str, topic: str, offset: int) -> bool:
    """Raise a consumer's saved offset (never lowers it); True if inserted or advanced."""
    cur = conn.execute(
        'INSERT INTO _honker_stream_consumers (name, topic, "offset") VALUES (?, ?, ?) '
        'ON CONFLICT(name, topic) DO UPDATE SET "offset" = excluded."offset" '
        'WHERE excluded."offset" > _honker_stream_consumers."offset"',
        (consumer, topic, offset),
    )
    return cur.rowcount > 0


def stream_get_offset(conn: sqlite3.Connection, consumer: str, topic: str) -> int:
    """Saved offset of ``consumer`` on ``topic``, 0 if none."""
    row = conn.execute(
        'SELECT "offset" FROM _honker_stream_consumers WHERE name = ? AND topic = ?',
        (consumer, topic),
    ).fetchone()
    return int(row[0]) if row else 0


# -- scheduler -------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "name",
    "queue",
    "cron_expr",
    "payload",
    "priority",
    "expires_s",
    "next_fire_at",
    "enabled",
    "max_attempts",
)
TICK_CAP = 64


def sqlite_now(conn: sqlite3.Connection) -> int:
    """SQLite's ``unixepoch()`` on this connection."""
    return int(conn.execute("SELECT unixepoch()").fetchone()[0])


@functools.lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The ``zoneinfo`` time zone called ``name`` (``ValueError`` if unknown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _next_after(expr: str, from_unix: int, tz: str | None = None) -> int:
    from .cron import next_after_unix

    return next_after_unix(expr, from_unix, None if tz is None else zone(tz))


def _schedule_tz(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT tz FROM _honker_scheduler_tz WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _set_schedule_tz(conn: sqlite3.Connection, name: str, tz: str | None) -> None:
    if tz is None:
        conn.execute("DELETE FROM _honker_scheduler_tz WHERE name = ?", (name,))
    else:
        conn.execute(
            "INSERT INTO _honker_scheduler_tz (name, tz) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET tz = excluded.tz",
            (name, tz),
        )


def scheduler_register(
    conn: sqlite3.Connection,
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
    """Upsert a schedule; ``next_fire_at`` = next boundary after now; ``enabled`` is kept.

    ``tz`` (with ``set_tz``) evaluates cron fields in that IANA time zone instead of the
    process's local one; it lives in the extra table ``_honker_scheduler_tz``. Without
    ``set_tz`` (the SQL function) an existing time zone of the schedule is kept.
    """
    zone_name = tz if set_tz else _schedule_tz(conn, name)
    next_fire = _next_after(cron_expr, sqlite_now(conn), zone_name)
    conn.execute(
        "INSERT INTO _honker_scheduler_tasks (name, queue, cron_expr, payload, priority, "
        "expires_s, next_fire_at, max_attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET queue = excluded.queue, "
        "cron_expr = excluded.cron_expr, payload = excluded.payload, "
        "priority = excluded.priority, expires_s = excluded.expires_s, "
        "next_fire_at = excluded.next_fire_at, max_attempts = excluded.max_attempts",
        (name, queue, cron_expr, payload, priority, expires_s, next_fire, max(1, max_attempts)),
    )
    if set_tz:
        _set_schedule_tz(conn, name, tz)


def scheduler_unregister(conn: sqlite3.Connection, name: str) -> int:
    """Delete a schedule; returns rows deleted (0 or 1)."""
    conn.execute("DELETE FROM _honker_scheduler_tz WHERE name = ?", (name,))
    return conn.execute("DELETE FROM _honker_scheduler_tasks WHERE name = ?", (name,)).rowcount


def scheduler_set_enabled(conn: sqlite3.Connection, name: str, enabled: bool) -> bool:
    """Pause (False) or resume (True); True only when the state changed."""
    new, old = (1, 0) if enabled else (0, 1)
    cur = conn.execute(
        "UPDATE _honker_scheduler_tasks SET enabled = ? WHERE name = ? AND enabled = ?",
        (new, name, old),
    )
    return cur.rowcount > 0


def scheduler_soonest(conn: sqlite3.Connection) -> int:
    """Smallest ``next_fire_at`` among enabled schedules, 0 when there are none."""
    row = conn.execute(
        "SELECT MIN(next_fire_at) FROM _honker_scheduler_tasks WHERE enabled = 1"
    ).fetchone()
    return int(row[0] or 0)


def scheduler_count(conn: sqlite3.Connection) -> int:
    """Number of schedules (enabled or not)."""
    return int(conn.execute("SELECT COUNT(*) FROM _honker_scheduler_tasks").fetchone()[0])


def scheduler_list(conn: sqlite3.Connection, with_tz: bool = False) -> list[dict[str, Any]]:
    """Every schedule ordered by name; ``enabled`` as bool, NULL ``max_attempts`` read as 3.

    With ``with_tz`` a schedule that has its own time zone also gets a ``tz`` key.
    """
    columns = ", ".join(f"t.{c}" for c in SCHEDULE_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns}, z.tz FROM _honker_scheduler_tasks t "
        "LEFT JOIN _honker_scheduler_tz z ON z.name = t.name ORDER BY t.name"
    ).fetchall()
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


def scheduler_tick(conn: sqlite3.Connection, now_unix: int) -> list[dict[str, Any]]:
    """Fire every enabled schedule whose ``next_fire_at <= now_unix``; returns fire records.

    Each due boundary enqueues one job and advances ``next_fire_at`` to the next boundary
    after it, in this transaction, with the update conditional on the old value (so two
    would-be leaders can never both fire one boundary). At most ``TICK_CAP`` fires per
    schedule per tick; older missed boundaries beyond that are skipped. A row whose
    expression cannot be parsed (written by some other tool) is left alone. Schedules are
    processed in table (rowid) order, as the reference does, so a tick by either
    implementation assigns the same job ids.
    """
    due = conn.execute(
        "SELECT t.name, queue, cron_expr, payload, priority, expires_s, next_fire_at, "
        "max_attempts, z.tz FROM _honker_scheduler_tasks t "
        "LEFT JOIN _honker_scheduler_tz z ON z.name = t.name "
        "WHERE enabled = 1 AND next_fire_at <= ? ORDER BY t.rowid",
        (now_unix,),
    ).fetchall()
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
        cur = conn.execute(
            "UPDATE _honker_scheduler_tasks SET next_fire_at = ? "
            "WHERE name = ? AND next_fire_at = ? AND enabled = 1",
            (boundary, name, old_next),
        )
        if cur.rowcount != 1:
            continue
        for fire_at in planned:
            job_id = enqueue(conn, queue, payload, None, None, priority, budget, expires_s)
            fires.append({"name": name, "queue": queue, "fire_at": fire_at, "job_id": job_id})
    return fires


def _schedule_update_fields(
    mark: str,
    cron_expr: str | None,
    next_fire: int | None,
    payload: str | None,
    priority: int | None,
    expires_s: int | None,
    touch_expires: bool,
    max_attempts: int | None,
    touch_max_attempts: bool,
) -> tuple[list[str], list[Any]]:
    """The ``SET`` assignments and parameters of :func:`scheduler_update` (every engine).

    ``mark`` is the engine's placeholder (``?`` or ``%s``).
    """
    fields: list[tuple[str, Any]] = []
    if cron_expr is not None:
        fields += [("cron_expr", cron_expr), ("next_fire_at", next_fire)]
    if payload is not None:
        fields.append(("payload", payload))
    if priority is not None:
        fields.append(("priority", priority))
    if touch_expires:
        fields.append(("expires_s", expires_s))
    if touch_max_attempts:
        fields.append(("max_attempts", 3 if max_attempts is None else max(1, max_attempts)))
    return [f"{column} = {mark}" for column, _ in fields], [value for _, value in fields]


def scheduler_update(
    conn: sqlite3.Connection,
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
    """Change only the given fields of a schedule, all at once; False if unknown or no field.

    A new expression (or time zone) is validated first and recomputes ``next_fire_at``
    from now.
    """
    if touch_tz and cron_expr is None:
        row = conn.execute(
            "SELECT cron_expr FROM _honker_scheduler_tasks WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return False
        cron_expr = str(row[0])
    next_fire = None
    if cron_expr is not None:
        zone_name = tz if touch_tz else _schedule_tz(conn, name)
        next_fire = _next_after(cron_expr, sqlite_now(conn), zone_name)
    sets, params = _schedule_update_fields(
        "?",
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
    cur = conn.execute(
        f"UPDATE _honker_scheduler_tasks SET {', '.join(sets)} WHERE name = ?", (*params, name)
    )
    if cur.rowcount and touch_tz:
        _set_schedule_tz(conn, name, tz)
    return cur.rowcount > 0


# -- worker composites: group-committed outcomes, claim cycles, batched heartbeats -------

# One finished job, as the worker hands it to :func:`apply_outcomes`:
#   ("done", job_id, result_json | None, result_ttl_s)   ack; store the result if given
#   ("retry", job_id, delay_s, error)                   pending again (dead when spent)
#   ("dead", job_id, None, error)                       dead-letter at once
#   ("release", job_id, None, None)                     hand back untouched (shutdown)
#   ("snooze", job_id, delay_s, None)                   pending after delay_s, attempt given back
#   ("cancelled", job_id, None, None)                   ended by a cancel request
Outcome = tuple[str, int, Any, Any]


def apply_outcomes(
    conn: sqlite3.Connection,
    worker_id: str,
    outcomes: Sequence[Outcome],
    history: Sequence[AttemptRow | None] | None = None,
) -> list[bool]:
    """Record many finished jobs of ``worker_id`` in the caller's transaction.

    Returns, per outcome, whether it took effect: ``False`` when the worker's claim had
    lapsed (another worker may hold the job), and then *nothing* is written for that job,
    not even its result. Acks are one ``DELETE … RETURNING`` for the whole batch and the
    done counter is one UPSERT per queue, so a flush costs a handful of statements however
    many jobs it carries.

    ``history`` (parallel to ``outcomes``) holds each attempt's row for
    ``_honker_job_attempts``; the rows of outcomes that took effect are written with one
    ``executemany`` (see :func:`attempts_record`).
    """
    applied = [False] * len(outcomes)
    written: list[str | None] = [None] * len(outcomes)
    done = [i for i, o in enumerate(outcomes) if o[0] == "done"]
    if done:
        ids = json.dumps([outcomes[i][1] for i in done])
        rows = conn.execute(
            "DELETE FROM _honker_live WHERE id IN (SELECT value FROM json_each(?)) "
            "AND worker_id = ? AND state = 'processing' AND claim_expires_at >= unixepoch() "
            "RETURNING id, queue",
            (ids, worker_id),
        ).fetchall()
        acked = {row[0] for row in rows}
        results = []
        for i in done:
            _, job_id, text, ttl_s = outcomes[i]
            if job_id in acked:
                applied[i] = True
                written[i] = "done"
                if text is not None:
                    results.append((job_id, text, ttl_s))
        if results:
            conn.executemany(_RESULT_UPSERT, results)
        _count_rows(conn, [(row[1],) for row in rows], "done")
        unique_release(conn, [row[0] for row in rows])
    _apply_per_job_outcomes(sys.modules[__name__], conn, worker_id, outcomes, applied, written)
    if history:
        attempts_record(conn, history, written)
    return applied


def _apply_per_job_outcomes(
    ops: Any,
    conn: Any,
    worker_id: str,
    outcomes: Sequence[Outcome],
    applied: list[bool],
    written: list[str | None],
) -> None:
    """The per-job part of ``apply_outcomes`` (everything but the batched acks).

    Written once for every engine: ``ops`` is the engine's ops module (this one, or
    ``honker.postgres._ops``), whose functions of the same names do the SQL. Fills
    ``applied`` (the outcome took effect) and ``written`` (what the history records).
    """
    for i, (kind, job_id, arg, error) in enumerate(outcomes):
        if kind == "retry":
            if ops.cancel_requested(conn, job_id):  # a retry of a job asked to stop: stop
                ended = ops.job_cancel_finish(conn, job_id, worker_id)
                written[i] = "cancelled" if ended else None
            else:
                written[i] = ops._retry_outcome(conn, job_id, worker_id, int(arg), str(error))
            applied[i] = written[i] is not None
        elif kind == "dead":
            applied[i] = ops.fail(conn, job_id, worker_id, str(error))
            written[i] = "dead" if applied[i] else None
        elif kind == "release":
            applied[i] = ops.release_claim(conn, job_id, worker_id)
        elif kind == "snooze":
            applied[i] = ops.snooze(conn, job_id, worker_id, int(arg))
            written[i] = "snoozed" if applied[i] else None
        elif kind == "cancelled":
            applied[i] = ops.job_cancel_finish(conn, job_id, worker_id)
            written[i] = "cancelled" if applied[i] else None


def claim_cycle(
    conn: sqlite3.Connection,
    queue: str,
    worker_id: str,
    n: int,
    visibility_s: int,
    outcomes: Sequence[Outcome],
    history: Sequence[AttemptRow | None] | None = None,
) -> tuple[list[bool], list[Row], int]:
    """One worker round trip: record ``outcomes``, then claim up to ``n`` jobs.

    Returns ``(applied per outcome, claimed rows, next claim time)``; the next claim time
    (see :func:`queue_next_claim_at`) is read only when fewer than ``n`` jobs were claimed
    (0 otherwise), so an idle worker learns its next deadline in the same transaction.
    """
    applied = apply_outcomes(conn, worker_id, outcomes, history) if outcomes else []
    rows = claim_batch(conn, queue, worker_id, n, visibility_s) if n > 0 else []
    next_at = queue_next_claim_at(conn, queue) if len(rows) < n else 0
    return applied, rows, next_at


def heartbeat_many(
    conn: sqlite3.Connection, worker_id: str, job_ids: Sequence[int], extend_s: int
) -> list[int]:
    """Extend every still-valid claim of ``worker_id`` among ``job_ids``; returns those ids."""
    rows = conn.execute(
        "UPDATE _honker_live SET claim_expires_at = unixepoch() + ? "
        "WHERE id IN (SELECT value FROM json_each(?)) AND worker_id = ? "
        "AND state = 'processing' AND claim_expires_at >= unixepoch() RETURNING id",
        (extend_s, json.dumps(list(job_ids)), worker_id),
    ).fetchall()
    return [int(row[0]) for row in rows]


def release_claims(conn: sqlite3.Connection, worker_id: str, job_ids: Sequence[int]) -> int:
    """:func:`release_claim` for many jobs; returns how many were handed back."""
    return sum(release_claim(conn, job_id, worker_id) for job_id in job_ids)


def tick_as_leader(
    conn: sqlite3.Connection, lock_name: str, owner: str, ttl_s: int, now_unix: int
) -> tuple[bool, int]:
    """The scheduler leader's step: renew the lock and fire due schedules, in one transaction.

    Returns ``(still leader, soonest next fire)``; nothing fires when the lock is not held.
    """
    if not lock_renew(conn, lock_name, owner, ttl_s):
        return False, 0
    scheduler_tick(conn, now_unix)
    return True, scheduler_soonest(conn)


# -- inspection and operator actions (dashboard, CLI) ---------------------------------

JOB_DETAIL_COLUMNS = (*JOB_COLUMNS, "last_error", "died_at")

_LIVE_DETAIL = (
    "SELECT id, queue, CAST(payload AS BLOB) AS payload, "
    "CASE WHEN state = 'pending' AND run_at > unixepoch() THEN 'delayed' ELSE state END AS state, "
    "priority, run_at, worker_id, claim_expires_at, attempts, max_attempts, created_at, "
    "expires_at, "
    "(SELECT error FROM _honker_job_errors WHERE job_id = _honker_live.id) AS last_error, "
    "NULL AS died_at FROM _honker_live"
)
_DEAD_DETAIL = (
    "SELECT id, queue, CAST(payload AS BLOB) AS payload, 'dead' AS state, priority, run_at, "
    "NULL AS worker_id, NULL AS claim_expires_at, attempts, max_attempts, created_at, "
    "NULL AS expires_at, last_error, died_at FROM _honker_dead"
)

JOB_STATES = ("pending", "delayed", "processing", "dead")


def queue_names(conn: sqlite3.Connection) -> list[str]:
    """Every queue name that has live or dead jobs, recent outcome counters (cancellations
    included) or a pause."""
    rows = conn.execute(
        "SELECT DISTINCT queue FROM _honker_live UNION SELECT DISTINCT queue FROM _honker_dead "
        "UNION SELECT DISTINCT queue FROM _honker_stats "
        "UNION SELECT DISTINCT queue FROM _honker_stats_cancelled "
        "UNION SELECT queue FROM _honker_paused ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def queue_stats(conn: sqlite3.Connection, queue: str) -> dict[str, int | None]:
    """Counts by state, age of the oldest due job, outcomes in the last minute, paused."""
    row = conn.execute(
        "SELECT "
        " SUM(state = 'pending' AND run_at <= unixepoch()"
        "     AND (expires_at IS NULL OR expires_at > unixepoch())),"
        " SUM(state = 'pending' AND run_at > unixepoch()),"
        " SUM(state = 'pending' AND expires_at IS NOT NULL AND expires_at <= unixepoch()),"
        " SUM(state = 'processing'),"
        " MIN(CASE WHEN state = 'pending' AND run_at <= unixepoch() THEN run_at END),"
        " unixepoch() "
        "FROM _honker_live WHERE queue = ?",
        (queue,),
    ).fetchone()
    dead = conn.execute("SELECT COUNT(*) FROM _honker_dead WHERE queue = ?", (queue,)).fetchone()
    recent = conn.execute(
        "SELECT COALESCE(SUM(done), 0), COALESCE(SUM(dead), 0) FROM _honker_stats "
        "WHERE queue = ? AND bucket > unixepoch() - 60",
        (queue,),
    ).fetchone()
    oldest, now = row[4], row[5]
    return {
        "pending": int(row[0] or 0),
        "delayed": int(row[1] or 0),
        "expired": int(row[2] or 0),
        "processing": int(row[3] or 0),
        "dead": int(dead[0]),
        "oldest_pending_age_s": None if oldest is None else max(0, now - oldest),
        "done_last_minute": int(recent[0]),
        "dead_last_minute": int(recent[1]),
        "paused": queue_is_paused(conn, queue),
        "cancelled_last_minute": cancelled_since(conn, queue, 60),
    }


def _jobs_query(queue: str, state: str | None, search: str | None) -> tuple[str, list[Any]]:
    if state is not None and state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}; expected one of {JOB_STATES}")
    params: list[Any] = []
    match = ""
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        match = " AND payload LIKE ? ESCAPE '\\'"
    if state == "dead":
        sql = f"{_DEAD_DETAIL} WHERE queue = ?{match}"
        params = [queue]
    elif state in ("pending", "delayed", "processing"):
        cond = {
            "pending": "state = 'pending' AND run_at <= unixepoch()",
            "delayed": "state = 'pending' AND run_at > unixepoch()",
            "processing": "state = 'processing'",
        }[state]
        sql = f"{_LIVE_DETAIL} WHERE queue = ? AND {cond}{match}"
        params = [queue]
    else:
        sql = (
            f"{_LIVE_DETAIL} WHERE queue = ?{match} UNION ALL {_DEAD_DETAIL} WHERE queue = ?{match}"
        )
        params = [queue, queue]
    if search:
        like = f"%{escaped}%"
        params = [queue, like] if len(params) == 1 else [queue, like, queue, like]
    return sql, params


def list_jobs(
    conn: sqlite3.Connection,
    queue: str,
    state: str | None,
    search: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Jobs of ``queue`` (live and dead), newest first, filtered by state and payload text."""
    sql, params = _jobs_query(queue, state, search)
    rows = conn.execute(
        f"SELECT * FROM ({sql}) ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [_job_dict(JOB_DETAIL_COLUMNS, r) for r in rows]


def count_jobs(conn: sqlite3.Connection, queue: str, state: str | None, search: str | None) -> int:
    """How many jobs :func:`list_jobs` would return without paging."""
    sql, params = _jobs_query(queue, state, search)
    return int(conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])


def find_job(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    """A job by id, live or dead, with every column (``state`` may be 'delayed'/'dead')."""
    for sql in (_LIVE_DETAIL, _DEAD_DETAIL):
        row = conn.execute(f"{sql} WHERE id = ?", (job_id,)).fetchone()
        if row is not None:
            return _job_dict(JOB_DETAIL_COLUMNS, row)
    return None


def dead_requeue(conn: sqlite3.Connection, queue: str, job_id: int | None) -> int:
    """Move dead jobs of ``queue`` (one, or all) back to pending with a fresh attempt budget.

    The job keeps its id, payload, priority and budget; it is due at once.
    """
    where = "queue = ?" if job_id is None else "queue = ? AND id = ?"
    params: tuple[Any, ...] = (queue,) if job_id is None else (queue, job_id)
    rows = conn.execute(
        f"DELETE FROM _honker_dead WHERE {where} "
        "RETURNING id, queue, CAST(payload AS BLOB), priority, max_attempts, created_at",
        params,
    ).fetchall()
    conn.executemany(
        "INSERT INTO _honker_live (id, queue, payload, priority, max_attempts, created_at) "
        "VALUES (?, ?, CAST(? AS TEXT), ?, ?, ?)",
        rows,
    )
    return len(rows)


def dead_discard(conn: sqlite3.Connection, queue: str, job_id: int | None) -> int:
    """Delete dead jobs of ``queue`` (one, or all)."""
    if job_id is None:
        return conn.execute("DELETE FROM _honker_dead WHERE queue = ?", (queue,)).rowcount
    return conn.execute(
        "DELETE FROM _honker_dead WHERE queue = ? AND id = ?", (queue, job_id)
    ).rowcount


def streams_info(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each topic with its event count and last offset, and each consumer's offset and lag."""
    topics = conn.execute(
        'SELECT topic, COUNT(*), MAX("offset") FROM _honker_stream GROUP BY topic ORDER BY topic'
    ).fetchall()
    consumers = conn.execute(
        'SELECT topic, name, "offset" FROM _honker_stream_consumers ORDER BY topic, name'
    ).fetchall()
    by_topic: dict[str, dict[str, Any]] = {
        t: {"topic": t, "events": n, "last_offset": last, "consumers": []} for t, n, last in topics
    }
    for topic, name, offset in consumers:
        info = by_topic.setdefault(
            topic, {"topic": topic, "events": 0, "last_offset": 0, "consumers": []}
        )
        lag = conn.execute(
            'SELECT COUNT(*) FROM _honker_stream WHERE topic = ? AND "offset" > ?',
            (topic, offset),
        ).fetchone()[0]
        info["consumers"].append({"name": name, "offset": offset, "lag": int(lag)})
    return [by_topic[t] for t in sorted(by_topic)]


def locks_info(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Named locks currently held (unexpired), with owner and seconds left."""
    rows = conn.execute(
        "SELECT name, owner, expires_at, expires_at - unixepoch() FROM _honker_locks "
        "WHERE expires_at > unixepoch() ORDER BY name"
    ).fetchall()
    return [{"name": n, "owner": o, "expires_at": e, "ttl_left_s": left} for n, o, e, left in rows]


def notifications_count(conn: sqlite3.Connection) -> int:
    """Rows in ``_honker_notifications`` (never pruned automatically)."""
    return int(conn.execute("SELECT COUNT(*) FROM _honker_notifications").fetchone()[0])


# -- live workers, metrics, tracing (extra tables) --
# _honker_workers (honker.workers), _honker_job_trace (honker.tracing) and the scrape
# queries of honker.metrics. Every scrape query reads through an index (see the test that
# checks EXPLAIN QUERY PLAN): no scan of _honker_live, _honker_dead or _honker_stream.

WORKER_COLUMNS = (
    "id",
    "host",
    "pid",
    "queues",
    "concurrency",
    "heartbeat_s",
    "started_at",
    "last_seen",
    "running",
    "alive",
)
# A worker is gone after three missed heartbeats (and at least 2 s: times are whole seconds).
_WORKER_ALIVE = "last_seen >= unixepoch() - MAX(3 * heartbeat_s, 2)"
# Gone workers' rows are kept this long (to show them as gone), then pruned.
WORKER_PRUNE_AFTER_S = 3600


def worker_register(
    conn: sqlite3.Connection,
    worker_id: str,
    host: str,
    pid: int,
    queues_json: str,
    concurrency: int,
    heartbeat_s: float,
) -> None:
    """Insert (or replace) this worker's row, and prune rows of long-gone workers."""
    conn.execute(
        "INSERT OR REPLACE INTO _honker_workers "
        "(id, host, pid, queues, concurrency, heartbeat_s, started_at, last_seen, running) "
        "VALUES (?, ?, ?, ?, ?, ?, unixepoch(), unixepoch(), '[]')",
        (worker_id, host, pid, queues_json, concurrency, heartbeat_s),
    )
    worker_prune(conn)


def worker_heartbeat(conn: sqlite3.Connection, worker_id: str, running_json: str) -> bool:
    """Refresh ``last_seen`` and the running job ids; False if the row was pruned."""
    cur = conn.execute(
        "UPDATE _honker_workers SET last_seen = unixepoch(), running = ? WHERE id = ?",
        (running_json, worker_id),
    )
    return cur.rowcount > 0


def worker_deregister(conn: sqlite3.Connection, worker_id: str) -> bool:
    """Delete this worker's row (clean stop)."""
    return conn.execute("DELETE FROM _honker_workers WHERE id = ?", (worker_id,)).rowcount > 0


def worker_prune(conn: sqlite3.Connection, older_than_s: int = WORKER_PRUNE_AFTER_S) -> int:
    """Delete rows of workers not seen for ``older_than_s`` seconds."""
    return conn.execute(
        "DELETE FROM _honker_workers WHERE last_seen < unixepoch() - ?", (older_than_s,)
    ).rowcount


def workers_list(conn: sqlite3.Connection, include_gone: bool) -> list[Row]:
    """Worker rows per WORKER_COLUMNS (``alive`` computed), oldest first."""
    where = "" if include_gone else f" WHERE {_WORKER_ALIVE}"
    return conn.execute(
        f"SELECT id, host, pid, queues, concurrency, heartbeat_s, started_at, last_seen, "
        f"running, {_WORKER_ALIVE} FROM _honker_workers{where} ORDER BY started_at, id"
    ).fetchall()


def workers_alive_count(conn: sqlite3.Connection) -> int:
    """Number of live workers (heartbeat seen within three intervals)."""
    return int(
        conn.execute(f"SELECT COUNT(*) FROM _honker_workers WHERE {_WORKER_ALIVE}").fetchone()[0]
    )


def job_trace_save(conn: sqlite3.Connection, job_id: int, carrier_json: str) -> None:
    """Store the trace context of a job (same transaction as its enqueue)."""
    conn.execute(
        "INSERT OR REPLACE INTO _honker_job_trace (job_id, carrier) VALUES (?, ?)",
        (job_id, carrier_json),
    )


def job_trace_get(conn: sqlite3.Connection, job_id: int) -> str | None:
    """The stored trace context of a job, or None."""
    row = conn.execute(
        "SELECT carrier FROM _honker_job_trace WHERE job_id = ?", (job_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def job_trace_prune(conn: sqlite3.Connection, after_id: int, limit: int) -> tuple[int, int]:
    """Delete trace rows of jobs that left ``_honker_live`` (acked, dead, cancelled) among
    the next ``limit`` rows after job id ``after_id``.

    Returns ``(deleted, next_after_id)``; ``next_after_id`` is 0 once the end is reached, so
    repeated calls walk the table in bounded steps and wrap around.
    """
    rows = conn.execute(
        "SELECT job_id, EXISTS (SELECT 1 FROM _honker_live WHERE id = job_id) "
        "FROM _honker_job_trace WHERE job_id > ? ORDER BY job_id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    gone = [r[0] for r in rows if not r[1]]
    if gone:
        conn.executemany("DELETE FROM _honker_job_trace WHERE job_id = ?", [(i,) for i in gone])
    next_after = rows[-1][0] if len(rows) == limit else 0
    return len(gone), next_after


# Scrape queries of honker.metrics: rows (queue, ...) grouped per queue.
METRICS_PENDING_SQL = (
    "SELECT queue, SUM(run_at <= unixepoch()), SUM(run_at > unixepoch()), "
    "MIN(run_at), unixepoch() "
    "FROM _honker_live INDEXED BY _honker_live_pending_deadline "
    "WHERE state = 'pending' GROUP BY queue"
)
METRICS_PROCESSING_SQL = (
    "SELECT queue, COUNT(*) FROM _honker_live INDEXED BY _honker_live_processing_deadline "
    "WHERE state = 'processing' GROUP BY queue"
)
METRICS_DEAD_SQL = (
    "SELECT queue, COUNT(*) FROM _honker_dead INDEXED BY _honker_dead_queue GROUP BY queue"
)
METRICS_OUTCOMES_SQL = (
    "SELECT queue, "
    "SUM(CASE WHEN bucket > unixepoch() - 60 THEN done ELSE 0 END), "
    "SUM(CASE WHEN bucket > unixepoch() - 60 THEN dead ELSE 0 END), "
    "SUM(CASE WHEN bucket > unixepoch() - 3600 THEN done ELSE 0 END), "
    "SUM(CASE WHEN bucket > unixepoch() - 3600 THEN dead ELSE 0 END), "
    "SUM(done), SUM(dead) "
    "FROM _honker_stats WHERE bucket > unixepoch() - 86400 GROUP BY queue"
)
METRICS_CONSUMERS_SQL = (
    'SELECT topic, name, "offset", (SELECT COUNT(*) FROM _honker_stream '
    "WHERE _honker_stream.topic = _honker_stream_consumers.topic "
    'AND _honker_stream."offset" > _honker_stream_consumers."offset") '
    "FROM _honker_stream_consumers ORDER BY topic, name"
)
METRICS_QUERIES = (
    METRICS_PENDING_SQL,
    METRICS_PROCESSING_SQL,
    METRICS_DEAD_SQL,
    METRICS_OUTCOMES_SQL,
    METRICS_CONSUMERS_SQL,
)


def metrics_snapshot(conn: sqlite3.Connection) -> dict[str, list[Row]]:
    """Everything one metrics scrape needs, in one read transaction (a consistent view)."""
    conn.execute("BEGIN")
    try:
        return {
            "pending": conn.execute(METRICS_PENDING_SQL).fetchall(),
            "processing": conn.execute(METRICS_PROCESSING_SQL).fetchall(),
            "dead": conn.execute(METRICS_DEAD_SQL).fetchall(),
            "outcomes": conn.execute(METRICS_OUTCOMES_SQL).fetchall(),
            "consumers": conn.execute(METRICS_CONSUMERS_SQL).fetchall(),
            "workers": [(workers_alive_count(conn),)],
        }
    finally:
        conn.execute("COMMIT")


# -- unique jobs, paused queues (extra tables _honker_unique, _honker_paused) --
# A unique key is held, per queue, by one job while that job is in _honker_live and, when
# it was enqueued with a window, for window_s seconds after it left (done, dead or
# cancelled). Every path of this module that removes a job from _honker_live calls
# unique_release in the same transaction: one indexed DELETE by job id, skipped after a
# one-row probe when no key is held at all (the common case, kept cheap).

_UNIQUE_LOOKUP = (
    "SELECT job_id, until > unixepoch(), "
    "EXISTS (SELECT 1 FROM _honker_live WHERE _honker_live.id = _honker_unique.job_id) "
    "FROM _honker_unique WHERE queue = ? AND key = ?"
)
# The ack path's whole cost when no unique key is held: one probe of an empty table.
_UNIQUE_ANY = "SELECT 1 FROM _honker_unique LIMIT 1"
_UNIQUE_RELEASE_ONE = (
    "DELETE FROM _honker_unique WHERE job_id = ? RETURNING queue, key, job_id, window_s"
)
_UNIQUE_RELEASE_MANY = (
    "DELETE FROM _honker_unique WHERE job_id IN (SELECT value FROM json_each(?)) "
    "RETURNING queue, key, job_id, window_s"
)
# Finished windows are deleted a few at a time by each unique enqueue (walking the
# partial index on until), so expired rows never pile up.
_UNIQUE_PRUNE = (
    "DELETE FROM _honker_unique WHERE (queue, key) IN (SELECT queue, key FROM _honker_unique "
    "WHERE until <= unixepoch() ORDER BY until LIMIT 16)"
)


def enqueue_unique(
    conn: sqlite3.Connection,
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

    The key is held while the job that took it is pending or processing, and for
    ``unique_for_s`` seconds after it finished (done or dead). When held, the holder's id
    is returned and nothing is written. A key whose job left ``_honker_live`` without this
    library seeing it (another binding acked it) is stale and is taken over. Check and
    insert run in the caller's write transaction, so concurrent enqueues of one key (any
    process) make exactly one job.
    """
    row = conn.execute(_UNIQUE_LOOKUP, (queue, unique_key)).fetchone()
    if row is not None and (row[1] or row[2]):
        return int(row[0]), False
    job_id = enqueue(conn, queue, payload, run_at, delay, priority, max_attempts, expires)
    conn.execute(
        "INSERT OR REPLACE INTO _honker_unique (queue, key, job_id, window_s, until) "
        "VALUES (?, ?, ?, ?, NULL)",
        (queue, unique_key, job_id, unique_for_s or 0),
    )
    conn.execute(_UNIQUE_PRUNE)
    return job_id, True


def unique_release(conn: sqlite3.Connection, job_ids: Sequence[int]) -> None:
    """Release the unique keys held by jobs that just left ``_honker_live``.

    A key with a window stays held (by the same job id) until ``window_s`` from now.
    """
    if not job_ids or conn.execute(_UNIQUE_ANY).fetchone() is None:
        return
    if len(job_ids) == 1:
        rows = conn.execute(_UNIQUE_RELEASE_ONE, (job_ids[0],)).fetchall()
    else:
        rows = conn.execute(_UNIQUE_RELEASE_MANY, (json.dumps(list(job_ids)),)).fetchall()
    windowed = [r for r in rows if r[3] > 0]
    if windowed:
        conn.executemany(
            "INSERT OR REPLACE INTO _honker_unique (queue, key, job_id, window_s, until) "
            "VALUES (?1, ?2, ?3, ?4, unixepoch() + ?4)",
            windowed,
        )


def unique_holder(conn: sqlite3.Connection, queue: str, unique_key: str) -> int | None:
    """Id of the job currently holding ``unique_key`` on ``queue`` (live or in its
    window), or None."""
    row = conn.execute(_UNIQUE_LOOKUP, (queue, unique_key)).fetchone()
    return int(row[0]) if row is not None and (row[1] or row[2]) else None


def queue_pause(conn: sqlite3.Connection, queue: str) -> bool:
    """Mark ``queue`` paused; True if it was not paused already."""
    return (
        conn.execute(
            "INSERT INTO _honker_paused (queue) VALUES (?) ON CONFLICT(queue) DO NOTHING",
            (queue,),
        ).rowcount
        > 0
    )


def queue_resume(conn: sqlite3.Connection, queue: str) -> bool:
    """Unmark ``queue`` paused; True if it was paused."""
    return conn.execute("DELETE FROM _honker_paused WHERE queue = ?", (queue,)).rowcount > 0


def queue_is_paused(conn: sqlite3.Connection, queue: str) -> bool:
    """Whether ``queue`` is paused (one primary-key lookup)."""
    return (
        conn.execute("SELECT 1 FROM _honker_paused WHERE queue = ?", (queue,)).fetchone()
        is not None
    )


def paused_queues(conn: sqlite3.Connection) -> list[str]:
    """Names of the paused queues, sorted."""
    return [r[0] for r in conn.execute("SELECT queue FROM _honker_paused ORDER BY queue")]


# -- jobs: cancel, progress, failed results, attempt history, retention (i15-jobs) -------
# Extra tables of this library only (see _schema.JOBS_META_DDL): _honker_job_cancel,
# _honker_job_progress, _honker_job_errors, _honker_job_attempts, _honker_stats_cancelled.

# One attempt for _honker_job_attempts, as the worker hands it to apply_outcomes:
# (job_id, attempt, worker_id, started_at, ended_at, duration_s, error)
AttemptRow = tuple[int, int, str | None, float | None, float, float | None, str | None]
ATTEMPTS_KEEP = 20
ATTEMPT_COLUMNS = (
    "attempt",
    "worker_id",
    "started_at",
    "ended_at",
    "duration_s",
    "outcome",
    "error",
)
_IDS = "SELECT value FROM json_each(?)"


def attempts_record(
    conn: sqlite3.Connection,
    history: Sequence[AttemptRow | None],
    outcomes: Sequence[str | None],
) -> int:
    """Write the attempt rows whose outcome took effect (``outcomes[i]`` not None).

    One ``executemany`` per call; only a job past ``ATTEMPTS_KEEP`` attempts costs one more
    statement, which drops its oldest rows so at most the last 20 are kept.
    """
    rows = [
        (*h[:6], outcome, h[6])
        for h, outcome in zip(history, outcomes, strict=False)
        if h is not None and outcome is not None
    ]
    if not rows:
        return 0
    conn.executemany(
        "INSERT OR REPLACE INTO _honker_job_attempts (job_id, attempt, worker_id, started_at, "
        "ended_at, duration_s, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    old = [(r[0], r[1] - ATTEMPTS_KEEP) for r in rows if r[1] > ATTEMPTS_KEEP]
    if old:
        conn.executemany("DELETE FROM _honker_job_attempts WHERE job_id = ? AND attempt <= ?", old)
    return len(rows)


def attempts_list(conn: sqlite3.Connection, job_id: int) -> list[dict[str, Any]]:
    """The recorded attempts of a job (at most the last 20), oldest first."""
    rows = conn.execute(
        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM _honker_job_attempts WHERE job_id = ? "
        "ORDER BY attempt",
        (job_id,),
    ).fetchall()
    return [dict(zip(ATTEMPT_COLUMNS, r, strict=True)) for r in rows]


def job_error_save(conn: sqlite3.Connection, job_id: int, error: str) -> None:
    """Remember the last error of a live job (written on every retry)."""
    conn.execute(
        "INSERT INTO _honker_job_errors (job_id, error) VALUES (?, ?) ON CONFLICT(job_id) "
        "DO UPDATE SET error = excluded.error, at = unixepoch()",
        (job_id, error),
    )


def job_error_get(conn: sqlite3.Connection, job_id: int) -> str | None:
    """The last error recorded for a live job, or None."""
    row = conn.execute(
        "SELECT error FROM _honker_job_errors WHERE job_id = ?", (job_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def cancel_requested(conn: sqlite3.Connection, job_id: int) -> bool:
    """Whether a cancel request waits for ``job_id``'s worker."""
    row = conn.execute(
        "SELECT 1 FROM _honker_job_cancel WHERE job_id = ? AND cancelled_at IS NULL", (job_id,)
    ).fetchone()
    return row is not None


def cancel_requests(conn: sqlite3.Connection, job_ids: Sequence[int]) -> list[int]:
    """Which of ``job_ids`` have a cancel request (one primary-key lookup per id)."""
    rows = conn.execute(
        f"SELECT job_id FROM _honker_job_cancel WHERE job_id IN ({_IDS}) AND cancelled_at IS NULL",
        (json.dumps(list(job_ids)),),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _mark_cancelled(conn: sqlite3.Connection, job_id: int, queue: str) -> None:
    """Record that a job left ``_honker_live`` by cancellation (and free its unique key)."""
    unique_release(conn, (job_id,))
    conn.execute(
        "INSERT INTO _honker_job_cancel (job_id, queue, cancelled_at) "
        "VALUES (?, ?, unixepoch()) ON CONFLICT(job_id) DO UPDATE SET cancelled_at = unixepoch()",
        (job_id, queue),
    )
    count_cancelled(conn, queue, 1)


CANCEL_MODES = ("request", "pending_only", "force")


def cancel_job(conn: sqlite3.Connection, job_id: int, mode: str = "request") -> str | None:
    """``Queue.cancel``: delete a pending job now, or ask the worker of a processing one.

    ``mode`` "request" (default) records a cancel request for a processing job;
    "pending_only" leaves a processing job alone; "force" deletes it under its worker (as
    the SQL function ``honker_cancel`` does). Returns "cancelled" (the job was deleted and
    recorded as cancelled), "requested" (a request was recorded) or None (nothing to do:
    unknown, finished, dead, claimed under "pending_only", or a request already waits).
    """
    if mode not in CANCEL_MODES:
        raise ValueError(f"unknown cancel mode {mode!r}; expected one of {CANCEL_MODES}")
    states = "('pending', 'processing')" if mode == "force" else "('pending')"
    row = conn.execute(
        f"DELETE FROM _honker_live WHERE id = ? AND state IN {states} RETURNING queue",
        (job_id,),
    ).fetchone()
    if row is not None:
        _mark_cancelled(conn, job_id, row[0])
        return "cancelled"
    if mode != "request":
        return None
    cur = conn.execute(
        "INSERT INTO _honker_job_cancel (job_id, queue) SELECT id, queue FROM _honker_live "
        "WHERE id = ? AND state = 'processing' ON CONFLICT(job_id) DO NOTHING",
        (job_id,),
    )
    return "requested" if cur.rowcount > 0 else None


def job_cancel_finish(conn: sqlite3.Connection, job_id: int, worker_id: str) -> bool:
    """End a held job as cancelled: it leaves ``_honker_live`` and is counted as cancelled."""
    row = conn.execute(
        f"DELETE FROM _honker_live WHERE {_HELD} RETURNING queue", (job_id, worker_id)
    ).fetchone()
    if row is None:
        return False
    _mark_cancelled(conn, job_id, row[0])
    return True


def count_cancelled(conn: sqlite3.Connection, queue: str, n: int) -> None:
    """Add ``n`` to this queue's cancelled counter for the current 10 s bucket."""
    conn.execute(
        "INSERT INTO _honker_stats_cancelled (queue, bucket, cancelled) "
        f"VALUES (?, unixepoch() / {STATS_BUCKET_S} * {STATS_BUCKET_S}, ?) "
        "ON CONFLICT(queue, bucket) DO UPDATE SET cancelled = cancelled + excluded.cancelled",
        (queue, n),
    )


def cancelled_since(conn: sqlite3.Connection, queue: str, seconds: int) -> int:
    """Jobs of ``queue`` that ended cancelled in the last ``seconds`` (10 s buckets)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(cancelled), 0) FROM _honker_stats_cancelled "
        "WHERE queue = ? AND bucket > unixepoch() - ?",
        (queue, seconds),
    ).fetchone()
    return int(row[0])


def progress_save_many(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, float | None, str | None]]
) -> None:
    """Upsert the latest ``(job_id, fraction, message)`` of many jobs (one statement)."""
    conn.executemany(
        "INSERT INTO _honker_job_progress (job_id, fraction, message) VALUES (?, ?, ?) "
        "ON CONFLICT(job_id) DO UPDATE SET fraction = excluded.fraction, "
        "message = excluded.message, updated_at = unixepoch()",
        rows,
    )


def get_job_extended(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    """:func:`get_job` plus ``last_error`` and ``progress`` (``Queue.get_job``)."""
    job = get_job(conn, job_id)
    if job is not None:
        job["last_error"] = job_error_get(conn, job_id)
        job["progress"] = progress_get(conn, job_id)
    return job


def progress_get(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    """``{"fraction", "message", "updated_at"}`` of a job's last progress, or None."""
    row = conn.execute(
        "SELECT fraction, message, updated_at FROM _honker_job_progress WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return {"fraction": row[0], "message": row[1], "updated_at": row[2]}


def job_outcome(conn: sqlite3.Connection, job_id: int) -> tuple[str, Any]:
    """Where a task's job stands, for ``TaskResult``, in one read transaction.

    ``("done", result_text)`` when a result is stored; ``("pending" | "running", None)``
    while live; ``("failed", (attempts, last_error, payload))`` when dead-lettered;
    ``("cancelled", None)`` when it ended by cancellation; ``("gone", None)`` otherwise
    (finished without a stored result, its result expired, or unknown).
    """
    conn.execute("BEGIN")
    try:
        text = result_get(conn, job_id)
        if text is not None:
            return "done", text
        row = conn.execute("SELECT state FROM _honker_live WHERE id = ?", (job_id,)).fetchone()
        if row is not None:
            return ("running" if row[0] == "processing" else "pending"), None
        row = conn.execute(
            "SELECT attempts, last_error, payload FROM _honker_dead WHERE id = ?", (job_id,)
        ).fetchone()
        if row is not None:
            return "failed", (int(row[0]), row[1], row[2])
        row = conn.execute(
            "SELECT 1 FROM _honker_job_cancel WHERE job_id = ? AND cancelled_at IS NOT NULL",
            (job_id,),
        ).fetchone()
        return ("cancelled" if row is not None else "gone"), None
    finally:
        conn.execute("COMMIT")


# Retention: what each target deletes. (table, key column, age expression, extra condition)
_GONE = (
    "NOT EXISTS (SELECT 1 FROM _honker_live WHERE id = job_id) "
    "AND NOT EXISTS (SELECT 1 FROM _honker_dead WHERE id = job_id)"
)
RETENTION_TARGETS: dict[str, tuple[str, str, str, str]] = {
    "dead": ("_honker_dead", "id", "died_at", ""),
    "results": ("_honker_results", "job_id", "created_at", ""),
    "notifications": ("_honker_notifications", "id", "created_at", ""),
    "stream_events": ("_honker_stream", '"offset"', "created_at", ""),
    "history.attempts": ("_honker_job_attempts", "job_id", "ended_at", _GONE),
    "history.progress": ("_honker_job_progress", "job_id", "updated_at", _GONE),
    "history.errors": ("_honker_job_errors", "job_id", "at", _GONE),
    "history.cancel": ("_honker_job_cancel", "job_id", "requested_at", _GONE),
    "history.stats_cancelled": ("_honker_stats_cancelled", "queue || ':' || bucket", "bucket", ""),
}


def _retention_where(target: str, older_than_s: int | None) -> tuple[str, list[Any]]:
    if target not in RETENTION_TARGETS:
        raise ValueError(f"unknown retention target {target!r}")
    _, _, age, extra = RETENTION_TARGETS[target]
    clauses: list[str] = []
    params: list[Any] = []
    if older_than_s is not None:
        clauses.append(f"{age} < unixepoch() - ?")
        params.append(int(older_than_s))
    if target == "results":  # expired results always go, as the reference's sweep does
        expired = "(expires_at IS NOT NULL AND expires_at <= unixepoch())"
        clauses = [f"({clauses[0]} OR {expired})"] if clauses else [expired]
    if extra:
        clauses.append(extra)
    return " AND ".join(clauses) or "0", params


# The age index each target's candidates are read through (see _schema.JOBS_META_INDEXES).
RETENTION_INDEXES = {
    "dead": "_honker_dead_died",
    "history.attempts": "_honker_job_attempts_age",
    "history.progress": "_honker_job_progress_age",
    "history.errors": "_honker_job_errors_age",
    "history.cancel": "_honker_job_cancel_age",
}

# Tables whose creation time grows with their key: the oldest rows come first in key order,
# so candidates are a prefix of that order (a bounded read, no index needed).
_MONOTONE_TARGETS = ("notifications", "stream_events")


def retention_candidates(
    conn: sqlite3.Connection, target: str, older_than_s: int | None, limit: int
) -> list[Any]:
    """Up to ``limit`` keys of rows ``target`` would delete (a read, off the writer).

    Reads through an age index or, for tables in creation order, the oldest rows only;
    expired results (no index on the shared table) are found by a scan, like the
    reference's result sweep.
    """
    table, key, age, _ = RETENTION_TARGETS.get(target, ("", "", "", ""))
    where, params = _retention_where(target, older_than_s)
    if target in _MONOTONE_TARGETS:
        if older_than_s is None:
            return []
        rows = conn.execute(
            f"SELECT {key}, {age} < unixepoch() - ? FROM {table} ORDER BY {key} LIMIT ?",
            (int(older_than_s), limit),
        ).fetchall()
        keys = []
        for row in rows:
            if not row[1]:
                break
            keys.append(row[0])
        return keys
    index = RETENTION_INDEXES.get(target)
    source = f"{table} INDEXED BY {index}" if index and older_than_s is not None else table
    rows = conn.execute(
        f"SELECT DISTINCT {key} FROM {source} WHERE {where} LIMIT ?", (*params, limit)
    ).fetchall()
    return [r[0] for r in rows]


def retention_delete(
    conn: sqlite3.Connection, target: str, keys: Sequence[Any], older_than_s: int | None
) -> int:
    """Delete the rows of ``keys`` that still match ``target``'s condition; returns how many."""
    table, key, _, _ = RETENTION_TARGETS.get(target, ("", "", "", ""))
    where, params = _retention_where(target, older_than_s)
    cur = conn.execute(
        f"DELETE FROM {table} WHERE {key} IN ({_IDS}) AND {where}",
        (json.dumps(list(keys)), *params),
    )
    return cur.rowcount


# -- dashboard reads (issue 15, dashboard part) ----------------------------------------------
# Reads of honker.dashboard: jobs filtered by task name, the task names of a queue, and the
# per-minute outcome history of a queue from _honker_stats. Read-only.

# The task name of a job's envelope ({"__honker_task__": {"task": name, ...}}); NULL for a
# raw payload or one that is not valid JSON (json_extract would raise on those). The job
# queries read payloads as BLOBs (see _blob), which SQLite >= 3.45 would take for JSONB:
# hence the cast back to text.
_TASK_OF_PAYLOAD = (
    "CASE WHEN json_valid(CAST(payload AS TEXT)) "
    "THEN json_extract(CAST(payload AS TEXT), '$.__honker_task__.task') END"
)
TASK_NAMES_LIMIT = 200
TASK_NAMES_SCAN = 5000


def _jobs_of_task(
    queue: str, state: str | None, search: str | None, task: str | None
) -> tuple[str, list[Any]]:
    sql, params = _jobs_query(queue, state, search)
    if task is None:
        return f"SELECT * FROM ({sql})", params
    return f"SELECT * FROM ({sql}) WHERE {_TASK_OF_PAYLOAD} = ?", [*params, task]


def dashboard_list_jobs(
    conn: sqlite3.Connection,
    queue: str,
    state: str | None,
    search: str | None,
    task: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """:func:`list_jobs` that also filters by task name (``task=None``: every job)."""
    sql, params = _jobs_of_task(queue, state, search, task)
    rows = conn.execute(f"{sql} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
    return [_job_dict(JOB_DETAIL_COLUMNS, r) for r in rows.fetchall()]


def dashboard_count_jobs(
    conn: sqlite3.Connection, queue: str, state: str | None, search: str | None, task: str | None
) -> int:
    """How many jobs :func:`dashboard_list_jobs` would return without paging."""
    sql, params = _jobs_of_task(queue, state, search, task)
    return int(conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])


def dashboard_task_names(conn: sqlite3.Connection, queue: str) -> list[str]:
    """The distinct task names among ``queue``'s newest live and dead jobs, sorted.

    Looks at the newest ``TASK_NAMES_SCAN`` rows of each table (a bounded read however
    long the queue) and returns at most ``TASK_NAMES_LIMIT`` names.
    """
    live, dead = (
        f"SELECT {_TASK_OF_PAYLOAD} AS task FROM (SELECT payload FROM {table} "
        f"WHERE queue = ? ORDER BY id DESC LIMIT {TASK_NAMES_SCAN})"
        for table in ("_honker_live", "_honker_dead")
    )
    rows = conn.execute(
        f"SELECT DISTINCT task FROM ({live} UNION ALL {dead}) "
        "WHERE typeof(task) = 'text' ORDER BY task LIMIT ?",
        (queue, queue, TASK_NAMES_LIMIT),
    ).fetchall()
    return [r[0] for r in rows]


def queue_throughput(conn: sqlite3.Connection, queue: str, minutes: int) -> dict[str, Any]:
    """Jobs of ``queue`` done and dead-lettered per minute over the last ``minutes`` minutes.

    Returns ``{"now": unix, "minutes": [(minute_start, done, dead), ...]}``, oldest first,
    one entry per minute (zeros included); the last one is the current, partial minute.
    ``_honker_stats`` keeps 10 s buckets for a day (``STATS_KEEP_S``).
    """
    now = sqlite_now(conn)
    first = (now // 60 - (minutes - 1)) * 60
    rows = conn.execute(
        "SELECT bucket / 60 * 60, SUM(done), SUM(dead) FROM _honker_stats "
        "WHERE queue = ? AND bucket >= ? GROUP BY 1",
        (queue, first),
    ).fetchall()
    counts = {int(m): (int(done), int(dead)) for m, done, dead in rows}
    series = []
    for i in range(minutes):
        start = first + 60 * i
        done, dead = counts.get(start, (0, 0))
        series.append((start, done, dead))
    return {"now": now, "minutes": series}
