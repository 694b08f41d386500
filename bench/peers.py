"""honker beside Huey 3.5 (SqliteHuey) on one workload, measured in the same run.

Both systems run on the same machine, each on a fresh database file with WAL and
``synchronous=NORMAL`` (Huey's storage is told so in ``_huey_app.py``), each task storing
its result:

* worker CLI tasks/s: N no-op tasks are enqueued first (one per transaction, which is
  also the enqueue figure), then the worker CLI drains them -- honker:
  ``python -m honker worker _honker_app:db --concurrency 4``, with sync and with async
  tasks; Huey: ``huey_consumer _huey_app.huey -w 4 -k thread`` (as is, which logs two INFO
  lines per task, and with ``-q``). The rate is taken from the first stored result to the
  last, so process start-up is not billed to either;
* enqueue, 1 per transaction: that fill, plus honker's ``queue.enqueue({"i": i})``;
* idle worker CPU: the same worker commands on an empty queue, over 5 s starting 1 s after
  start-up, from ``/proc/PID/stat`` (utime+stime, 10 ms ticks) and, finer, the process's
  per-thread schedstat;
* enqueue -> handler latency across processes: this process takes ``time.time()`` just
  before each enqueue (random 2-6 ms spacing, after a discarded warm-up); the task
  returns ``time.time()`` at its start, stored as its result.

Huey is installed only in the bench environment (``make bench``, ``.venv-bench``); without
it the Huey columns are skipped. Nothing here is asserted anywhere.

Usage: python bench/peers.py [--n 20000] [--runs 1] [--latency-n 500] [--idle-seconds 5]
       [--no-huey] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import _honker_app

import _common  # noqa: F401  (first: puts this checkout's src/ ahead of any installed honker)
import honker
from _common import SRC, cpu_seconds, header, percentile, temp_db

HERE = os.path.dirname(os.path.abspath(__file__))

HONKER_RESULTS_SQL = "SELECT COUNT(*) FROM _honker_results"
HUEY_RESULTS_SQL = "SELECT COUNT(*) FROM kv WHERE queue = 'bench'"


def huey_missing() -> str | None:
    """``None`` if Huey can be imported here, else why not."""
    try:
        import huey  # noqa: F401
    except ImportError:
        return "huey is not installed in this interpreter (run `make bench`: .venv-bench)"
    return None


def _env(path: str) -> dict[str, str]:
    return dict(os.environ, BENCH_DB=path, PYTHONPATH=os.pathsep.join([HERE, SRC]))


def honker_worker_cmd(concurrency: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "honker", "worker", "_honker_app:db"]
    return cmd if concurrency is None else [*cmd, "--concurrency", str(concurrency)]


def huey_worker_cmd(workers: int, quiet: bool) -> list[str]:
    consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
    if not os.path.exists(consumer):
        consumer_cmd = [sys.executable, "-m", "huey.bin.huey_consumer"]
    else:
        consumer_cmd = [consumer]
    cmd = [*consumer_cmd, "_huey_app.huey", "-w", str(workers), "-k", "thread"]
    return [*cmd, "-q"] if quiet else cmd


class WorkerFailed(RuntimeError):
    """A worker process under test exited or stalled; carries the tail of its log."""


@contextmanager
def worker_process(cmd: list[str], path: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``cmd`` with ``BENCH_DB=path``, its stdout and stderr going to a log file beside
    the database (both systems alike). Stopped with SIGTERM on exit (killed if it has not
    gone after 30 s)."""
    log_path = path + ".worker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=_env(path), cwd=HERE, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_alive(proc: subprocess.Popen[str], what: str) -> None:
    """Raise :class:`WorkerFailed` (with its log's tail) if ``proc`` has exited."""
    if proc.poll() is not None:
        with open(proc.log_path) as f:  # type: ignore[attr-defined]
            tail = f.read()[-2000:]
        raise WorkerFailed(f"{what}: worker exited with {proc.returncode}:\n{tail}")


def stat_cpu_seconds(pid: int) -> float:
    """utime+stime of process ``pid`` from ``/proc/PID/stat`` (clock ticks, usually 10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Idle:
    """Idle CPU of one process as % of one core: from /proc/PID/stat and from schedstat."""

    stat_pct: float
    sched_pct: float

    def __str__(self) -> str:
        return f"{self.sched_pct:.2f} % (stat ticks: {self.stat_pct:.2f} %)"


def idle_cpu(pid: int, seconds: float, settle: float = 1.0) -> Idle:
    """CPU used by process ``pid`` over ``seconds``, starting ``settle`` s from now."""
    time.sleep(settle)
    stat0, sched0, t0 = stat_cpu_seconds(pid), cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    stat1, sched1, t1 = stat_cpu_seconds(pid), cpu_seconds(pid), time.monotonic()
    wall = t1 - t0
    return Idle(100.0 * (stat1 - stat0) / wall, 100.0 * (sched1 - sched0) / wall)


def handler_latency(
    send: Callable[[int], Any], started_at: Callable[[Any], float], n: int, warm: int = 100
) -> list[float]:
    """Seconds from ``time.time()`` just before ``send(i)`` to the handler's own stamp
    (``started_at(handle)``), for ``n`` sends at random 2-6 ms spacing after ``warm``
    discarded ones."""
    rng = random.Random(13)
    sent: list[tuple[float, Any]] = []
    for i in range(warm + n):
        time.sleep(rng.uniform(0.002, 0.006))
        t = time.time()
        sent.append((t, send(i)))
    return [started_at(handle) - t for t, handle in sent[warm:]]


def fill_rate(n: int, send: Callable[[int], Any]) -> float:
    """``send(i)`` for i < n, each its own transaction; calls/s."""
    start = time.perf_counter()
    for i in range(n):
        send(i)
    return n / (time.perf_counter() - start)


def drain_rate(
    proc: subprocess.Popen[str], path: str, count_sql: str, n: int, timeout: float = 120.0
) -> float:
    """Results/s stored by a running worker, from the first stored result to the ``n``-th
    (polled every 20 ms with a plain sqlite3 COUNT, cheap beside either worker)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        first: tuple[float, int] | None = None
        last_progress = time.monotonic()
        seen = 0
        while True:
            count = conn.execute(count_sql).fetchone()[0]
            now = time.monotonic()
            if count > seen:
                seen, last_progress = count, now
            if first is None and count > 0:
                first = (now, count)
            if count >= n:
                break
            check_alive(proc, f"draining, {count}/{n} results")
            if now - last_progress > timeout:
                raise WorkerFailed(f"worker stalled at {count}/{n} results")
            time.sleep(0.02)
        assert first is not None
        return (n - first[1]) / max(1e-9, now - first[0])
    finally:
        conn.close()


@dataclass
class Figures:
    """One system's figures; ``None`` where not measured."""

    tasks_s: dict[str, list[float]] = field(default_factory=dict)
    enqueue_s: dict[str, list[float]] = field(default_factory=dict)
    idle: Idle | None = None
    latency: dict[str, list[float]] = field(default_factory=dict)


def throughput(
    cmd: list[str], path: str, send: Callable[[int], Any], count_sql: str, n: int
) -> tuple[float, float]:
    """(enqueue calls/s, worker tasks/s): ``n`` sends, then ``cmd`` drains them."""
    enq = fill_rate(n, send)
    with worker_process(cmd, path) as proc:
        rate = drain_rate(proc, path, count_sql, n)
    return enq, rate


def idle_and_latency(
    cmd: list[str],
    path: str,
    sends: dict[str, Callable[[int], Any]],
    started_at: Callable[[Any], float],
    idle_seconds: float,
    latency_n: int,
) -> tuple[Idle, dict[str, list[float]]]:
    """Start ``cmd``; once it has run one probe task, its idle CPU; then enqueue -> handler
    latency of each task in ``sends`` (tasks returning their start time) on that worker."""
    with worker_process(cmd, path) as proc:
        probe = next(iter(sends.values()))(-1)
        try:
            started_at(probe)
        except Exception:
            check_alive(proc, "probe task")
            raise
        idle = idle_cpu(proc.pid, idle_seconds)
        lat = {kind: handler_latency(send, started_at, latency_n) for kind, send in sends.items()}
        check_alive(proc, "latency run")
    return idle, lat


def honker_throughput(n: int, task: str, concurrency: int) -> tuple[float, float]:
    """(enqueue calls/s, worker CLI tasks/s) for ``n`` calls of task ``task``."""
    with temp_db() as path:
        db = honker.open(path)
        send = _honker_app.tasks(db)[task]
        try:
            return throughput(honker_worker_cmd(concurrency), path, send, HONKER_RESULTS_SQL, n)
        finally:
            db.close()


def honker_small_json_rate(n: int) -> float:
    with temp_db() as path:
        db = honker.open(path)
        q = db.queue("bench")
        rate = fill_rate(n, lambda i: q.enqueue({"i": i}))
        db.close()
    return rate


def honker_idle_and_latency(
    concurrency: int | None, idle_seconds: float, latency_n: int, kinds: tuple[str, ...]
) -> tuple[Idle, dict[str, list[float]]]:
    """Idle CPU of the honker worker CLI, then enqueue -> handler latency of each task in
    ``kinds`` ("stamp", "astamp") on that same worker."""
    with temp_db() as path:
        db = honker.open(path)
        tasks = _honker_app.tasks(db)
        try:
            return idle_and_latency(
                honker_worker_cmd(concurrency),
                path,
                {kind: tasks[kind] for kind in kinds},
                lambda r: float(r.get(timeout=30)),
                idle_seconds,
                latency_n,
            )
        finally:
            db.close()


def huey_throughput(n: int, quiet: bool) -> tuple[float, float]:
    from _huey_app import make_huey

    with temp_db() as path:
        _, tasks = make_huey(path)
        return throughput(huey_worker_cmd(4, quiet), path, tasks["noop"], HUEY_RESULTS_SQL, n)


def huey_idle_and_latency(idle_seconds: float, latency_n: int) -> tuple[Idle, list[float]]:
    from _huey_app import make_huey

    with temp_db() as path:
        _, tasks = make_huey(path)
        idle, lat = idle_and_latency(
            huey_worker_cmd(4, quiet=False),
            path,
            {"stamp": tasks["stamp"]},
            lambda r: float(r.get(blocking=True, timeout=30)),
            idle_seconds,
            latency_n,
        )
    return idle, lat["stamp"]


def ratio(ours: float, theirs: float | None, target: str = "") -> str:
    if theirs is None or theirs <= 0:
        return ""
    text = f"{ours / theirs:5.2f} x"
    return f"{text}  (target {target})" if target else text


def p50_p99(lat: list[float] | None) -> str:
    if not lat:
        return "-"
    return f"{percentile(lat, 50) * 1000:.2f} / {percentile(lat, 99) * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="tasks per throughput run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-n", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1, help="throughput runs (medians shown)")
    parser.add_argument("--no-huey", action="store_true", help="honker columns only")
    parser.add_argument("--quick", action="store_true", help="n=5000, latency-n=200")
    args, _ = parser.parse_known_args()
    if args.quick:
        args.n, args.latency_n = 5000, 200
    missing = "--no-huey given" if args.no_huey else huey_missing()

    ours, theirs, theirs_quiet = Figures(), Figures(), Figures()
    header(f"honker and Huey 3.5, same run: {args.n:,} no-op tasks, concurrency 4, results stored")
    if missing is not None:
        print(f"Huey skipped: {missing}")
    # Interleaved, so a change in the machine's load hits both systems alike.
    for run in range(args.runs):
        tag = f"[run {run + 1}/{args.runs}] " if args.runs > 1 else ""
        for (task, label), (quiet, fig) in zip(
            (("noop", "sync"), ("anoop", "async")),
            ((False, theirs), (True, theirs_quiet)),
            strict=True,
        ):
            enq, rate = honker_throughput(args.n, task, args.concurrency)
            ours.tasks_s.setdefault(label, []).append(rate)
            ours.enqueue_s.setdefault(f"task call ({label})", []).append(enq)
            print(
                f"{tag}honker worker CLI, {label} tasks: {rate:9,.0f} tasks/s   "
                f"(fill: {enq:,.0f}/s)"
            )
            if missing is None:
                enq, rate = huey_throughput(args.n, quiet)
                fig.tasks_s.setdefault("sync", []).append(rate)
                theirs.enqueue_s.setdefault("task call", []).append(enq)
                cmd = "huey_consumer -w 4 -k thread" + (" -q" if quiet else "")
                print(f"{tag}{cmd}: {rate:9,.0f} tasks/s   (fill: {enq:,.0f}/s)")
        small = honker_small_json_rate(args.n)
        ours.enqueue_s.setdefault("q.enqueue({'i': i})", []).append(small)
    ours.idle, ours.latency = honker_idle_and_latency(
        args.concurrency, args.idle_seconds, args.latency_n, ("stamp", "astamp")
    )
    if missing is None:
        theirs.idle, theirs.latency["stamp"] = huey_idle_and_latency(
            args.idle_seconds, args.latency_n
        )

    huey_rate = median(theirs.tasks_s.get("sync"))
    huey_q = median(theirs_quiet.tasks_s.get("sync"))
    huey_enq = median(theirs.enqueue_s.get("task call"))
    runs = f", medians of {args.runs} runs" if args.runs > 1 else ""
    header(f"side by side (ratio = honker / Huey{runs})")
    row("figure", "honker", "Huey 3.5", "ratio")
    for label, target in (("sync", "2"), ("async", "3")):
        mine = statistics.median(ours.tasks_s[label])
        row(
            f"tasks/s, {label} tasks",
            f"{mine:,.0f}",
            num(huey_rate),
            ratio(mine, huey_rate, f">= {target} x"),
        )
        if huey_q:
            row("  vs huey_consumer -q", "", num(huey_q), ratio(mine, huey_q))
    for label, rates in ours.enqueue_s.items():
        rate = statistics.median(rates)
        row(f"enqueue 1/tx, {label}", f"{rate:,.0f}", num(huey_enq), ratio(rate, huey_enq))
    assert ours.idle is not None
    secs = f"{args.idle_seconds:g} s"
    row(
        f"idle worker CPU over {secs}",
        f"{ours.idle.sched_pct:.2f} %",
        f"{theirs.idle.sched_pct:.2f} %" if theirs.idle else "-",
    )
    row(
        "  same, from /proc/PID/stat",
        f"{ours.idle.stat_pct:.2f} %",
        f"{theirs.idle.stat_pct:.2f} %" if theirs.idle else "-",
    )
    huey_lat = theirs.latency.get("stamp")
    for kind, label in (("stamp", "sync"), ("astamp", "async")):
        row(f"enqueue -> handler p50/p99, {label}", p50_p99(ours.latency[kind]), p50_p99(huey_lat))


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def row(label: str, ours: str, theirs: str, note: str = "") -> None:
    print(f"{label:<36} {ours:>19} {theirs:>19}   {note}".rstrip())


if __name__ == "__main__":
    main()
