"""``python -m honker migrate app.db postgresql://…``: move a SQLite honker file to a server.

Copies, in one PostgreSQL transaction: pending jobs (a job still ``processing`` in the file
is copied as pending, its claim dropped, its attempts kept), dead jobs, schedules with
their time zones, stream events with every consumer's offset, and results that have not
expired. Ids, offsets and timestamps are kept, and the id sequences are moved past the
file's (including ids SQLite handed out and deleted), so new ids never collide.

Idempotent: every row is inserted with ``ON CONFLICT DO NOTHING`` on its key, so running it
again copies nothing twice. A target that already holds honker data is refused unless
``force``. The SQLite file is opened read-only and never written.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .._ops import JOB_COLUMNS, SCHEDULE_COLUMNS

LIVE = tuple(c for c in JOB_COLUMNS if c not in ("worker_id", "claim_expires_at"))
DEAD = (
    "id",
    "queue",
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "died_at",
)
# (what, SQLite query, PostgreSQL table, columns, conflict key)
COPIES: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    (
        "jobs",
        "SELECT " + ", ".join(LIVE).replace("state", "'pending'") + " FROM _honker_live",
        "_honker_live",
        LIVE,
        "id",
    ),
    ("dead jobs", f"SELECT {', '.join(DEAD)} FROM _honker_dead", "_honker_dead", DEAD, "id"),
    (
        "schedules",
        f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM _honker_scheduler_tasks",
        "_honker_scheduler_tasks",
        SCHEDULE_COLUMNS,
        "name",
    ),
    (
        "schedule time zones",
        "SELECT name, tz FROM _honker_scheduler_tz",
        "_honker_scheduler_tz",
        ("name", "tz"),
        "name",
    ),
    (
        "stream events",
        'SELECT "offset", topic, key, payload, created_at FROM _honker_stream',
        "_honker_stream",
        ("offset", "topic", "key", "payload", "created_at"),
        '"offset"',
    ),
    (
        "stream topics",
        "SELECT DISTINCT topic FROM _honker_stream",
        "_honker_stream_topics",
        ("topic",),
        "topic",
    ),
    (
        "consumer offsets",
        'SELECT name, topic, "offset" FROM _honker_stream_consumers',
        "_honker_stream_consumers",
        ("name", "topic", "offset"),
        "name, topic",
    ),
    (
        "results",
        "SELECT job_id, value, created_at, expires_at FROM _honker_results "
        "WHERE expires_at IS NULL OR expires_at > unixepoch()",
        "_honker_results",
        ("job_id", "value", "created_at", "expires_at"),
        "job_id",
    ),
)
TARGET_TABLES = ("_honker_live", "_honker_dead", "_honker_scheduler_tasks", "_honker_stream")


class TargetNotEmpty(RuntimeError):
    """The PostgreSQL target already holds honker data (pass ``force`` to merge into it)."""


def _quote(column: str) -> str:
    return f'"{column}"' if column in ("offset", "key") else column


def _copy(conn: Any, source: sqlite3.Connection, force: bool) -> dict[str, int]:
    if not force:
        busy = [t for t in TARGET_TABLES if conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
        if busy:
            raise TargetNotEmpty(
                f"the target already holds honker data ({', '.join(busy)}); "
                "pass --force to copy into it anyway (existing ids are kept, never duplicated)"
            )
    counts: dict[str, int] = {}
    for what, query, table, columns, key in COPIES:
        rows = source.execute(query).fetchall()
        if not rows:
            counts[what] = 0
            continue
        names = ", ".join(_quote(c) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING",
                rows,
            )
            counts[what] = max(0, cur.rowcount)
    seq = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for table, column, also in (
        ("_honker_live", "id", "(SELECT max(id) FROM _honker_dead)"),
        ("_honker_stream", "offset", "NULL"),
        ("_honker_notifications", "id", "NULL"),
    ):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
            f"GREATEST(%s, (SELECT max({_quote(column)}) FROM {table}), {also}, 1))",
            (int(seq.get(table, 0)),),
        )
    return counts


def migrate(sqlite_path: str, url: str, schema: str | None = None, force: bool = False) -> Any:
    """Copy the honker data of ``sqlite_path`` into the database at ``url``; counts per kind."""
    import os

    import honker

    if not os.path.isfile(sqlite_path):
        raise FileNotFoundError(f"no database file at {sqlite_path!r}")
    source = sqlite3.connect(f"file:{os.path.abspath(sqlite_path)}?mode=ro", uri=True)
    try:
        for _, query, *_rest in COPIES:
            source.execute(f"SELECT * FROM ({query}) LIMIT 0")
        source.execute("SELECT name, seq FROM sqlite_sequence LIMIT 0")
    except sqlite3.Error as exc:
        source.close()
        raise ValueError(f"{sqlite_path!r} is not a honker database ({exc})") from None
    db = honker.open(url, schema=schema)
    try:
        return db.engine.write(_copy, source, force)
    finally:
        db.close()
        source.close()
