"""The on-disk format: exact tables, columns, indexes, view, migrations, concurrent bootstrap."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import honker
from helpers import Child

EXPECTED_COLUMNS = {
    "_honker_live": [
        ("id", "INTEGER", 0, None, 1),
        ("queue", "TEXT", 1, None, 0),
        ("payload", "TEXT", 1, None, 0),
        ("state", "TEXT", 1, "'pending'", 0),
        ("priority", "INTEGER", 1, "0", 0),
        ("run_at", "INTEGER", 1, "unixepoch()", 0),
        ("worker_id", "TEXT", 0, None, 0),
        ("claim_expires_at", "INTEGER", 0, None, 0),
        ("attempts", "INTEGER", 1, "0", 0),
        ("max_attempts", "INTEGER", 1, "3", 0),
        ("created_at", "INTEGER", 1, "unixepoch()", 0),
        ("expires_at", "INTEGER", 0, None, 0),
    ],
    "_honker_dead": [
        ("id", "INTEGER", 0, None, 1),
        ("queue", "TEXT", 1, None, 0),
        ("payload", "TEXT", 1, None, 0),
        ("priority", "INTEGER", 1, "0", 0),
        ("run_at", "INTEGER", 1, "0", 0),
        ("attempts", "INTEGER", 1, "0", 0),
        ("max_attempts", "INTEGER", 1, "0", 0),
        ("last_error", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, "unixepoch()", 0),
        ("died_at", "INTEGER", 1, "unixepoch()", 0),
    ],
    "_honker_notifications": [
        ("id", "INTEGER", 0, None, 1),
        ("channel", "TEXT", 1, None, 0),
        ("payload", "TEXT", 1, None, 0),
        ("created_at", "INTEGER", 1, "unixepoch()", 0),
    ],
    "_honker_locks": [
        ("name", "TEXT", 0, None, 1),
        ("owner", "TEXT", 1, None, 0),
        ("expires_at", "INTEGER", 1, None, 0),
    ],
    "_honker_rate_limits": [
        ("name", "TEXT", 1, None, 1),
        ("window_start", "INTEGER", 1, None, 2),
        ("count", "INTEGER", 1, "0", 0),
    ],
    "_honker_scheduler_tasks": [
        ("name", "TEXT", 0, None, 1),
        ("queue", "TEXT", 1, None, 0),
        ("cron_expr", "TEXT", 1, None, 0),
        ("payload", "TEXT", 1, None, 0),
        ("priority", "INTEGER", 1, "0", 0),
        ("expires_s", "INTEGER", 0, None, 0),
        ("next_fire_at", "INTEGER", 1, None, 0),
        ("enabled", "INTEGER", 1, "1", 0),
        ("max_attempts", "INTEGER", 1, "3", 0),
    ],
    "_honker_results": [
        ("job_id", "INTEGER", 0, None, 1),
        ("value", "TEXT", 0, None, 0),
        ("created_at", "INTEGER", 1, "unixepoch()", 0),
        ("expires_at", "INTEGER", 0, None, 0),
    ],
    "_honker_stream": [
        ("offset", "INTEGER", 0, None, 1),
        ("topic", "TEXT", 1, None, 0),
        ("key", "TEXT", 0, None, 0),
        ("payload", "TEXT", 1, None, 0),
        ("created_at", "INTEGER", 1, "unixepoch()", 0),
    ],
    "_honker_stream_consumers": [
        ("name", "TEXT", 1, None, 1),
        ("topic", "TEXT", 1, None, 2),
        ("offset", "INTEGER", 1, "0", 0),
    ],
}

# Extra state of this library, in extra _honker_ tables (other bindings ignore them).
EXTRA_TABLES = {
    "_honker_stats": [
        ("queue", "TEXT", 1, None, 1),
        ("bucket", "INTEGER", 1, None, 2),
        ("done", "INTEGER", 1, "0", 0),
        ("dead", "INTEGER", 1, "0", 0),
    ],
    "_honker_scheduler_tz": [
        ("name", "TEXT", 0, None, 1),
        ("tz", "TEXT", 1, None, 0),
    ],
    "_honker_workers": [
        ("id", "TEXT", 0, None, 1),
        ("host", "TEXT", 1, None, 0),
        ("pid", "INTEGER", 1, None, 0),
        ("queues", "TEXT", 1, "'[]'", 0),
        ("concurrency", "INTEGER", 1, "1", 0),
        ("heartbeat_s", "REAL", 1, "5", 0),
        ("started_at", "INTEGER", 1, "unixepoch()", 0),
        ("last_seen", "INTEGER", 1, "unixepoch()", 0),
        ("running", "TEXT", 1, "'[]'", 0),
    ],
    "_honker_job_trace": [
        ("job_id", "INTEGER", 0, None, 1),
        ("carrier", "TEXT", 1, None, 0),
    ],
    # unique jobs, paused queues
    "_honker_unique": [
        ("queue", "TEXT", 1, None, 1),
        ("key", "TEXT", 1, None, 2),
        ("job_id", "INTEGER", 1, None, 0),
        ("window_s", "INTEGER", 1, "0", 0),
        ("until", "INTEGER", 0, None, 0),
    ],
    "_honker_paused": [
        ("queue", "TEXT", 1, None, 1),
        ("paused_at", "INTEGER", 1, "unixepoch()", 0),
    ],
    # jobs: cancel, progress, failed results, attempt history (i15-jobs)
    "_honker_job_cancel": [
        ("job_id", "INTEGER", 0, None, 1),
        ("queue", "TEXT", 1, None, 0),
        ("requested_at", "INTEGER", 1, "unixepoch()", 0),
        ("cancelled_at", "INTEGER", 0, None, 0),
    ],
    "_honker_job_progress": [
        ("job_id", "INTEGER", 0, None, 1),
        ("fraction", "REAL", 0, None, 0),
        ("message", "TEXT", 0, None, 0),
        ("updated_at", "INTEGER", 1, "unixepoch()", 0),
    ],
    "_honker_job_errors": [
        ("job_id", "INTEGER", 0, None, 1),
        ("error", "TEXT", 1, None, 0),
        ("at", "INTEGER", 1, "unixepoch()", 0),
    ],
    "_honker_job_attempts": [
        ("job_id", "INTEGER", 1, None, 1),
        ("attempt", "INTEGER", 1, None, 2),
        ("worker_id", "TEXT", 0, None, 0),
        ("started_at", "REAL", 0, None, 0),
        ("ended_at", "REAL", 1, None, 0),
        ("duration_s", "REAL", 0, None, 0),
        ("outcome", "TEXT", 1, None, 0),
        ("error", "TEXT", 0, None, 0),
    ],
    "_honker_stats_cancelled": [
        ("queue", "TEXT", 1, None, 1),
        ("bucket", "INTEGER", 1, None, 2),
        ("cancelled", "INTEGER", 1, "0", 0),
    ],
}

EXPECTED_INDEXES = {
    "_honker_live_claim": (
        "_honker_live",
        ["queue", "priority", "run_at", "id"],
        [0, 1, 0, 0],
        "state IN ('pending', 'processing')",
    ),
    "_honker_live_pending_deadline": (
        "_honker_live",
        ["queue", "run_at"],
        [0, 0],
        "state = 'pending'",
    ),
    "_honker_live_processing_deadline": (
        "_honker_live",
        ["queue", "claim_expires_at"],
        [0, 0],
        "state = 'processing'",
    ),
    "_honker_notifications_recent": ("_honker_notifications", ["channel", "id"], [0, 0], None),
    "_honker_stream_topic": ("_honker_stream", ["topic", "offset"], [0, 0], None),
    # extra index of this library (dead jobs per queue without a table scan)
    "_honker_dead_queue": ("_honker_dead", ["queue"], [0], None),
    # unique keys by job id (released on ack) and finished windows by expiry
    "_honker_unique_job": ("_honker_unique", ["job_id"], [0], None),
    "_honker_unique_until": ("_honker_unique", ["until"], [0], "until IS NOT NULL"),
    # retention's age indexes (i15-jobs): old rows are found without a scan
    "_honker_dead_died": ("_honker_dead", ["died_at"], [0], None),
    "_honker_job_cancel_age": ("_honker_job_cancel", ["requested_at"], [0], None),
    "_honker_job_progress_age": ("_honker_job_progress", ["updated_at"], [0], None),
    "_honker_job_errors_age": ("_honker_job_errors", ["at"], [0], None),
    "_honker_job_attempts_age": ("_honker_job_attempts", ["ended_at"], [0], None),
}


def describe(path: str) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, object]]:
    conn = sqlite3.connect(path)
    tables = {}
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '\\_honker%' ESCAPE '\\'"
    ):
        tables[name] = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({name})")]
    indexes: dict[str, object] = {}
    for name, table, sql in conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
    ):
        info = conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
        keys = [r for r in info if r[5] == 1]
        where = sql.split("WHERE", 1)[1].strip() if "WHERE" in sql else None
        indexes[name] = (table, [r[2] for r in keys], [r[3] for r in keys], where)
    autoinc = {
        name
        for (name, sql) in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'")
        if sql and "AUTOINCREMENT" in sql.upper()
    }
    conn.close()
    return tables, {"indexes": indexes, "autoincrement": autoinc}


def test_fresh_open_has_exactly_the_shared_format(db: honker.Database, db_path: str) -> None:
    tables, extra = describe(db_path)
    assert tables == EXPECTED_COLUMNS | EXTRA_TABLES
    assert extra["indexes"] == EXPECTED_INDEXES
    assert extra["autoincrement"] == {"_honker_live", "_honker_notifications", "_honker_stream"}


def test_bootstrap_is_idempotent(db: honker.Database, db_path: str) -> None:
    with db.transaction() as tx:
        tx.bootstrap_honker_schema()
        tx.bootstrap_honker_schema()
        assert tx.query("SELECT honker_bootstrap() AS ok") == [{"ok": 1}]
    honker.open(db_path).close()
    tables, extra = describe(db_path)
    assert tables == EXPECTED_COLUMNS | EXTRA_TABLES
    assert extra["indexes"] == EXPECTED_INDEXES


def test_old_scheduler_table_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE _honker_scheduler_tasks (name TEXT PRIMARY KEY, queue TEXT NOT NULL, "
        "cron_expr TEXT NOT NULL, payload TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, "
        "expires_s INTEGER, next_fire_at INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT INTO _honker_scheduler_tasks VALUES ('old', 'q', '@every 5s', 'null', 0, NULL, 1)"
    )
    conn.commit()
    conn.close()
    db = honker.open(path)
    rows = db.query("SELECT name, enabled, max_attempts FROM _honker_scheduler_tasks")
    assert rows == [{"name": "old", "enabled": 1, "max_attempts": 3}]
    db.close()
    tables, _ = describe(path)
    assert tables["_honker_scheduler_tasks"] == EXPECTED_COLUMNS["_honker_scheduler_tasks"]


def test_open_on_complete_file_does_not_write(db: honker.Database, db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    before = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.close()
    honker.open(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA schema_version").fetchone()[0] == before
    conn.close()


BOOTSTRAP_CHILD = """
import sys, time
import honker
start = float(sys.argv[2])
while time.time() < start:
    pass
db = honker.open(sys.argv[1])
with db.transaction() as tx:
    tx.execute("INSERT INTO _honker_live (queue, payload) VALUES ('q', '1')")
db.close()
print("OK")
"""


def test_processes_bootstrapping_one_new_file_at_once(tmp_path: Path) -> None:
    import time

    for round_ in range(3):
        path = str(tmp_path / f"race{round_}.db")
        start = str(time.time() + 1.0)
        kids = [Child(BOOTSTRAP_CHILD, path, start) for _ in range(4)]
        for kid in kids:
            kid.expect("OK")
            assert kid.wait() == 0, kid.stderr
        tables, extra = describe(path)
        assert tables == EXPECTED_COLUMNS | EXTRA_TABLES
        assert extra["indexes"] == EXPECTED_INDEXES
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT COUNT(*) FROM _honker_live").fetchone()[0] == 4
        conn.close()
