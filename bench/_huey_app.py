"""The Huey app of the peer benchmarks: ``huey_consumer _huey_app.huey -w 4 -k thread``.

``SqliteHuey`` cannot ask for ``synchronous=NORMAL`` (its ``fsync`` option maps to FULL or
OFF, and leaving it unset keeps SQLite's default, FULL), so the storage below sets it on
every connection it opens, to match honker's PRAGMAs. ``store_none=True`` makes Huey store
the ``None`` result of a no-op task, as honker does.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from huey import SqliteHuey
from huey.storage import SqliteStorage


class NormalSyncSqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite storage with ``PRAGMA synchronous=NORMAL`` (WAL, as by default)."""

    def _create_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._create_connection()
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


def make_huey(path: str) -> tuple[Any, dict[str, Any]]:
    """A ``SqliteHuey`` on ``path`` and its tasks (name -> task), as the consumer sees them."""
    app = SqliteHuey("bench", filename=path, storage_class=NormalSyncSqliteStorage, store_none=True)

    @app.task(name="noop")
    def noop(i: int) -> None:
        return None

    @app.task(name="stamp")
    def stamp(i: int) -> float:
        return time.time()

    return app, {"noop": noop, "stamp": stamp}


huey: Any = None
if "BENCH_DB" in os.environ:
    huey, _tasks = make_huey(os.environ["BENCH_DB"])
