"""Queue throughput beside raw sqlite3 measured in the same run.

Figures:
* enqueue with one job per transaction and 100 jobs per transaction;
* claim_one+ack and claim_batch(32)+ack_batch with ~1k, ~5k and ~50k jobs pending
  (claim cost must not grow with the backlog);
* end-to-end jobs/s through the ``async for job in queue.claim(...)`` iterator;
* raw sqlite3: one-row INSERT commits into a plain table and into the same
  ``_honker_live`` schema (its three indexes), and 100-row commits.

Usage: python bench/queue_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import honker
from _common import (
    header,
    raw_batch_insert_rate,
    raw_live_single_rate,
    raw_single_insert_rate,
    temp_db,
    write_rates,
)


def enqueue_rates(n: int) -> tuple[float, float]:
    """``queue.enqueue``: own transaction each, then 100 per ``db.transaction()``."""

    def make(db: honker.Database) -> Callable[[int, honker.Transaction | None], int]:
        q = db.queue("bench")
        return lambda i, tx: q.enqueue({"i": i}, tx=tx)

    return write_rates(n, make)


def fill(db: honker.Database, q: honker.Queue, count: int) -> None:
    """Enqueue ``count`` jobs, then checkpoint so the fill's WAL is not billed to the test."""
    for start in range(0, count, 1000):
        with db.transaction() as tx:
            for i in range(start, min(count, start + 1000)):
                q.enqueue({"i": i}, tx=tx)
    db.query("PRAGMA wal_checkpoint(TRUNCATE)")


def claim_rates(pending: int, ops: int) -> tuple[float, float]:
    with temp_db() as path:
        db = honker.open(path)
        q = db.queue("bench")
        fill(db, q, pending + ops)
        start = time.perf_counter()
        for _ in range(ops):
            job = q.claim_one("w")
            assert job is not None
            job.ack()
        one = ops / (time.perf_counter() - start)
        fill(db, q, ops)
        done = 0
        start = time.perf_counter()
        while done < ops:
            jobs = q.claim_batch("w", 32)
            done += q.ack_batch([j.id for j in jobs], "w")
        batch = done / (time.perf_counter() - start)
        db.close()
    return one, batch


async def iterator_rate(n: int) -> float:
    with temp_db() as path:
        db = honker.open(path)
        q = db.queue("bench")
        fill(db, q, n)
        start = time.perf_counter()
        seen = 0
        async for job in q.claim("w"):
            job.ack()
            seen += 1
            if seen == n:
                break
        rate = n / (time.perf_counter() - start)
        db.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    n = 5000 if args.quick else 20000

    header("raw sqlite3 (same PRAGMAs: WAL, synchronous=NORMAL)")
    raw_single = raw_single_insert_rate(n)
    raw_live = raw_live_single_rate(n)
    raw_batch = raw_batch_insert_rate(n // 100)
    print(f"raw single-row commits, plain table:        {raw_single:10,.0f} /s")
    print(f"raw single-row commits, _honker_live schema: {raw_live:10,.0f} /s")
    print(f"raw 100-row commits:                         {raw_batch:10,.0f} rows/s")

    header("enqueue")
    single, batched = enqueue_rates(n)
    print(
        f"enqueue, 1 job/tx:    {single:10,.0f} jobs/s  = {single / raw_single:.2f} x raw plain, "
        f"{single / raw_live:.2f} x raw same-schema"
    )
    print(
        f"enqueue, 100 jobs/tx: {batched:10,.0f} jobs/s  = {batched / raw_batch:.2f} x raw 100-row"
    )

    header("claim + ack at different backlogs")
    results = {}
    for pending in (1_000, 5_000, 50_000):
        ops = min(pending, 2000 if args.quick else 5000)
        one, batch = claim_rates(pending, ops)
        results[pending] = (one, batch)
        print(
            f"~{pending:>6,} pending: claim_one+ack {one:9,.0f} /s   "
            f"claim_batch(32)+ack_batch {batch:10,.0f} jobs/s"
        )
    flat = results[50_000][0] / results[1_000][0]
    print(f"claim_one+ack at 50k vs 1k pending: {flat:.2f} x")

    header("end to end through the async claim iterator (one worker)")
    rate = asyncio.run(iterator_rate(n // 2))
    print(f"async for job in q.claim(): {rate:10,.0f} jobs/s (claim + ack, one per transaction)")


if __name__ == "__main__":
    main()
