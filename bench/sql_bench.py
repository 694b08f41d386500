"""Enqueue through the SQL surface vs the Python API, beside raw sqlite3 in the same run.

Figures (jobs/s, every commit durable under WAL + synchronous=NORMAL on all sides):
* ``SELECT honker_enqueue(...)`` on an application connection after ``honker.attach``,
  one job per transaction and 100 per transaction;
* ``queue.enqueue(...)`` (honker's writer), one job per transaction and 100 per
  transaction (``tx=``);
* raw sqlite3: one-row INSERT commits into a plain table and into the ``_honker_live``
  schema (its indexes), 100-row ``executemany`` commits, and 100 separate INSERT statements
  per commit into ``_honker_live``, on a connection with the same PRAGMAs.

Usage: python bench/sql_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time

from queue_bench import enqueue_rates

import honker
from _common import (
    header,
    raw_batch_insert_rate,
    raw_connection,
    raw_live_single_rate,
    raw_single_insert_rate,
    temp_db,
)

ENQUEUE = "SELECT honker_enqueue('bench', ?, NULL, NULL, 0, 3, NULL)"


def raw_live_batch_rate(n: int) -> float:
    """100 one-row INSERT statements per transaction into ``_honker_live`` (no executemany)."""
    with temp_db() as path:
        honker.open(path).close()
        conn = raw_connection(path)
        start = time.perf_counter()
        for b in range(n // 100):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(100):
                conn.execute(
                    "INSERT INTO _honker_live (queue, payload) VALUES ('bench', ?)",
                    (json.dumps({"i": b * 100 + i}),),
                )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return (n // 100) * 100 / elapsed


def attached_rates(n: int) -> tuple[float, float]:
    """``SELECT honker_enqueue(...)`` on an attached connection: 1 and 100 per transaction."""
    with temp_db() as path:
        honker.open(path).close()  # the file as an app would find it: WAL, schema present
        conn = raw_connection(path)
        honker.attach(conn)
        start = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(ENQUEUE, (json.dumps({"i": i}),)).fetchone()
            conn.execute("COMMIT")
        single = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for b in range(n // 100):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(100):
                conn.execute(ENQUEUE, (json.dumps({"i": b * 100 + i}),)).fetchone()
            conn.execute("COMMIT")
        batched = (n // 100) * 100 / (time.perf_counter() - start)
        count = conn.execute("SELECT COUNT(*) FROM _honker_live").fetchone()[0]
        assert count == n + (n // 100) * 100, count
        conn.close()
    return single, batched


def call_overhead_us(n: int) -> tuple[float, float]:
    """Per-row cost inside one big transaction: SQL function call vs a plain INSERT (µs)."""
    with temp_db() as path:
        honker.open(path).close()
        conn = raw_connection(path)
        honker.attach(conn)
        payloads = [json.dumps({"i": i}) for i in range(n)]
        conn.execute("BEGIN IMMEDIATE")
        start = time.perf_counter()
        for p in payloads:
            conn.execute("INSERT INTO _honker_live (queue, payload) VALUES ('bench', ?)", (p,))
        raw = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for p in payloads:
            conn.execute(ENQUEUE, (p,)).fetchone()
        fn = (time.perf_counter() - start) / n * 1e6
        conn.execute("COMMIT")
        conn.close()
    return raw, fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one round")
    args = parser.parse_args()
    n = 5000 if args.quick else 10000
    rounds = 1 if args.quick else 3
    print(
        f"SQLite {sqlite3.sqlite_version}; {n:,} jobs per figure and round; median of "
        f"{rounds} interleaved round(s)"
    )
    figures: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(rounds):  # interleaved, so background load hits every figure alike
        record("raw_single", raw_single_insert_rate(n))
        record("raw_live", raw_live_single_rate(n))
        record("raw_batch", raw_batch_insert_rate(n // 100))
        record("raw_live_batch", raw_live_batch_rate(n))
        sql_single, sql_batched = attached_rates(n)
        record("sql_single", sql_single)
        record("sql_batched", sql_batched)
        api_single, api_batched = enqueue_rates(n)
        record("api_single", api_single)
        record("api_batched", api_batched)
        raw_us, fn_us = call_overhead_us(n)
        record("raw_us", raw_us)
        record("fn_us", fn_us)
    f = {name: statistics.median(values) for name, values in figures.items()}

    header("raw sqlite3 (same PRAGMAs: WAL, synchronous=NORMAL)")
    print(f"raw single-row commits, plain table:         {f['raw_single']:10,.0f} /s")
    print(f"raw single-row commits, _honker_live schema: {f['raw_live']:10,.0f} /s")
    print(f"raw 100-row commits (executemany):           {f['raw_batch']:10,.0f} rows/s")
    print(f"raw 100 INSERTs/commit, _honker_live schema: {f['raw_live_batch']:10,.0f} rows/s")

    header("enqueue: SQL function on an attached connection vs the Python API")
    for label, key in (
        ("SELECT honker_enqueue (attached)", "sql"),
        ("queue.enqueue (honker writer)  ", "api"),
    ):
        single, batched = f[f"{key}_single"], f[f"{key}_batched"]
        print(
            f"{label} 1/tx:   {single:9,.0f} jobs/s = {single / f['raw_live']:.2f} x raw "
            "same-schema"
        )
        print(
            f"{label} 100/tx: {batched:9,.0f} jobs/s = "
            f"{batched / f['raw_live_batch']:.2f} x raw 100 INSERTs same-schema"
        )

    header("per-row cost inside one transaction")
    raw_us, fn_us = f["raw_us"], f["fn_us"]
    print(f"INSERT INTO _honker_live:   {raw_us:6.2f} us/row")
    print(f"SELECT honker_enqueue(...): {fn_us:6.2f} us/row (+{fn_us - raw_us:.2f} us per call)")


if __name__ == "__main__":
    main()
