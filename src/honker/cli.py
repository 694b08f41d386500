"""``python -m honker``: run task workers, the scheduler, or the web dashboard."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

DESCRIPTION = """\
honker keeps your job queue, task runner, event streams, pub/sub and cron schedules
inside your application's own SQLite file.

Commands:
  worker      run the @task functions of your app (claims jobs, retries, stores results)
  scheduler   fire your schedules and @periodic_task jobs (one leader among many)
  dashboard   web page showing queues, jobs, streams, schedules and locks (needs the
              'dashboard' extra: pip install 'honker[dashboard]')
"""

EPILOG = """\
examples:
  python -m honker worker myapp.tasks:db                 # every queue that has tasks
  python -m honker worker myapp.tasks:db --queue emails --concurrency 4
  python -m honker worker myapp.tasks:db --list          # show registered tasks
  python -m honker worker myapp.tasks:db --scheduler     # also fire periodic tasks
  python -m honker scheduler myapp.tasks:db
  python -m honker dashboard app.db --port 8765

TARGET is 'module.path:variable' naming your honker.Database (db = honker.open(...));
importing the module registers its tasks. Run from your project directory (it is put
on sys.path).
"""


class CliError(Exception):
    """A one-line error for the user (no traceback)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m honker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    worker = sub.add_parser(
        "worker",
        help="run task workers",
        description="Claim and run jobs of decorated tasks until SIGINT/SIGTERM. The first "
        "signal stops claiming and lets running jobs finish (up to --grace-period seconds, "
        "then their jobs are handed back); a second signal exits at once.",
    )
    worker.add_argument("target", metavar="TARGET", help="module.path:variable of your Database")
    worker.add_argument(
        "--queue",
        action="append",
        metavar="NAME",
        help="queue to drain (repeatable; default: every queue with a registered task)",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="workers per queue (default: number of CPUs)",
    )
    worker.add_argument("--list", action="store_true", help="print registered tasks and exit")
    worker.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds running jobs get to finish after a stop signal (default: 30)",
    )
    worker.add_argument(
        "--scheduler",
        action="store_true",
        help="also run the scheduler in this process (leader-elected; safe to use in many)",
    )

    sched = sub.add_parser(
        "scheduler",
        help="run the scheduler",
        description="Fire schedules into their queues. Run it in as many processes as you "
        "like: one holds the leader lock, the others stand by and take over if it dies.",
    )
    sched.add_argument("target", metavar="TARGET", help="module.path:variable of your Database")

    dash = sub.add_parser(
        "dashboard",
        help="serve the web dashboard",
        description="Serve a live operations page for one database. Binds 127.0.0.1 by "
        "default; any other address requires --token (or HONKER_DASHBOARD_TOKEN).",
    )
    dash.add_argument(
        "database", metavar="DB", help="path of the SQLite database file, or a postgresql:// URL"
    )
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    dash.add_argument(
        "--token", default=None, help="access token (default: $HONKER_DASHBOARD_TOKEN)"
    )
    dash.add_argument(
        "--read-only", action="store_true", help="show data only; disable every action"
    )
    mig = sub.add_parser(
        "migrate",
        help="copy a SQLite honker file to PostgreSQL",
        description="Copy pending and dead jobs, schedules, streams with consumer offsets and "
        "unexpired results from a SQLite file to a PostgreSQL database (honker[postgres]). "
        "Idempotent; refuses a target that already holds honker data unless --force.",
    )
    mig.add_argument("source", metavar="DB", help="path of the SQLite database file")
    mig.add_argument("target", metavar="URL", help="postgresql:// URL of the target")
    mig.add_argument("--schema", default=None, help="target schema (created if missing)")
    mig.add_argument("--force", action="store_true", help="copy into a non-empty target")
    return parser


def _load_database(target: str) -> Any:
    from . import Database
    from .tasks import load_app

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value = load_app(target)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {target.rpartition(':')[0]!r}: {exc}") from None
    except AttributeError as exc:
        raise CliError(str(exc)) from None
    if not isinstance(value, Database):
        raise CliError(
            f"{target} is a {type(value).__name__}, not a honker.Database "
            "(point TARGET at the variable holding honker.open(...))"
        )
    return value


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, pool: Any) -> None:
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            running = len(pool.running) if pool is not None else 0
            grace = pool.grace_period_s if pool is not None else 0
            print(
                f"honker: {signal.Signals(signum).name} received: no new jobs; waiting up to "
                f"{grace:g}s for {running} running job(s) (signal again to exit now)",
                flush=True,
            )
            stop.set()
            return
        if pool is not None:
            pool.release_all()
        print("honker: second signal: exiting now", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # e.g. Windows, or not the main thread
            pass


async def _run_worker(args: argparse.Namespace, db: Any) -> int:
    from .scheduler import Scheduler
    from .tasks import registry
    from .worker import WorkerPool

    reg = registry()
    queues = args.queue or sorted(reg.queues())
    concurrency = args.concurrency or os.cpu_count() or 1
    pool = WorkerPool(
        db,
        queues=queues,
        concurrency=concurrency,
        registry=reg,
        grace_period_s=args.grace_period,
    )
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop, pool)
    print(
        f"honker worker: pid={os.getpid()} queues={queues} concurrency={concurrency} "
        f"tasks={reg.names()}",
        flush=True,
    )
    jobs = [asyncio.ensure_future(pool.run(stop))]
    if args.scheduler:
        jobs.append(
            asyncio.ensure_future(Scheduler(db).run(stop, standby=True, exit_when_idle=False))
        )
    try:
        await asyncio.gather(*jobs)
    finally:
        for job in jobs:
            job.cancel()
    print("honker worker: stopped cleanly", flush=True)
    if pool.abandoned:
        # A sync task still running in its thread after the grace period (its job was
        # handed back) would keep asyncio.run() and interpreter shutdown waiting for it.
        print(
            f"honker worker: {pool.abandoned} job(s) did not finish in time and were handed back",
            flush=True,
        )
        sys.stderr.flush()
        os._exit(0)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from .tasks import registry

    if args.concurrency is not None and args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    db = _load_database(args.target)
    reg = registry()
    if args.list:
        print(f"Registered tasks on {args.target}:")
        for spec in reg.specs():
            print(f"  {spec.name}  queue={spec.queue_name}")
        return 0
    if not len(reg):
        print(
            f"honker worker: no tasks are registered after importing {args.target}; "
            "decorate functions with @queue.task (or @db.task) in that module",
            file=sys.stderr,
        )
        return 1
    unknown = [q for q in args.queue or [] if q not in reg.queues()]
    if unknown:
        print(
            f"honker worker: warning: no registered task uses queue(s) {unknown}; their jobs "
            "will be dead-lettered as unknown tasks",
            file=sys.stderr,
        )
    return asyncio.run(_run_worker(args, db))


async def _run_scheduler(db: Any) -> int:
    from .scheduler import Scheduler

    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop, None)
    print(f"honker scheduler: pid={os.getpid()} (standing by for the leader lock)", flush=True)
    await Scheduler(db).run(stop, standby=True, exit_when_idle=False)
    print("honker scheduler: stopped cleanly", flush=True)
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    db = _load_database(args.target)
    return asyncio.run(_run_scheduler(db))


def _cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from .dashboard.server import serve
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its optional dependencies ({exc.name or exc}); "
            "install them with: pip install 'honker[dashboard]'"
        ) from None
    result: int = serve(
        args.database,
        host=args.host,
        port=args.port,
        token=args.token,
        read_only=args.read_only,
    )
    return result


def _cmd_migrate(args: argparse.Namespace) -> int:
    from . import postgres

    if not postgres.is_url(args.target):
        raise CliError(f"the target must be a postgresql:// URL, not {args.target!r}")
    try:
        from .postgres._migrate import TargetNotEmpty, migrate

        counts = migrate(args.source, args.target, schema=args.schema, force=args.force)
    except (ImportError, FileNotFoundError, ValueError, TargetNotEmpty) as exc:
        raise CliError(str(exc)) from None
    for what, n in counts.items():
        print(f"{what}: {n}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m honker``; returns the process exit code."""
    args = _parser().parse_args(argv)
    handlers = {
        "worker": _cmd_worker,
        "scheduler": _cmd_scheduler,
        "dashboard": _cmd_dashboard,
        "migrate": _cmd_migrate,
    }
    try:
        code = handlers[args.command](args)
    except CliError as exc:
        print(f"honker: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"honker: error: {exc}", file=sys.stderr)
        return 1
    return code
