"""DDL and in-place migrations of the on-disk format shared with every honker binding.

The definitions below are a fixed contract (see ``SCHEMA.md``): same tables, column order,
types, defaults, keys and index definitions as the reference implementation, so that its
loadable extension and its other language bindings can share a file with this library.
Every statement uses ``IF NOT EXISTS`` so whichever participant touches a file first
defines the objects, and running the whole script twice (or from two processes at once,
serialized by ``BEGIN IMMEDIATE``) is harmless.
"""

from __future__ import annotations

import sqlite3

NOTIFICATIONS_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS _honker_notifications (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      channel TEXT NOT NULL,
      payload TEXT NOT NULL,
      created_at INTEGER NOT NULL DEFAULT (unixepoch())
    )""",
    """CREATE INDEX IF NOT EXISTS _honker_notifications_recent
      ON _honker_notifications(channel, id)""",
)

BOOTSTRAP_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS _honker_live (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      queue TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL DEFAULT 'pending',
      priority INTEGER NOT NULL DEFAULT 0,
      run_at INTEGER NOT NULL DEFAULT (unixepoch()),
      worker_id TEXT,
      claim_expires_at INTEGER,
      attempts INTEGER NOT NULL DEFAULT 0,
      max_attempts INTEGER NOT NULL DEFAULT 3,
      created_at INTEGER NOT NULL DEFAULT (unixepoch()),
      expires_at INTEGER
    )""",
    """CREATE INDEX IF NOT EXISTS _honker_live_claim
      ON _honker_live(queue, priority DESC, run_at, id)
      WHERE state IN ('pending', 'processing')""",
    """CREATE INDEX IF NOT EXISTS _honker_live_pending_deadline
      ON _honker_live(queue, run_at)
      WHERE state = 'pending'""",
    """CREATE INDEX IF NOT EXISTS _honker_live_processing_deadline
      ON _honker_live(queue, claim_expires_at)
      WHERE state = 'processing'""",
    """CREATE TABLE IF NOT EXISTS _honker_dead (
      id INTEGER PRIMARY KEY,
      queue TEXT NOT NULL,
      payload TEXT NOT NULL,
      priority INTEGER NOT NULL DEFAULT 0,
      run_at INTEGER NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      max_attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      created_at INTEGER NOT NULL DEFAULT (unixepoch()),
      died_at INTEGER NOT NULL DEFAULT (unixepoch())
    )""",
    """CREATE TABLE IF NOT EXISTS _honker_locks (
      name TEXT PRIMARY KEY,
      owner TEXT NOT NULL,
      expires_at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS _honker_rate_limits (
      name TEXT NOT NULL,
      window_start INTEGER NOT NULL,
      count INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (name, window_start)
    )""",
    """CREATE TABLE IF NOT EXISTS _honker_scheduler_tasks (
      name TEXT PRIMARY KEY,
      queue TEXT NOT NULL,
      cron_expr TEXT NOT NULL,
      payload TEXT NOT NULL,
      priority INTEGER NOT NULL DEFAULT 0,
      expires_s INTEGER,
      next_fire_at INTEGER NOT NULL,
      enabled INTEGER NOT NULL DEFAULT 1,
      max_attempts INTEGER NOT NULL DEFAULT 3
    )""",
    """CREATE TABLE IF NOT EXISTS _honker_results (
      job_id INTEGER PRIMARY KEY,
      value TEXT,
      created_at INTEGER NOT NULL DEFAULT (unixepoch()),
      expires_at INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS _honker_stream (
      offset INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL,
      key TEXT,
      payload TEXT NOT NULL,
      created_at INTEGER NOT NULL DEFAULT (unixepoch())
    )""",
    """CREATE INDEX IF NOT EXISTS _honker_stream_topic
      ON _honker_stream(topic, offset)""",
    """CREATE TABLE IF NOT EXISTS _honker_stream_consumers (
      name TEXT NOT NULL,
      topic TEXT NOT NULL,
      offset INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (name, topic)
    )""",
)

# Extra state of this library (not part of the shared contract; other bindings ignore it).
EXTRA_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS _honker_stats (
      queue TEXT NOT NULL,
      bucket INTEGER NOT NULL,
      done INTEGER NOT NULL DEFAULT 0,
      dead INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (queue, bucket)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS _honker_scheduler_tz (
      name TEXT PRIMARY KEY,
      tz TEXT NOT NULL
    )""",
)

# Columns that older files may lack on _honker_scheduler_tasks (SCHEMA.md §3.2).
SCHEDULER_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "enabled",
        "ALTER TABLE _honker_scheduler_tasks ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1",
    ),
    (
        "max_attempts",
        "ALTER TABLE _honker_scheduler_tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3",
    ),
)

JOBS_VIEW_NAME = "_honker_jobs"

JOBS_VIEW_DDL = """CREATE VIEW _honker_jobs AS
  SELECT id, queue, payload, state, priority, run_at, worker_id, claim_expires_at,
         attempts, max_attempts, NULL AS last_error, created_at
    FROM _honker_live
  UNION ALL
  SELECT id, queue, payload, 'dead' AS state, priority, run_at, NULL AS worker_id,
         NULL AS claim_expires_at, attempts, max_attempts, last_error, created_at
    FROM _honker_dead"""

# Pre-release layout dropped at first queue construction (SCHEMA.md §3.3).
LEGACY_CLEANUP: tuple[str, ...] = (
    "DROP INDEX IF EXISTS _honker_jobs_claim",
    "DROP INDEX IF EXISTS _honker_jobs_claim_v2",
    "DROP INDEX IF EXISTS _honker_pending_claim",
    "DROP INDEX IF EXISTS _honker_processing_reclaim",
    "DROP TABLE IF EXISTS _honker_pending",
    "DROP TABLE IF EXISTS _honker_processing",
)

_LEGACY_NAMES = frozenset(
    {
        "_honker_jobs_claim",
        "_honker_jobs_claim_v2",
        "_honker_pending_claim",
        "_honker_processing_reclaim",
        "_honker_pending",
        "_honker_processing",
    }
)

_EXPECTED_OBJECTS = frozenset(
    {
        "_honker_notifications",
        "_honker_notifications_recent",
        "_honker_live",
        "_honker_live_claim",
        "_honker_live_pending_deadline",
        "_honker_live_processing_deadline",
        "_honker_dead",
        "_honker_locks",
        "_honker_rate_limits",
        "_honker_scheduler_tasks",
        "_honker_results",
        "_honker_stream",
        "_honker_stream_topic",
        "_honker_stream_consumers",
        "_honker_stats",
        "_honker_scheduler_tz",
    }
)


def install(conn: sqlite3.Connection) -> None:
    """Create every table, index and migration of the format (inside the caller's transaction)."""
    create_notifications(conn)
    bootstrap(conn)


def ensure(conn: sqlite3.Connection) -> None:
    """Install the schema on ``conn`` when incomplete; a pure read when it is complete.

    Outside a transaction the DDL runs in a short ``BEGIN IMMEDIATE … COMMIT`` of its own.
    Inside one it joins that transaction under a savepoint (a failure leaves the caller's
    transaction as it was) and becomes durable only when the caller commits. The one
    sequence behind ``open()``, ``Transaction.bootstrap_honker_schema`` and ``attach()``.
    """
    if is_complete(conn):
        return
    if conn.in_transaction:
        conn.execute("SAVEPOINT honker_schema")
        try:
            install(conn)
        except BaseException:
            conn.execute("ROLLBACK TO honker_schema")
            conn.execute("RELEASE honker_schema")
            raise
        conn.execute("RELEASE honker_schema")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        install(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_notifications(conn: sqlite3.Connection) -> None:
    """Create ``_honker_notifications`` and its index (done by whoever registers notify())."""
    for stmt in NOTIFICATIONS_DDL:
        conn.execute(stmt)


def bootstrap(conn: sqlite3.Connection) -> None:
    """Create every bootstrap table and index, then apply migrations (caller's transaction)."""
    for stmt in BOOTSTRAP_DDL:
        conn.execute(stmt)
    for stmt in EXTRA_DDL:
        conn.execute(stmt)
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> None:
    """Add columns that older files lack; a concurrent "duplicate column" add is ignored."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(_honker_scheduler_tasks)")}
    for column, stmt in SCHEDULER_MIGRATIONS:
        if column in have:
            continue
        try:
            conn.execute(stmt)
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc).lower():
                raise


def is_complete(conn: sqlite3.Connection) -> bool:
    """True when every object of the shared format exists and needs no migration.

    A pure read, so ``open()`` does not need a write transaction on an up-to-date file.
    """
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE '\\_honker\\_%' ESCAPE '\\'"
        )
    }
    if not names >= _EXPECTED_OBJECTS:
        return False
    columns = {row[1] for row in conn.execute("PRAGMA table_info(_honker_scheduler_tasks)")}
    return all(column in columns for column, _ in SCHEDULER_MIGRATIONS)


def jobs_view_current(conn: sqlite3.Connection) -> bool:
    """True when the ``_honker_jobs`` view exists as defined here and no legacy object is left."""
    marks = ",".join("?" * len(_LEGACY_NAMES))
    rows = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE name = ? OR name IN ({marks})",
        (JOBS_VIEW_NAME, *sorted(_LEGACY_NAMES)),
    ).fetchall()
    return len(rows) == 1 and rows[0][0] == JOBS_VIEW_NAME and rows[0][1] == JOBS_VIEW_DDL


def install_jobs_view(conn: sqlite3.Connection) -> None:
    """(Re)create the ``_honker_jobs`` inspection view and drop the legacy layout."""
    bootstrap(conn)
    conn.execute(f"DROP VIEW IF EXISTS {JOBS_VIEW_NAME}")
    conn.execute(JOBS_VIEW_DDL)
    for stmt in LEGACY_CLEANUP:
        conn.execute(stmt)


# -- live workers, metrics, tracing (extra tables) --
# Extra state of this library only (other bindings ignore it). Appended to EXTRA_DDL and
# to the objects is_complete() expects, so bootstrap() creates them on a new file, an older
# file gets them once (one write transaction at open), and an up-to-date file is not
# written on open.
OBSERVE_DDL: tuple[str, ...] = (
    # one row per running worker process (honker.workers); pruned once long gone
    """CREATE TABLE IF NOT EXISTS _honker_workers (
      id TEXT PRIMARY KEY,
      host TEXT NOT NULL,
      pid INTEGER NOT NULL,
      queues TEXT NOT NULL DEFAULT '[]',
      concurrency INTEGER NOT NULL DEFAULT 1,
      heartbeat_s REAL NOT NULL DEFAULT 5,
      started_at INTEGER NOT NULL DEFAULT (unixepoch()),
      last_seen INTEGER NOT NULL DEFAULT (unixepoch()),
      running TEXT NOT NULL DEFAULT '[]'
    )""",
    # W3C trace context of a traced job, written with its enqueue (honker.tracing)
    """CREATE TABLE IF NOT EXISTS _honker_job_trace (
      job_id INTEGER PRIMARY KEY,
      carrier TEXT NOT NULL
    )""",
    # dead jobs counted per queue without a table scan (metrics, dashboard); an extra
    # index on the shared table, maintained by SQLite for every binding's writes
    """CREATE INDEX IF NOT EXISTS _honker_dead_queue ON _honker_dead(queue)""",
)

EXTRA_DDL = (*EXTRA_DDL, *OBSERVE_DDL)
_EXPECTED_OBJECTS = _EXPECTED_OBJECTS | {
    "_honker_workers",
    "_honker_job_trace",
    "_honker_dead_queue",
}


# -- unique jobs, paused queues (extra tables) --
# Extra state of this library only, added like the tables above. Another binding's ack
# does not clean _honker_unique; a key whose job left _honker_live that way is simply
# found stale (and reused) by the next enqueue with that key.
QUEUE_CONTROL_DDL: tuple[str, ...] = (
    # one row per held unique key: while its job is live (until IS NULL), then, when the
    # key was enqueued with a window, until the window after the job's completion ends
    """CREATE TABLE IF NOT EXISTS _honker_unique (
      queue TEXT NOT NULL,
      key TEXT NOT NULL,
      job_id INTEGER NOT NULL,
      window_s INTEGER NOT NULL DEFAULT 0,
      until INTEGER,
      PRIMARY KEY (queue, key)
    ) WITHOUT ROWID""",
    # the ack path releases keys by job id: one indexed DELETE
    """CREATE INDEX IF NOT EXISTS _honker_unique_job ON _honker_unique(job_id)""",
    # finished windows are pruned by expiry
    """CREATE INDEX IF NOT EXISTS _honker_unique_until
      ON _honker_unique(until) WHERE until IS NOT NULL""",
    # one row per paused queue: claims of this library take nothing from it
    """CREATE TABLE IF NOT EXISTS _honker_paused (
      queue TEXT PRIMARY KEY,
      paused_at INTEGER NOT NULL DEFAULT (unixepoch())
    ) WITHOUT ROWID""",
)

EXTRA_DDL = (*EXTRA_DDL, *QUEUE_CONTROL_DDL)
_EXPECTED_OBJECTS = _EXPECTED_OBJECTS | {
    "_honker_unique",
    "_honker_unique_job",
    "_honker_unique_until",
    "_honker_paused",
}
# -- jobs: cancel, progress, failed results, attempt history (extra tables) --
# Extra state of this library only; the reference's tables are untouched and its workers
# ignore these rows. Pruned by the retention policy's "history" key once the job is gone.
JOBS_META_DDL: tuple[str, ...] = (
    # a cancel request on a processing job (cancelled_at NULL), or the record that the job
    # ended by cancellation (cancelled_at set): what TaskResult.get() raises on
    """CREATE TABLE IF NOT EXISTS _honker_job_cancel (
      job_id INTEGER PRIMARY KEY,
      queue TEXT NOT NULL,
      requested_at INTEGER NOT NULL DEFAULT (unixepoch()),
      cancelled_at INTEGER
    )""",
    # the latest progress a task reported (throttled writes)
    """CREATE TABLE IF NOT EXISTS _honker_job_progress (
      job_id INTEGER PRIMARY KEY,
      fraction REAL,
      message TEXT,
      updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    )""",
    # the last error of a live job (the reference's _honker_live has no such column)
    """CREATE TABLE IF NOT EXISTS _honker_job_errors (
      job_id INTEGER PRIMARY KEY,
      error TEXT NOT NULL,
      at INTEGER NOT NULL DEFAULT (unixepoch())
    )""",
    # one row per finished attempt, the last 20 per job
    """CREATE TABLE IF NOT EXISTS _honker_job_attempts (
      job_id INTEGER NOT NULL,
      attempt INTEGER NOT NULL,
      worker_id TEXT,
      started_at REAL,
      ended_at REAL NOT NULL,
      duration_s REAL,
      outcome TEXT NOT NULL,
      error TEXT,
      PRIMARY KEY (job_id, attempt)
    ) WITHOUT ROWID""",
    # cancelled jobs counted per queue and 10 s bucket (like _honker_stats)
    """CREATE TABLE IF NOT EXISTS _honker_stats_cancelled (
      queue TEXT NOT NULL,
      bucket INTEGER NOT NULL,
      cancelled INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (queue, bucket)
    ) WITHOUT ROWID""",
)

# Retention reads its candidates through these (an old row is found without a scan).
JOBS_META_INDEXES: tuple[tuple[str, str], ...] = (
    ("_honker_job_cancel_age", "_honker_job_cancel(requested_at)"),
    ("_honker_job_progress_age", "_honker_job_progress(updated_at)"),
    ("_honker_job_errors_age", "_honker_job_errors(at)"),
    ("_honker_job_attempts_age", "_honker_job_attempts(ended_at)"),
    # dead jobs pruned by age: an extra index on the shared table (like _honker_dead_queue)
    ("_honker_dead_died", "_honker_dead(died_at)"),
)
JOBS_META_DDL = (
    *JOBS_META_DDL,
    *(f"CREATE INDEX IF NOT EXISTS {name} ON {target}" for name, target in JOBS_META_INDEXES),
)

JOBS_META_TABLES = (
    "_honker_job_cancel",
    "_honker_job_progress",
    "_honker_job_errors",
    "_honker_job_attempts",
    "_honker_stats_cancelled",
)
EXTRA_DDL = (*EXTRA_DDL, *JOBS_META_DDL)
_EXPECTED_OBJECTS = (
    _EXPECTED_OBJECTS | set(JOBS_META_TABLES) | {name for name, _ in JOBS_META_INDEXES}
)
