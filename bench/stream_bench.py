"""Stream throughput and latency beside raw sqlite3 measured in the same run.

* publish with one event per transaction (and 100 per transaction);
* replay rate: a subscriber reading a 100,000-event backlog through ``subscribe()``;
* live publish -> receive latency across processes (subscriber in another process).

Usage: python bench/stream_bench.py [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable

import honker
from _common import SRC, header, raw_single_insert_rate, summary_ms, temp_db, write_rates

SUBSCRIBER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[3])
import honker

async def main():
    db = honker.open(sys.argv[1])
    n = int(sys.argv[2])
    sub = db.stream("live").subscribe()
    print("READY", flush=True)
    lat = []
    async for event in sub:
        lat.append(time.monotonic() - event.payload)
        if len(lat) >= n:
            break
    print(json.dumps(lat), flush=True)

asyncio.run(main())
"""


def publish_rates(n: int) -> tuple[float, float]:
    """``stream.publish``: own transaction each, then 100 per ``db.transaction()``."""

    def make(db: honker.Database) -> Callable[[int, honker.Transaction | None], None]:
        s = db.stream("bench")
        return lambda i, tx: s.publish({"i": i}, tx=tx)

    return write_rates(n, make)


async def replay_rate(n: int) -> float:
    with temp_db() as path:
        db = honker.open(path)
        s = db.stream("bench")
        for b in range(0, n, 1000):
            with db.transaction() as tx:
                for i in range(b, b + 1000):
                    s.publish({"i": i}, tx=tx)
        db.query("PRAGMA wal_checkpoint(TRUNCATE)")
        start = time.perf_counter()
        seen = 0
        async for _event in s.subscribe(consumer="bench", save_every_n=1000, save_every_s=1.0):
            seen += 1
            if seen == n:
                break
        rate = n / (time.perf_counter() - start)
        db.close()
    return rate


def live_latency(n: int) -> list[float]:
    with temp_db() as path:
        db = honker.open(path)
        s = db.stream("live")
        proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, path, str(n), SRC],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.2)
        rng = random.Random(7)
        for _ in range(n):
            time.sleep(rng.uniform(0.002, 0.006))
            s.publish(time.monotonic())
        lat = list(json.loads(proc.stdout.readline()))
        proc.wait(timeout=30)
        db.close()
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    header("raw sqlite3 (same PRAGMAs)")
    raw = raw_single_insert_rate(args.n)
    print(f"raw single-row commits, plain table: {raw:10,.0f} /s")
    header("stream publish")
    single, batched = publish_rates(args.n)
    print(f"publish, 1 event/tx:    {single:10,.0f} /s  = {single / raw:.2f} x raw")
    print(f"publish, 100 events/tx: {batched:10,.0f} /s")
    header("replay")
    rate = asyncio.run(replay_rate(100_000))
    print(f"replay of a 100,000-event backlog through subscribe(): {rate:10,.0f} events/s")
    header("live publish -> subscriber in another process (polling watcher)")
    print(summary_ms(live_latency(500)))


if __name__ == "__main__":
    main()
