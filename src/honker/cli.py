"""``python -m honker``: run task workers and the scheduler, inspect queues, serve the dashboard.

The inspection commands (``stats``, ``jobs``, ``job``, ``retry``, ``discard``) take the
database file's path and use only honker's public API; each prints a readable table, or
JSON with ``--json``. ``worker`` and ``scheduler`` take ``module.path:variable`` naming the
application's :class:`honker.Database` (importing the module registers its tasks) and log
through the ``honker`` logger hierarchy at ``--log-level``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._dist import install_hint, version_line
from ._validate import check_int64

DESCRIPTION = """\
honker keeps your job queue, task runner, event streams, pub/sub and cron schedules
inside your application's own SQLite file.
"""

EPILOG = """\
examples:
  python -m honker worker myapp.tasks:db                 # every queue that has tasks
  python -m honker worker myapp.tasks:db --queue emails --concurrency 4
  python -m honker worker myapp.tasks:db --list          # tasks, retry settings, schedules
  python -m honker worker myapp.tasks:db --scheduler     # also fire periodic tasks
  python -m honker scheduler myapp.tasks:db --log-level DEBUG
  python -m honker stats app.db                          # queues and their counts
  python -m honker jobs app.db emails --state dead
  python -m honker retry app.db emails --all             # requeue every dead job
  python -m honker dashboard app.db --port 8765

TARGET is 'module.path:variable' naming your honker.Database (db = honker.open(...));
importing the module registers its tasks. Run from your project directory (it is put
on sys.path). DB is the path of the database file itself.
"""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JOB_STATES = ("pending", "delayed", "processing", "dead")
RETRY_NOTE = " A requeued job is due at once, with a fresh attempt budget."
IMPORT_FRAMES = 6  # frames of a failing tasks-module import shown to the user


class CliError(Exception):
    """A short error for the user (no traceback); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- argument parsing ------------------------------------------------------------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _job_id(text: str) -> int:
    try:
        return check_int64(_integer(text), "job id")
    except ValueError as exc:  # outside SQLite's range
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="module.path:variable of your Database")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        metavar="LEVEL",
        help="log level of the 'honker' loggers, on stderr: DEBUG (each job), INFO "
        "(start, stop, leadership), WARNING (retries), ERROR (dead letters); default INFO",
    )


def _add_db(parser: argparse.ArgumentParser, *, queue: bool) -> None:
    parser.add_argument("database", metavar="DB", help="path of the SQLite database file")
    if queue:
        parser.add_argument("queue", metavar="QUEUE", help="queue name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists the commands once, one per line, without argparse's ``{COMMAND}`` header."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=16)

    def _iter_indented_subactions(self, action: argparse.Action) -> Any:
        # Commands at the same indent as options, so their help starts on the same line.
        yield from getattr(action, "_get_subactions", list)()

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if action.nargs == argparse.PARSER:  # the subcommand group: drop its metavar line
            text = text.split("\n", 1)[1]
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m honker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    worker = sub.add_parser(
        "worker",
        help="run the @task functions of your app (claims jobs, retries, stores results)",
        description="Claim and run jobs of decorated tasks until SIGINT/SIGTERM. The first "
        "signal stops claiming and lets running jobs finish (up to --grace-period seconds, "
        "then their jobs are handed back); a second signal exits at once.",
    )
    _add_target(worker)
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
    worker.add_argument(
        "--prefetch",
        type=int,
        default=None,
        metavar="N",
        help="jobs claimed ahead of a free worker, per queue (default: the concurrency; "
        "0 claims only for free workers)",
    )
    worker.add_argument(
        "--list",
        action="store_true",
        help="print the tasks of the selected queues (attempt budget, retry delay and "
        "backoff, timeout) and the schedules that feed those queues, then exit",
    )
    worker.add_argument("--json", action="store_true", help="with --list: print JSON")
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
        help="fire your schedules and @periodic_task jobs (one leader among many)",
        description="Fire schedules into their queues. Run it in as many processes as you "
        "like: one holds the leader lock, the others stand by and take over when it stops "
        "or dies. Leadership changes are logged at INFO.",
    )
    _add_target(sched)

    stats = sub.add_parser(
        "stats",
        help="every queue with its job counts",
        description="Counts per queue: due, delayed, expired, processing and dead jobs, the "
        "age of the oldest due job, and jobs done and dead-lettered in the last minute. A "
        "paused queue is marked '(paused)'.",
    )
    _add_db(stats, queue=False)

    jobs = sub.add_parser(
        "jobs",
        help="list the jobs of a queue",
        description="Live and dead jobs of QUEUE, newest first.",
    )
    _add_db(jobs, queue=True)
    jobs.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="at most N jobs (default 50)"
    )

    job = sub.add_parser(
        "job",
        help="one job in detail (payload, attempts, last error)",
        description="Show a live or dead job by id. Jobs that finished are deleted when "
        "acked, so only pending, processing and dead jobs can be shown.",
    )
    job.add_argument("database", metavar="DB", help="path of the SQLite database file")
    job.add_argument("id", metavar="ID", type=_job_id, help="job id")
    job.add_argument("--json", action="store_true", help="print JSON instead of text")

    for name, verb in (("retry", "requeue"), ("discard", "delete")):
        action = sub.add_parser(
            name,
            help=f"{verb} dead jobs of a queue",
            description=f"{verb.capitalize()} one dead job of QUEUE (by ID) or all of them "
            "(--all)." + (RETRY_NOTE if name == "retry" else ""),
        )
        _add_db(action, queue=True)
        action.add_argument("id", metavar="ID", type=_job_id, nargs="?", help="dead job id")
        action.add_argument("--all", action="store_true", help="every dead job of QUEUE")

    dash = sub.add_parser(
        "dashboard",
        help="web page showing queues, jobs, streams, schedules and locks "
        "(needs the 'dashboard' extra)",
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
    _add_observe_commands(sub, worker)
    _add_queue_control_commands(sub)
    _add_prune_command(sub)
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


# -- output helpers --------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        indent + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _when(unix: int | None) -> str:
    if not unix:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // sub_size:02d}{sub_unit}"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


# -- loading the application -----------------------------------------------------------


def _import_failure(module_name: str, exc: BaseException) -> CliError:
    """The last frames of an exception raised while importing the user's module."""
    honker_dir = os.path.dirname(os.path.abspath(__file__))
    tb = traceback.TracebackException.from_exception(exc)
    frames = [
        f
        for f in tb.stack
        if not f.filename.startswith(("<frozen", honker_dir)) and "importlib" not in f.filename
    ][-IMPORT_FRAMES:]
    text = "".join(traceback.StackSummary.from_list(frames).format())
    text += "".join(tb.format_exception_only()).rstrip()
    header = "Traceback (most recent call last):\n" if frames else ""
    return CliError(f"importing {module_name!r} failed:\n{header}{text}")


def _load_database(target: str) -> Any:
    from . import Database
    from .tasks import load_app

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = target.rpartition(":")
    if sep and module_name and attr:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing == module_name or module_name.startswith(missing + "."):
                raise CliError(f"cannot import {module_name!r}: {exc}") from None
            raise _import_failure(module_name, exc) from None
        except Exception as exc:  # the module itself raised: show where
            raise _import_failure(module_name, exc) from None
    try:
        value = load_app(target)
    except (ValueError, AttributeError) as exc:
        raise CliError(str(exc)) from None
    if not isinstance(value, Database):
        raise CliError(
            f"{target} is a {type(value).__name__}, not a honker.Database "
            "(point TARGET at the variable holding honker.open(...))"
        )
    return value


def _is_url(path: str) -> bool:
    from .postgres import is_url

    return is_url(path)


def _open_file(path: str) -> Any:
    from . import open as open_database

    if not _is_url(path) and not os.path.isfile(path):
        raise CliError(f"no database file at {path!r}")
    return open_database(path)


def _configure_logging(level: str) -> None:
    """Send the ``honker`` loggers' records to stderr in a readable one-line format."""
    logger = logging.getLogger("honker")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # not twice if the app configured the root logger


# -- worker and scheduler ----------------------------------------------------------------


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, pool: Any) -> None:
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            if pool is None:
                print(f"honker: {name} received: stopping (signal again to exit now)", flush=True)
            else:
                print(
                    f"honker: {name} received: no new jobs; waiting up to "
                    f"{pool.grace_period_s:g}s for {len(pool.running)} running job(s) "
                    "(signal again to exit now)",
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


async def _schedule(db: Any, stop: asyncio.Event) -> None:
    """Run the scheduler until ``stop``; after a lost leadership, stand by again."""
    from . import LeadershipLost, Scheduler

    while not stop.is_set():
        try:
            await Scheduler(db).run(stop, standby=True, exit_when_idle=False)
        except LeadershipLost:
            continue  # logged by honker.scheduler; compete for the lock again


async def _until_done(coros: Sequence[Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run ``coros`` together; when one ends (or fails) the others are stopped gracefully."""

    async def guarded(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        finally:
            stop.set()

    results = await asyncio.gather(*(guarded(c) for c in coros), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _run_worker(args: argparse.Namespace, db: Any, queues: list[str]) -> int:
    from .tasks import registry
    from .worker import WorkerPool

    reg = registry()
    concurrency = args.concurrency or os.cpu_count() or 1
    pool = WorkerPool(
        db,
        queues=queues,
        concurrency=concurrency,
        registry=reg,
        grace_period_s=args.grace_period,
        observers=_worker_observers(args, db),
        prefetch=args.prefetch,
    )
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop, pool)
    print(
        f"honker worker: pid={os.getpid()} queues={queues} concurrency={concurrency} "
        f"tasks={reg.names()}" + (" scheduler=on" if args.scheduler else ""),
        flush=True,
    )
    coros = [pool.run(stop)]
    if args.scheduler:
        coros.append(_schedule(db, stop))
    await _until_done(coros, stop)
    if pool.abandoned:
        # A sync task still running in its thread after the grace period (its job was
        # handed back) would keep asyncio.run() and interpreter shutdown waiting for it.
        print(
            f"honker worker: stopped after the {pool.grace_period_s:g}s grace period: "
            f"{pool.abandoned} job(s) did not finish in time and were handed back",
            flush=True,
        )
        sys.stderr.flush()
        os._exit(0)
    print("honker worker: stopped cleanly", flush=True)
    return 0


def _list_tasks(args: argparse.Namespace, db: Any, queues: list[str]) -> int:
    from . import Scheduler
    from .tasks import registry

    specs = [s for s in registry().specs() if s.queue_name in queues]
    schedules = [s for s in Scheduler(db).list() if s["queue"] in queues]
    if args.json:
        _print_json(
            {
                "target": args.target,
                "queues": queues,
                "tasks": [
                    {
                        "name": s.name,
                        "queue": s.queue_name,
                        "retries": s.retries,
                        "retry_delay_s": s.retry_delay_s,
                        "backoff": s.backoff,
                        "timeout_s": s.timeout_s,
                        "priority": s.priority,
                        "expires_s": s.expires_s,
                        "store_result": s.store_result,
                        "result_ttl_s": s.result_ttl_s,
                    }
                    for s in specs
                ],
                "schedules": schedules,
            }
        )
        return 0
    print(f"Tasks on {args.target} (queues: {', '.join(queues) or 'none'}):")
    if specs:
        rows = [
            [
                s.name,
                s.queue_name,
                "job's own" if s.retries is None else str(s.retries),
                _seconds(s.retry_delay_s),
                "none" if s.backoff == 1 else f"x{s.backoff:g}",
                _seconds(s.timeout_s),
            ]
            for s in specs
        ]
        headers = ["TASK", "QUEUE", "ATTEMPTS", "RETRY DELAY", "BACKOFF", "TIMEOUT"]
        print(_table(headers, rows, indent="  "))
    else:
        print("  (no tasks)")
    print("Schedules feeding these queues:")
    if schedules:
        rows = [
            [
                s["name"],
                s["queue"],
                s["cron_expr"] + (f" ({s['tz']})" if s.get("tz") else ""),
                _when(s["next_fire_at"]) if s["enabled"] else "-",
                "enabled" if s["enabled"] else "paused",
            ]
            for s in schedules
        ]
        print(_table(["NAME", "QUEUE", "SCHEDULE", "NEXT FIRE", "STATE"], rows, indent="  "))
    else:
        print("  (no schedules)")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from .tasks import registry

    if args.concurrency is not None and args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    _configure_logging(args.log_level)
    db = _load_database(args.target)
    reg = registry()
    queues = sorted(set(args.queue)) if args.queue else sorted(reg.queues())
    if args.list:
        return _list_tasks(args, db, queues)
    if not len(reg):
        raise CliError(
            f"no tasks are registered after importing {args.target}; "
            "decorate functions with @queue.task (or @db.task) in that module",
            code=1,
        )
    unknown = [q for q in args.queue or [] if q not in reg.queues()]
    if unknown:
        print(
            f"honker worker: warning: no registered task uses queue(s) {unknown}; their jobs "
            "will be dead-lettered as unknown tasks",
            file=sys.stderr,
        )
    return asyncio.run(_run_worker(args, db, queues))


async def _run_scheduler(db: Any) -> int:
    from . import Scheduler

    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop, None)
    print(
        f"honker scheduler: pid={os.getpid()} lock={Scheduler.LOCK_NAME!r} "
        "(leadership changes are logged)",
        flush=True,
    )
    await _schedule(db, stop)
    print("honker scheduler: stopped", flush=True)
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    db = _load_database(args.target)
    return asyncio.run(_run_scheduler(db))


# -- inspection --------------------------------------------------------------------------


def _queue(db: Any, name: str) -> Any:
    names = db.queue_names()
    if name not in names:
        known = ", ".join(names) if names else "none yet"
        raise CliError(f"no queue named {name!r} in {db.path} (queues: {known})", code=1)
    return db.queue(name)


def _decoded(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` with its payload parsed from JSON text (kept as text if it is not JSON)."""
    out = dict(job)
    try:
        out["payload"] = json.loads(job["payload"])
    except (TypeError, ValueError):
        pass
    return out


def _describe_payload(payload: Any) -> str:
    from .tasks import ENVELOPE_KEY

    envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
    if isinstance(envelope, dict) and isinstance(envelope.get("task"), str):
        args = [json.dumps(a) for a in envelope.get("args") or []]
        kwargs = envelope.get("kwargs") or {}
        if isinstance(kwargs, dict):
            args += [f"{k}={json.dumps(v)}" for k, v in kwargs.items()]
        return f"{envelope['task']}({', '.join(args)})"
    return payload if isinstance(payload, str) else json.dumps(payload)


def _cmd_stats(args: argparse.Namespace, db: Any) -> int:
    stats = [{"queue": name, **db.queue(name).stats()} for name in db.queue_names()]
    if args.json:
        _print_json(stats)
        return 0
    if not stats:
        print(f"no queues in {args.database} yet")
        return 0
    keys = ("pending", "delayed", "expired", "processing", "dead")
    rows = [
        [
            s["queue"] + (" (paused)" if s["paused"] else ""),
            *(str(s[k]) for k in keys),
            _age(s["oldest_pending_age_s"]),
            str(s["done_last_minute"]),
            str(s["dead_last_minute"]),
        ]
        for s in stats
    ]
    headers = ["QUEUE", "PENDING", "DELAYED", "EXPIRED", "PROCESSING", "DEAD", "OLDEST DUE"]
    print(_table([*headers, "DONE/MIN", "DEAD/MIN"], rows))
    return 0


def _cmd_jobs(args: argparse.Namespace, db: Any) -> int:
    queue = _queue(db, args.queue)
    jobs = [_decoded(j) for j in queue.list_jobs(state=args.state, limit=args.limit)]
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print(f"no {args.state or ''} jobs in queue {args.queue!r}".replace("  ", " "))
        return 0
    rows = [
        [
            str(j["id"]),
            j["state"],
            f"{j['attempts']}/{j['max_attempts']}",
            str(j["priority"]),
            _when(j["died_at"] if j["state"] == "dead" else j["run_at"]),
            _clip(_describe_payload(j["payload"]), 40),
            _clip((j["last_error"] or "").strip().split("\n")[0], 40),
        ]
        for j in jobs
    ]
    headers = ["ID", "STATE", "ATTEMPTS", "PRIORITY", "RUN AT / DIED", "TASK / PAYLOAD"]
    print(_table([*headers, "LAST ERROR"], rows))
    total = queue.count_jobs(state=args.state)
    if total > len(jobs):
        print(f"({len(jobs)} of {total} shown; use --limit)")
    return 0


def _cmd_job(args: argparse.Namespace, db: Any) -> int:
    found = None
    for name in db.queue_names():
        found = db.queue(name).find_job(args.id)
        if found is not None:
            break
    if found is None:
        raise CliError(
            f"no job {args.id} in {args.database} (finished jobs are deleted when acked)",
            code=1,
        )
    job = _decoded(found)
    job.update(_job_progress_and_history(db, job))
    if args.json:
        _print_json(job)
        return 0
    fields = [
        ("id", str(job["id"])),
        ("queue", job["queue"]),
        ("state", job["state"]),
        ("task", _describe_payload(job["payload"])),
        ("attempts", f"{job['attempts']} of {job['max_attempts']}"),
        ("priority", str(job["priority"])),
        ("created", _when(job["created_at"])),
        ("run at", _when(job["run_at"])),
    ]
    if job["state"] == "processing":
        fields += [("worker", job["worker_id"]), ("claim until", _when(job["claim_expires_at"]))]
    if job["expires_at"]:
        fields.append(("expires", _when(job["expires_at"])))
    if job["died_at"]:
        fields.append(("died", _when(job["died_at"])))
    payload = json.dumps(job["payload"])
    if len(payload) > 72:
        payload = json.dumps(job["payload"], indent=2)
    fields.append(("payload", payload))
    if job["last_error"]:
        fields.append(("last error", job["last_error"].rstrip()))
    fields += _job_progress_and_history_fields(job)
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        lines = value.split("\n")
        print(f"{key.ljust(width)}  {lines[0]}")
        for line in lines[1:]:
            print(f"{' ' * width}  {line}")
    return 0


def _cmd_dead(args: argparse.Namespace, db: Any) -> int:
    if (args.id is None) == (not args.all):
        raise CliError(f"{args.command}: give one dead job ID or --all (not both)")
    queue = _queue(db, args.queue)
    action = queue.retry_dead if args.command == "retry" else queue.discard_dead
    count = action(args.id)
    if args.id is not None and count == 0:
        raise CliError(f"no dead job {args.id} in queue {args.queue!r}", code=1)
    done = "requeued" if args.command == "retry" else "discarded"
    if args.json:
        _print_json({"queue": args.queue, "id": args.id, done: count})
    else:
        print(f"{done} {count} dead job(s) of queue {args.queue!r}")
    return 0


def _with_database(command: Callable[[argparse.Namespace, Any], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        db = _open_file(args.database)
        try:
            return command(args, db)
        finally:
            db.close()

    return run


def _cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from .dashboard.server import serve
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its optional dependencies ({exc.name or exc}); "
            f"install them with: {install_hint('dashboard')}"
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


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": _cmd_worker,
    "scheduler": _cmd_scheduler,
    "stats": _with_database(_cmd_stats),
    "jobs": _with_database(_cmd_jobs),
    "job": _with_database(_cmd_job),
    "retry": _with_database(_cmd_dead),
    "discard": _with_database(_cmd_dead),
    "dashboard": _cmd_dashboard,
    "migrate": _cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m honker``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except CliError as exc:
        print(f"honker: error: {exc}", file=sys.stderr)
        return exc.code
    except RuntimeError as exc:
        print(f"honker: error: {exc}", file=sys.stderr)
        return 1


# -- observability: `workers`, `metrics`, worker --metrics-port/--otel/--no-register -------


def _add_observe_commands(sub: Any, worker: argparse.ArgumentParser) -> None:
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve Prometheus metrics (this worker's counters and the database gauges) "
        "on this port (needs the 'metrics' extra; 0 picks a free port)",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint (default 127.0.0.1)",
    )
    worker.add_argument(
        "--otel",
        action="store_true",
        help="trace jobs with OpenTelemetry (needs the 'otel' extra; same as HONKER_OTEL=1)",
    )
    worker.add_argument(
        "--no-register",
        action="store_true",
        help="do not list this process in the live workers table (_honker_workers)",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between live-worker heartbeats (default 5; gone after 3 missed)",
    )

    workers = sub.add_parser(
        "workers",
        help="list live worker processes",
        description="List the worker processes registered in the database: host, pid, "
        "queues, concurrency, start time, last heartbeat and the jobs they are running.",
    )
    workers.add_argument("database", metavar="DB", help="path of the SQLite database file")
    workers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    workers.add_argument(
        "--all", action="store_true", help="also list crashed workers not pruned yet"
    )

    metrics = sub.add_parser(
        "metrics",
        help="serve Prometheus metrics of a database",
        description="Serve the database's queue, stream and worker gauges in Prometheus "
        "text format at http://HOST:PORT/metrics until SIGINT/SIGTERM (needs the "
        f"'metrics' extra: {install_hint('metrics')}).",
    )
    metrics.add_argument("database", metavar="DB", help="path of the SQLite database file")
    metrics.add_argument("--port", type=int, required=True, help="port (0 picks a free one)")
    metrics.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")


def _import_metrics() -> Any:
    try:
        from . import metrics
    except ImportError:
        raise CliError(
            f"metrics need prometheus_client; install it with: {install_hint('metrics')}"
        ) from None
    return metrics


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise CliError(f"invalid port {port}: expected 0..65535")


def _worker_observers(args: argparse.Namespace, db: Any) -> list[Any]:
    observers: list[Any] = []
    if args.otel:
        try:
            from . import tracing
        except ImportError:
            raise CliError(
                f"--otel needs opentelemetry-api; install it with: {install_hint('otel')}"
            ) from None
        tracing.enable()
    if not args.no_register:
        from .workers import LiveWorkers

        try:
            observers.append(LiveWorkers(db, heartbeat_s=args.heartbeat_interval))
        except ValueError as exc:
            raise CliError(f"--heartbeat-interval: {exc}") from None
    if args.metrics_port is not None:
        _check_port(args.metrics_port)
        metrics = _import_metrics()
        counters = metrics.WorkerMetrics()
        counters.registry.register(metrics.DatabaseCollector(db))
        try:
            server = metrics.serve_metrics(counters.registry, args.metrics_host, args.metrics_port)
        except OSError as exc:
            raise CliError(
                f"cannot listen on {args.metrics_host}:{args.metrics_port}: {exc}"
            ) from None
        print(
            f"honker worker: metrics at http://{args.metrics_host}:{server.server_port}/metrics",
            flush=True,
        )
        observers.append(counters)
    return observers


def _open_existing(path: str) -> Any:
    import honker

    if not _is_url(path) and not os.path.isfile(path):
        raise CliError(f"no database file at {path!r}")
    return honker.open(path)


def _ago(now: float, then: int) -> str:
    return f"{max(0, int(now - then))}s ago"


def _cmd_workers(args: argparse.Namespace) -> int:
    import json
    import time

    from .workers import list_workers

    db = _open_existing(args.database)
    try:
        rows = list_workers(db, include_gone=args.all)
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no live workers")
        return 0
    now = time.time()
    table = [("ID", "HOST", "PID", "QUEUES", "CONC", "STARTED", "LAST SEEN", "STATE", "RUNNING")]
    for w in rows:
        table.append(
            (
                w["id"],
                w["host"],
                str(w["pid"]),
                ",".join(w["queues"]),
                str(w["concurrency"]),
                _ago(now, w["started_at"]),
                _ago(now, w["last_seen"]),
                "alive" if w["alive"] else "gone",
                ",".join(str(i) for i in w["running"]) or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    _check_port(args.port)
    metrics = _import_metrics()
    db = _open_existing(args.database)
    try:
        try:
            server = metrics.serve_metrics(metrics.database_registry(db), args.host, args.port)
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        print(
            f"honker metrics: serving {args.database} at "
            f"http://{args.host}:{server.server_port}/metrics",
            flush=True,
        )
        stopped = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopped.set)
            await stopped.wait()

        asyncio.run(wait())
        server.shutdown()
    finally:
        db.close()
    print("honker metrics: stopped", flush=True)
    return 0


HANDLERS["workers"] = _cmd_workers
HANDLERS["metrics"] = _cmd_metrics


# -- queue control: `pause`, `resume` (honker for Python only) ---------------------------


def _add_queue_control_commands(sub: Any) -> None:
    for name, text in (
        ("pause", "stop workers (every process) claiming from a queue; pending jobs stay"),
        ("resume", "let workers claim from a paused queue again"),
    ):
        action = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ". Takes effect at the workers' next "
            "wake; jobs already running finish. A queue can be paused before it has jobs.",
        )
        _add_db(action, queue=True)


def _cmd_pause_resume(args: argparse.Namespace) -> int:
    db = _open_existing(args.database)
    try:
        queue = db.queue(args.queue)
        changed = queue.pause() if args.command == "pause" else queue.resume()
        paused = queue.is_paused()
    finally:
        db.close()
    if args.json:
        _print_json({"queue": args.queue, "paused": paused, "changed": changed})
    elif changed:
        print(f"queue {args.queue!r} {'paused' if paused else 'resumed'}")
    else:
        print(f"queue {args.queue!r} was already {'paused' if paused else 'running'}")
    return 0


HANDLERS["pause"] = _cmd_pause_resume
HANDLERS["resume"] = _cmd_pause_resume
# -- job progress and attempt history, prune (i15-jobs) -----------------------------------


def _job_progress_and_history(db: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The ``progress`` and ``attempts_history`` keys ``honker job`` adds to a job."""
    queue = db.queue(job["queue"])
    return {
        "progress": queue.progress(job["id"]),
        "attempts_history": queue.job_attempts(job["id"]),
    }


def _job_progress_and_history_fields(job: dict[str, Any]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    progress = job.get("progress")
    if progress:
        text = f"{progress['fraction'] * 100:.0f}%"
        if progress["message"]:
            text += f" {progress['message']}"
        fields.append(("progress", f"{text} ({_when(progress['updated_at'])})"))
    lines = []
    for a in job.get("attempts_history") or []:
        error = (a["error"] or "").strip().split("\n")[0]
        duration = "-" if a["duration_s"] is None else f"{a['duration_s']:.3f}s"
        line = f"#{a['attempt']} {a['outcome']} after {duration}"
        line += f" on {a['worker_id'] or '?'} at {_when(int(a['ended_at']))}"
        lines.append(f"{line}: {_clip(error, 60)}" if error else line)
    if lines:
        fields.append(("history", "\n".join(lines)))
    return fields


# -- prune: apply a retention policy once ----------------------------------------------------

PRUNE_KEYS = ("dead", "results", "notifications", "stream_events", "history")


def _add_prune_command(sub: Any) -> None:
    prune = sub.add_parser(
        "prune",
        help="apply a retention policy once (delete old dead jobs, results, ...)",
        description="Delete, in small batches, what a retention policy no longer keeps. "
        "Durations are seconds or strings like 45s, 15m, 12h, 30d, 2w. Without an option a "
        "kind is treated as honker.open() does by default: only expired results and the "
        "history of jobs gone for more than an hour are deleted.",
    )
    prune.add_argument("database", metavar="DB", help="path of the SQLite database file")
    for key in PRUNE_KEYS:
        what = {
            "dead": "dead-lettered jobs older than this (by the time they died)",
            "results": "stored results older than this (expired results always go)",
            "notifications": "notifications older than this",
            "stream_events": "stream events older than this",
            "history": "attempt history, progress and cancel records of jobs gone for "
            "longer than this (default 1h)",
        }[key]
        prune.add_argument(f"--{key.replace('_', '-')}", metavar="AGE", default=None, help=what)
    prune.add_argument("--json", action="store_true", help="print the counts as JSON")


def _cmd_prune(args: argparse.Namespace) -> int:
    import json

    from .retention import Retention, prune

    given = {k: getattr(args, k) for k in PRUNE_KEYS if getattr(args, k) is not None}
    try:
        policy = Retention.of(given)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc), code=2) from None
    db = _open_existing(args.database)
    try:
        counts = prune(db.engine, policy)
    finally:
        db.close()
    if args.json:
        print(json.dumps(counts))
    else:
        for key, n in counts.items():
            print(f"{key}: {n}")
    return 0


HANDLERS["prune"] = _cmd_prune
