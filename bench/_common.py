"""Shared helpers for the benchmark scripts: raw-sqlite3 baselines, percentiles, temp dirs."""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

RAW_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)


@contextmanager
def temp_db(name: str = "bench.db") -> Iterator[str]:
    """A fresh database path in a temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="honker-bench-") as d:
        yield os.path.join(d, name)


def raw_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in RAW_PRAGMAS:
        conn.execute(pragma)
    return conn


def raw_single_insert_rate(n: int = 20000) -> float:
    """Commits/s of one-row INSERT transactions with plain sqlite3 (same PRAGMAs as honker)."""
    with temp_db("raw.db") as path:
        conn = raw_connection(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT)")
        start = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (payload) VALUES (?)", (f'{{"i": {i}}}',))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return n / elapsed


def raw_batch_insert_rate(batches: int = 500, per_tx: int = 100) -> float:
    """Rows/s of 100-row INSERT transactions with plain sqlite3."""
    with temp_db("raw.db") as path:
        conn = raw_connection(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT)")
        rows = [(f'{{"i": {i}}}',) for i in range(per_tx)]
        start = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t (payload) VALUES (?)", rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return batches * per_tx / elapsed


def raw_live_single_rate(n: int = 20000) -> float:
    """Commits/s of one-row INSERTs into honker's own ``_honker_live`` schema (3 indexes)."""
    import honker

    with temp_db() as path:
        honker.open(path).close()
        conn = raw_connection(path)
        start = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO _honker_live (queue, payload) VALUES ('bench', ?)",
                (f'{{"i": {i}}}',),
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return n / elapsed


def write_rates(n: int, make_write: Any, target: str | None = None) -> tuple[float, float]:
    """Rates of ``write(i, tx)`` (``write = make_write(db)``) on a fresh database (or on
    ``target``): its own transaction each (``tx=None``), then 100 per ``db.transaction()``.
    Returns ``(single/s, batched/s)``."""
    import honker

    with temp_db() as path:
        db = honker.open(target or path)
        write = make_write(db)
        start = time.perf_counter()
        for i in range(n):
            write(i, None)
        single = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for b in range(n // 100):
            with db.transaction() as tx:
                for i in range(100):
                    write(b * 100 + i, tx)
        batched = (n // 100) * 100 / (time.perf_counter() - start)
        db.close()
    return single, batched


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):.3f} ms  p90 {percentile(ms, 90):.3f} ms  "
        f"p99 {percentile(ms, 99):.3f} ms  mean {statistics.fmean(ms):.3f} ms  (n={len(ms)})"
    )


def cpu_seconds(pid: int) -> float:
    """CPU seconds consumed so far by every thread of process ``pid`` (Linux schedstat, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def header(title: str) -> None:
    print()
    print(f"== {title} ==")
