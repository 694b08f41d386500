"""Cross-process wake latency and idle CPU of the update watcher.

Latency: a listener process runs ``db.listen``; this process commits notifications at
random spacing, each carrying ``time.monotonic()`` (system-wide on Linux) taken just before
COMMIT; the listener records receive time minus that stamp.

Idle CPU: one Database with one idle listener for 5 s, CPU time read from /proc.

Usage: python bench/wake_latency.py [--backend polling] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time

import honker
from _common import SRC, cpu_seconds, header, summary_ms, temp_db

LISTENER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[4])
import honker

async def main():
    db = honker.open(sys.argv[1], watcher_backend=None if sys.argv[3] == "polling" else sys.argv[3])
    n = int(sys.argv[2])
    listener = db.listen("bench")
    print("READY", flush=True)
    lat = []
    async for note in listener:
        if note.payload == "stop":
            break
        lat.append(time.monotonic() - note.payload)
        if len(lat) >= n:
            break
    print(json.dumps(lat), flush=True)

asyncio.run(main())
"""

IDLE = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[3])
import honker

async def main():
    db = honker.open(sys.argv[1], watcher_backend=None if sys.argv[2] == "polling" else sys.argv[2])
    listener = db.listen("nobody")
    print("READY", flush=True)
    async for _ in listener:
        pass

asyncio.run(main())
"""


def measure_latency(path: str, backend: str, n: int) -> list[float]:
    db = honker.open(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, path, str(n), backend, SRC],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.2)
    rng = random.Random(42)
    for _ in range(n):
        time.sleep(rng.uniform(0.002, 0.006))
        with db.transaction() as tx:
            tx.notify("bench", time.monotonic())
    out = proc.stdout.readline()
    proc.wait(timeout=30)
    db.close()
    return list(json.loads(out))


def measure_idle_cpu(path: str, backend: str, seconds: float = 5.0) -> float:
    honker.open(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", IDLE, path, backend, SRC], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.5)
    start_cpu = cpu_seconds(proc.pid)
    start = time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(proc.pid) - start_cpu
    elapsed = time.monotonic() - start
    proc.kill()
    proc.wait()
    return 100.0 * used / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="polling")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    header(f"wake latency, backend={args.backend}")
    with temp_db() as path:
        lat = measure_latency(path, args.backend, args.n)
        print(f"notify commit -> listener in another process: {summary_ms(lat)}")
    with temp_db() as path:
        cpu = measure_idle_cpu(path, args.backend, args.idle_seconds)
        print(
            f"idle CPU, one Database + one idle listener: {cpu:.2f} % of one core "
            f"over {args.idle_seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
