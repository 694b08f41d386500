"""Issue 13's honker-only targets, each printed beside its baseline or target (same run).

* enqueue, 1 per transaction, vs a raw sqlite3 INSERT+COMMIT into the same
  ``_honker_live`` schema; 100 per ``db.transaction()`` vs a raw ``executemany`` of 100
  rows into that schema;
* claim transactions per job: an in-process worker (``honker.run_workers``, concurrency
  8) while another process enqueues one task every 2 ms; every call of
  ``honker._ops.claim_batch`` is counted (and those that returned no row);
* idle worker CLI with default settings: CPU % of one core over 5 s, and enqueue ->
  handler p50 from another process;
* event-loop stalls: a 5 ms asyncio ticker in a process that runs a worker on the same
  database (busy with a backlog), while another thread of that process, and then another
  process, holds the writer for 0.5 s (``with db.transaction(): time.sleep(0.5)``).

Nothing here is asserted anywhere; the figures are for reading.

Usage: python bench/targets.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import _honker_app
from peers import HERE, honker_idle_and_latency

import _common  # noqa: F401  (first: puts this checkout's src/ ahead of any installed honker)
import honker
from _common import SRC, header, percentile, raw_connection, temp_db
from honker import _ops

ENQUEUER = r"""
import sys, time
sys.path[:0] = [sys.argv[4], sys.argv[5]]
import honker
import _honker_app

db = honker.open(sys.argv[1])
n, task = int(sys.argv[2]), _honker_app.tasks(db, "claims")[sys.argv[3]]
print("READY", flush=True)
sys.stdin.readline()
due = time.monotonic()
for i in range(n):
    task(i)
    due += 0.002
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
db.close()
"""

HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
import honker

db = honker.open(sys.argv[1])
print("READY", flush=True)
sys.stdin.readline()
with db.transaction():
    print(time.monotonic(), flush=True)
    time.sleep(float(sys.argv[3]))
print(time.monotonic(), flush=True)
db.close()
"""


async def start_helper(script: str, *argv: str) -> subprocess.Popen[str]:
    """Run ``python -c script *argv`` and return once it printed READY (it then waits for
    :func:`release`), so its start-up never falls inside a measured window."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = await asyncio.to_thread(proc.stdout.readline)
    if ready.strip() != "READY":
        raise RuntimeError(f"bench helper did not start: {ready!r}")
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    """Let a helper started by :func:`start_helper` go on."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


# -- enqueue against raw sqlite3 --------------------------------------------------------
RAW_LIVE_INSERT = "INSERT INTO _honker_live (queue, payload) VALUES ('bench', ?)"
# Per-connection settings copied from honker's own connections onto the raw one, so the
# baseline differs only in what honker does per call (wal_autocheckpoint alone moves the
# raw 1-row rate by tens of percent on this VM: honker checkpoints 10x less often).
MIRRORED_PRAGMAS = (
    "synchronous",
    "cache_size",
    "temp_store",
    "wal_autocheckpoint",
    "busy_timeout",
    "foreign_keys",
)


def mirrored_connection(db: honker.Database, path: str) -> tuple[sqlite3.Connection, str]:
    """A plain sqlite3 connection to ``path`` (WAL) with ``db``'s connection settings;
    also returns those settings as text."""
    conn = raw_connection(path)
    applied = []
    for name in MIRRORED_PRAGMAS:
        value = next(iter(db.query(f"PRAGMA {name}")[0].values()))
        conn.execute(f"PRAGMA {name}={int(value)}")
        applied.append(f"{name}={value}")
    return conn, " ".join(applied)


def enqueue_figures(n: int, rounds: int = 5) -> None:
    """Raw sqlite3 and ``queue.enqueue`` alternate in ``rounds`` slices of the work, each on
    its own database with honker's schema, so a change in the machine's load hits both."""
    header(
        f"enqueue vs raw sqlite3 into the same _honker_live schema ({rounds} interleaved rounds)"
    )
    with temp_db("raw.db") as raw_path, temp_db() as path:
        honker.open(raw_path).close()  # honker's schema, then only plain sqlite3 on it
        db = honker.open(path)
        conn, settings = mirrored_connection(db, raw_path)
        print(f"raw connection: WAL, {settings} (as honker's)")
        q = db.queue("bench")
        per_round = n // rounds
        rows = [(f'{{"i": {i}}}',) for i in range(100)]

        def raw_single() -> None:
            for i in range(per_round):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(RAW_LIVE_INSERT, (f'{{"i": {i}}}',))
                conn.execute("COMMIT")

        def raw_batch() -> None:
            for _ in range(per_round // 100):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(RAW_LIVE_INSERT, rows)
                conn.execute("COMMIT")

        def ours_single() -> None:
            for i in range(per_round):
                q.enqueue({"i": i})

        def ours_batch() -> None:
            for _ in range(per_round // 100):
                with db.transaction() as tx:
                    for i in range(100):
                        q.enqueue({"i": i}, tx=tx)

        def ours_many() -> None:
            for _ in range(per_round // 100):
                q.enqueue_many([{"i": i} for i in range(100)])

        steps = {
            "raw1": raw_single,
            "ours1": ours_single,
            "raw100": raw_batch,
            "ours100": ours_batch,
            "many100": ours_many,
        }
        took: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                took[name].append(time.perf_counter() - start)
        conn.close()
        db.close()
    work = {
        "raw1": per_round,
        "ours1": per_round,
        "raw100": per_round // 100 * 100,
        "ours100": per_round // 100 * 100,
        "many100": per_round // 100 * 100,
    }
    rate = {name: rounds * work[name] / sum(t) for name, t in took.items()}
    for ours, raw, raw_label, label, target in (
        ("ours1", "raw1", "raw INSERT+COMMIT", "queue.enqueue, 1 per transaction", 0.95),
        (
            "ours100",
            "raw100",
            "raw executemany(100 rows)+COMMIT",
            "queue.enqueue, 100 per db.transaction()",
            0.8,
        ),
        (
            "many100",
            "raw100",
            "raw executemany(100 rows)+COMMIT",
            "queue.enqueue_many(100 payloads), 1 transaction",
            0.8,
        ),
    ):
        each = sorted(took[raw][r] / took[ours][r] * work[ours] / work[raw] for r in range(rounds))
        r = rate[ours] / rate[raw]
        print(f"{raw_label + ':':<41} {rate[raw]:10,.0f} rows/s")
        print(
            f"{label + ':':<41} {rate[ours]:10,.0f} jobs/s = {r:.2f} x raw "
            f"(rounds {each[0]:.2f}-{each[-1]:.2f}; target >= {target} x: {verdict(r >= target)})"
        )


# -- claim transactions per job ---------------------------------------------------------
class ClaimCounter:
    """Stands in for ``_ops.claim_batch``: counts calls, empty calls and rows claimed."""

    def __init__(self, real: Callable[..., list[Any]]) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.calls = self.empty = self.rows = 0

    def __call__(self, *args: Any, **kwargs: Any) -> list[Any]:
        rows = self.real(*args, **kwargs)
        with self.lock:
            self.calls += 1
            self.empty += not rows
            self.rows += len(rows)
        return rows

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.calls, self.empty, self.rows

    def reset(self) -> None:
        with self.lock:
            self.calls = self.empty = self.rows = 0


def count_results(path: str) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM _honker_results").fetchone()[0])
    finally:
        conn.close()


async def claims_per_job(n: int, task: str, slots: int) -> tuple[int, int, int, int, float]:
    """(claim calls, empty calls, rows claimed, jobs done, seconds) while ``n`` jobs of
    ``task`` arrive one per 2 ms from another process and ``slots`` slots run them."""
    counter = ClaimCounter(_ops.claim_batch)
    _ops.claim_batch = counter
    try:
        with temp_db() as path:
            db = honker.open(path)
            _honker_app.tasks(db, "claims")
            enqueuer = await start_helper(ENQUEUER, path, str(n), task, SRC, HERE)
            stop = asyncio.Event()
            pool = asyncio.create_task(
                honker.run_workers(db, queue="claims", concurrency=slots, stop_event=stop)
            )
            await asyncio.sleep(0.5)  # let every slot settle into its idle wait
            counter.reset()
            start = time.monotonic()
            release(enqueuer)
            while (done := await asyncio.to_thread(count_results, path)) < n:
                if pool.done():
                    pool.result()
                await asyncio.sleep(0.02)
            calls, empty, rows = counter.snapshot()
            elapsed = time.monotonic() - start
            stop.set()
            await pool
            await asyncio.to_thread(enqueuer.wait, 30)
            db.close()
    finally:
        _ops.claim_batch = counter.real
    return calls, empty, rows, done, elapsed


def claim_figures(n: int) -> None:
    header(f"claim transactions per job: run_workers concurrency 8, one job / 2 ms, {n} jobs")
    for task, label in (("noop", "sync"), ("anoop", "async")):
        calls, empty, rows, done, elapsed = asyncio.run(claims_per_job(n, task, 8))
        per_job = calls / max(1, done)
        if calls == 0:
            print(
                f"{label} tasks: no call of honker._ops.claim_batch was seen: the worker no "
                "longer claims through that module attribute, so this count is void"
            )
            continue
        print(
            f"{label} tasks: {calls} claim_batch calls ({empty} returned no row, {rows} rows) "
            f"for {done} jobs in {elapsed:.1f} s = {per_job:.2f} per job "
            f"(target <= 1.2: {verdict(per_job <= 1.2)})"
        )


# -- idle worker with default settings --------------------------------------------------
def idle_figures(seconds: float, latency_n: int) -> None:
    header("idle worker CLI, default settings (python -m honker worker _honker_app:db)")
    idle, lat = honker_idle_and_latency(None, seconds, latency_n, ("stamp", "astamp"))
    print(
        f"idle CPU over {seconds:g} s: {idle}  (target <= 0.5 %: {verdict(idle.sched_pct <= 0.5)})"
    )
    for kind, label in (("stamp", "sync"), ("astamp", "async")):
        p50 = percentile(lat[kind], 50) * 1000
        p99 = percentile(lat[kind], 99) * 1000
        print(
            f"enqueue -> handler, {label} task, other process: p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms  (target p50 <= 1 ms: {verdict(p50 <= 1.0)})"
        )


# -- event-loop stalls while the writer is held -----------------------------------------
async def ticker(stamps: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.005)
        stamps.append(time.monotonic())


def longest_gap(stamps: list[float], lo: float, hi: float) -> float:
    """Longest interval between consecutive ticks that overlaps [lo, hi]."""
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b >= lo and a <= hi]
    return max(gaps, default=float("nan"))


async def hold_in_thread(db: honker.Database, hold_s: float) -> tuple[float, float]:
    window: list[float] = []

    def hold() -> None:
        with db.transaction():
            window.append(time.monotonic())
            time.sleep(hold_s)
        window.append(time.monotonic())

    thread = threading.Thread(target=hold, name="bench-writer-holder")
    thread.start()
    await asyncio.to_thread(thread.join)
    return window[0], window[1]


async def hold_in_process(path: str, hold_s: float) -> tuple[float, float]:
    # Started and imported before the measured window; released by a line on stdin.
    proc = await start_helper(HOLDER, path, SRC, str(hold_s))
    assert proc.stdout is not None
    await asyncio.sleep(0.5)
    release(proc)
    begin = float(await asyncio.to_thread(proc.stdout.readline))
    end = float(await asyncio.to_thread(proc.stdout.readline))
    await asyncio.to_thread(proc.wait, 30)
    return begin, end


async def loop_stall(where: str, backlog: int, hold_s: float = 0.5) -> tuple[float, float, int]:
    """(longest tick gap during the hold, longest before it, jobs done during the run)."""
    with temp_db() as path:
        db = honker.open(path)
        nap = _honker_app.tasks(db, "stall")["nap"]
        for start in range(0, backlog, 1000):
            with db.transaction() as tx:
                for i in range(start, min(backlog, start + 1000)):
                    nap.apply_async((i,), tx=tx)
        stop = asyncio.Event()
        stamps: list[float] = []
        pool = asyncio.create_task(
            honker.run_workers(db, queue="stall", concurrency=4, stop_event=stop)
        )
        tick = asyncio.create_task(ticker(stamps, stop))
        await asyncio.sleep(0.5)
        if where == "thread":
            await asyncio.sleep(0.5)
            lo, hi = await hold_in_thread(db, hold_s)
        else:
            lo, hi = await hold_in_process(path, hold_s)
        await asyncio.sleep(0.3)
        stop.set()
        await tick
        await pool
        done = count_results(path)
        db.close()
    before = longest_gap([t for t in stamps if t < lo], 0.0, lo)
    return longest_gap(stamps, lo, hi), before, done


def stall_figures(backlog: int) -> None:
    header("longest gap of a 5 ms asyncio ticker beside a busy worker, writer held 0.5 s")
    for where in ("thread", "process"):
        gap, before, done = asyncio.run(loop_stall(where, backlog))
        print(
            f"writer held by another {where:<7}: longest gap {gap * 1000:6.1f} ms "
            f"(before the hold: {before * 1000:.1f} ms; {done} jobs ran) "
            f"(target <= 20 ms: {verdict(gap <= 0.020)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args, _ = parser.parse_known_args()
    enqueue_figures(5000 if args.quick else 20000)
    claim_figures(300 if args.quick else 1000)
    idle_figures(args.idle_seconds, 200 if args.quick else 500)
    stall_figures(10000)


if __name__ == "__main__":
    main()
