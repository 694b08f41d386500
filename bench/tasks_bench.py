"""End-to-end task throughput across processes.

This process enqueues N decorated-task calls; ``python -m honker worker --concurrency 4``
runs them in another process and stores each result; we time from the first enqueue to
the last stored result. Printed beside claim_batch(32)+ack_batch measured in the same run.

Usage: python bench/tasks_bench.py [--n 5000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time

import honker
from _common import SRC, header, temp_db

APP = textwrap.dedent(
    """
    import os
    import honker

    db = honker.open(os.environ["BENCH_DB"])
    q = db.queue("bench")

    @q.task(name="square")
    def square(x: int) -> int:
        return x * x

    @q.task(name="asquare")
    async def asquare(x: int) -> int:
        return x * x
    """
)


def run(n: int, concurrency: int, task: str, target: str | None = None) -> float:
    """Tasks/s of the worker CLI; on a fresh file, or on ``target`` (e.g. a PostgreSQL URL)."""
    with temp_db() as scratch:
        path = target or scratch
        appdir = os.path.dirname(scratch)
        with open(os.path.join(appdir, "benchapp.py"), "w") as f:
            f.write(APP)
        env = dict(os.environ, BENCH_DB=path, PYTHONPATH=f"{appdir}{os.pathsep}{SRC}")
        db = honker.open(path)
        q = db.queue("bench")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honker",
                "worker",
                "benchapp:db",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        worker.stdout.readline()  # banner
        envelope = {"__honker_task__": {"task": task, "args": [0], "kwargs": {}}}
        start = time.perf_counter()
        for i in range(0, n, 100):
            with db.transaction() as tx:
                for j in range(i, min(n, i + 100)):
                    envelope["__honker_task__"]["args"] = [j]
                    q.enqueue(envelope, tx=tx)
        while db.query("SELECT COUNT(*) AS c FROM _honker_results")[0]["c"] < n:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        db.close()
    return n / elapsed


def claim_batch_rate(n: int, target: str | None = None) -> float:
    with temp_db() as scratch:
        db = honker.open(target or scratch)
        q = db.queue("bench")
        with db.transaction() as tx:
            for i in range(n):
                q.enqueue(i, tx=tx)
        done = 0
        start = time.perf_counter()
        while done < n:
            jobs = q.claim_batch("w", 32)
            done += q.ack_batch([j.id for j in jobs], "w")
        rate = done / (time.perf_counter() - start)
        db.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    header(f"tasks end to end: enqueue here, CLI worker --concurrency {args.concurrency} there")
    for task in ("asquare", "square"):
        kind = "async task" if task == "asquare" else "sync task (thread)"
        rate = run(args.n, args.concurrency, task)
        print(f"{kind:>20}: {rate:9,.0f} tasks/s with results stored (n={args.n})")
    print(f"{'claim_batch(32)+ack':>20}: {claim_batch_rate(args.n * 4):9,.0f} jobs/s (same run)")


if __name__ == "__main__":
    main()
