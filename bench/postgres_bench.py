"""honker on PostgreSQL: the same figures as the SQLite benches, on one local server.

Starts a throwaway cluster (tests/pg.py: Debian's PostgreSQL 15, fsync off, loopback) and
measures, each on a fresh schema: enqueue at 1 and 100 per transaction, claim_one+ack,
claim_batch(32)+ack_batch, claim cost with 1k and with 100k jobs pending, the worker CLI's
tasks/s (concurrency 4, results stored) and cross-process wake latency (NOTIFY → listener).

Usage: python bench/postgres_bench.py [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _common import header, summary_ms, write_rates

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

import tasks_bench
import wake_latency

import honker
import pg


def _fill(db: honker.Database, n: int) -> None:
    """``n`` pending jobs on queue "bench", 10,000 per statement."""
    for start in range(0, n, 10_000):
        count = min(n, start + 10_000) - start
        db.engine.write(db.engine.ops.enqueue_many, "bench", [str(i) for i in range(count)], 0, 3)


def claim_ack_rate(url: str, n: int) -> float:
    db = honker.open(url)
    q = db.queue("bench")
    _fill(db, n)
    start = time.perf_counter()
    done = 0
    while (job := q.claim_one("w")) is not None:
        done += job.ack()
    rate = done / (time.perf_counter() - start)
    db.close()
    return rate


def claim_cost_ms(url: str, pending: int, sample: int = 500) -> float:
    """Mean ms of one claim_one+ack with ``pending`` jobs waiting."""
    db = honker.open(url)
    q = db.queue("bench")
    _fill(db, pending)
    db.query("ANALYZE _honker_live")
    began = time.perf_counter()
    for _ in range(sample):
        job = q.claim_one("w")
        assert job is not None
        job.ack()
    cost = (time.perf_counter() - began) / sample * 1000
    db.close()
    return cost


PROC_APP = """
import os, procrastinate
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_URL"]))

@app.task(queue="bench", name="square")
def square(x):
    return x * x
"""

PROC_RUN = """
import asyncio, sys, time
from procapp import app, square

async def main():
    async with app.open_async():
        if sys.argv[1] == "setup":
            await app.schema_manager.apply_schema_async()
            await square.batch_defer_async(*[{"x": i} for i in range(int(sys.argv[2]))])
            return
        start = time.perf_counter()
        await app.run_worker_async(
            queues=["bench"], concurrency=4, wait=False, install_signal_handlers=False
        )
        print(int(sys.argv[2]) / (time.perf_counter() - start))

asyncio.run(main())
"""


def procrastinate_rate(url: str, n: int) -> float | None:
    """procrastinate's worker (concurrency 4, sync task) draining ``n`` jobs deferred
    beforehand, on the same server; None when procrastinate is not installed."""
    import importlib.util
    import subprocess
    import tempfile

    if importlib.util.find_spec("procrastinate") is None:
        return None
    with tempfile.TemporaryDirectory() as appdir:
        with open(os.path.join(appdir, "procapp.py"), "w") as f:
            f.write(PROC_APP)
        env = dict(os.environ, BENCH_URL=url, PYTHONPATH=appdir)
        for step in ("setup", "work"):
            out = subprocess.run(
                [sys.executable, "-c", PROC_RUN, step, str(n)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    args, _ = parser.parse_known_args()
    try:
        pg.check_client()
        cluster = pg.Cluster()
    except pg.Unavailable as exc:
        print(f"skipped: {exc}")
        return
    cluster.start()
    try:
        n = args.n
        header("PostgreSQL: enqueue")
        single, batched = write_rates(
            n, lambda db: lambda i, tx: db.queue("bench").enqueue(i, tx=tx), cluster.fresh_url()
        )
        print(f"enqueue, 1 per tx:   {single:9,.0f} jobs/s")
        print(f"enqueue, 100 per tx: {batched:9,.0f} jobs/s")
        header("PostgreSQL: claim")
        print(f"claim_one+ack:             {claim_ack_rate(cluster.fresh_url(), n):9,.0f} jobs/s")
        rate = tasks_bench.claim_batch_rate(n * 4, cluster.fresh_url())
        print(f"claim_batch(32)+ack_batch: {rate:9,.0f} jobs/s")
        small = claim_cost_ms(cluster.fresh_url(), 1_000)
        large = claim_cost_ms(cluster.fresh_url(), 100_000)
        print(
            f"claim_one+ack cost: {small:.3f} ms with 1k pending, {large:.3f} ms with 100k "
            f"pending ({100 * (large - small) / small:+.0f} %)"
        )
        header("PostgreSQL: worker CLI, concurrency 4, results stored")
        for task in ("asquare", "square"):
            kind = "async task" if task == "asquare" else "sync task (thread)"
            rate = tasks_bench.run(n, 4, task, cluster.fresh_url())
            print(f"{kind:>20}: {rate:9,.0f} tasks/s (n={n})")
        proc = procrastinate_rate(cluster.fresh_url(), n)
        if proc is None:
            print("procrastinate: not installed (pip install procrastinate), not compared")
        else:
            print(
                f"{'procrastinate worker':>20}: {proc:9,.0f} tasks/s (concurrency 4, sync task, "
                f"jobs deferred beforehand; n={n})"
            )
        header("PostgreSQL: wake latency (commit of a notify -> listener in another process)")
        lat, used, elapsed = wake_latency.measure_latency(cluster.fresh_url(), "polling", 1000)
        print(f"{summary_ms(lat)}")
        print(f"listener CPU during the run: {100.0 * used / elapsed:.1f} % of one core")
        idle = wake_latency.measure_idle_cpu(cluster.fresh_url(), "polling", 5.0)
        print(f"idle CPU, one Database + one idle listener: {idle:.2f} % of one core over 5 s")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
