"""Cross-process wake latency and idle CPU of the update watcher.

Latency: a listener process runs ``db.listen``; this process commits notifications at
random spacing, each carrying ``time.monotonic()`` (system-wide on Linux) taken just before
COMMIT; the listener records receive time minus that stamp.

Listener CPU under load: CPU time of the listener process during the latency run (one
commit every 2-6 ms), per commit and as a share of one core.

Idle CPU: one Database with one idle listener for 5 s, CPU time read from /proc.

Every watcher backend ("polling", "kernel", "shm") is measured in turn unless ``--backend``
names one; a backend this machine cannot run is reported and skipped.

Usage: python bench/wake_latency.py [--backend polling|kernel|shm] [--n 1000] [--runs 1]
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
    db = honker.open(sys.argv[1], watcher_backend=sys.argv[3])
    n = int(sys.argv[2])
    listener = db.listen("bench")
    print("READY", flush=True)
    lat = []
    async for note in listener:
        if note.payload == "warm":
            continue
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
    db = honker.open(sys.argv[1], watcher_backend=sys.argv[2])
    listener = db.listen("nobody")
    print("READY", flush=True)
    async for _ in listener:
        pass

asyncio.run(main())
"""


BACKENDS = ("polling", "kernel", "shm")


def measure_latency(path: str, backend: str, n: int) -> tuple[list[float], float, float]:
    """Wake latencies (s), the listener's CPU seconds and the wall seconds of the run."""
    db = honker.open(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, path, str(n), backend, SRC],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    with db.transaction() as tx:
        tx.notify("bench", "warm")
    time.sleep(0.2)
    rng = random.Random(42)
    start_cpu = cpu_seconds(proc.pid)
    start = time.monotonic()
    for _ in range(n):
        time.sleep(rng.uniform(0.002, 0.006))
        with db.transaction() as tx:
            tx.notify("bench", time.monotonic())
    out = proc.stdout.readline()
    used = cpu_seconds(proc.pid) - start_cpu
    elapsed = time.monotonic() - start
    proc.wait(timeout=30)
    db.close()
    return list(json.loads(out)), used, elapsed


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


def available(backend: str) -> str | None:
    """``None`` if ``backend`` can run here, else the reason it cannot."""
    with temp_db() as path:
        try:
            honker.open(path, watcher_backend=backend).close()
        except ValueError as exc:
            return str(exc)
    return None


def bench_backend(backend: str, args: argparse.Namespace) -> None:
    header(f"wake latency, backend={backend}")
    reason = available(backend)
    if reason is not None:
        print(f"skipped: {reason}")
        return
    for run in range(args.runs):
        tag = f"[run {run + 1}/{args.runs}] " if args.runs > 1 else ""
        with temp_db() as path:
            lat, used, elapsed = measure_latency(path, backend, args.n)
            print(f"{tag}notify commit -> listener in another process: {summary_ms(lat)}")
            print(
                f"{tag}listener CPU during the run: {1e6 * used / max(1, len(lat)):.0f} us "
                f"per commit ({100.0 * used / elapsed:.1f} % of one core)"
            )
        with temp_db() as path:
            cpu = measure_idle_cpu(path, backend, args.idle_seconds)
            print(
                f"{tag}idle CPU, one Database + one idle listener: {cpu:.2f} % of one core "
                f"over {args.idle_seconds:.0f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args, _ = parser.parse_known_args()
    for backend in BACKENDS if args.backend is None else (args.backend,):
        bench_backend(backend, args)


if __name__ == "__main__":
    main()
