"""The ``belfry`` command line.

Reminder commands work on the database directly (``--db``/``BELFRY_DB``: a SQLite file or a
``postgresql://`` URL) or against a running server (``--url``/``BELFRY_URL`` with
``--token``/``BELFRY_TOKEN``); ``serve`` and ``worker`` always run on the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from . import __version__
from .config import Settings
from .errors import BelfryError, InvalidInput

DESCRIPTION = """\
belfry: reminders posted to an ntfy server, kept in one SQLite file (or a PostgreSQL
database) and driven by honker.
Reminder commands work on the database (--db) or a running server (--url).
"""

EPILOG = """\
examples:
  belfry add "stretch" --every 1h --topic me
  belfry add "stand-up" --cron "0 9 * * 1-5" --tz Europe/Paris --priority high --tag alarm_clock
  belfry add "call mum" --at 2026-12-01T18:00        belfry add "tea" --in 4m
  belfry list                                        belfry show 3
  BELFRY_NTFY_URL=https://ntfy.example.com BELFRY_NTFY_TOKEN=tk_... belfry serve
  belfry --url http://127.0.0.1:8484 --token s3cret list

environment: BELFRY_DB (default belfry.db), BELFRY_URL, BELFRY_TOKEN, BELFRY_TOPIC,
BELFRY_TZ, BELFRY_NTFY_URL, BELFRY_NTFY_TOKEN, BELFRY_NTFY_USER, BELFRY_NTFY_PASSWORD,
BELFRY_NTFY_FORMAT, BELFRY_HOST, BELFRY_PORT, BELFRY_MAX_ATTEMPTS, BELFRY_RETRY_DELAY,
BELFRY_RETRY_MAX_DELAY, BELFRY_HTTP_TIMEOUT, BELFRY_VISIBILITY_TIMEOUT, BELFRY_CONCURRENCY
"""


class Backend(Protocol):
    """What the reminder commands need: :class:`~belfry.store.Belfry` or the HTTP client."""

    def add(self, data: dict[str, Any]) -> dict[str, Any]: ...
    def list_reminders(self, state: str | None = None) -> list[dict[str, Any]]: ...
    def get(self, reminder_id: int) -> dict[str, Any]: ...
    def edit(self, reminder_id: int, changes: dict[str, Any]) -> dict[str, Any]: ...
    def pause(self, reminder_id: int) -> dict[str, Any]: ...
    def resume(self, reminder_id: int) -> dict[str, Any]: ...
    def snooze(
        self, reminder_id: int, for_: str | None = None, until: str | None = None
    ) -> dict[str, Any]: ...
    def send_now(self, reminder_id: int) -> dict[str, Any]: ...
    def retry_dead(self, reminder_id: int) -> dict[str, Any]: ...
    def delete(self, reminder_id: int) -> None: ...
    def deliveries(self, reminder_id: int, limit: int = 100) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


# -- argument parsing ----------------------------------------------------------------------
def _common(suppress: bool) -> argparse.ArgumentParser:
    """Connection options, accepted before or after the command."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("where reminders live")
    group.add_argument("--db", default=default, metavar="PATH|URL",
                       help="SQLite file or postgresql:// URL (env BELFRY_DB; default belfry.db)")
    group.add_argument("--url", default=default, metavar="URL",
                       help="talk to a running 'belfry serve' instead (env BELFRY_URL)")
    group.add_argument("--token", default=default, metavar="TOKEN",
                       help="API bearer token: sent with --url, required by serve "
                       "(env BELFRY_TOKEN)")
    group.add_argument("--default-topic", default=default, metavar="TOPIC",
                       help="topic of reminders created without --topic (env BELFRY_TOPIC)")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="more log output (serve, worker)")
    return parser


def _content_options(parser: argparse.ArgumentParser, *, editing: bool) -> None:
    group = parser.add_argument_group("notification")
    if editing:
        group.add_argument("--message", help="new text")
    group.add_argument("--title", help="title line" + ("; '' removes it" if editing else ""))
    group.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                       help="ntfy tag or emoji short code (repeatable, or a,b,c)")
    if editing:
        group.add_argument("--no-tags", action="store_true", help="remove every tag")
    group.add_argument("--priority", metavar="P", help="1-5 or min, low, default, high, max")
    group.add_argument("--topic", help="ntfy topic (default: --default-topic / BELFRY_TOPIC)")
    group.add_argument("--click", metavar="URL",
                       help="URL opened on tap" + ("; '' removes it" if editing else ""))
    timing = parser.add_argument_group("when (exactly one" + (", to reschedule)" if editing
                                                              else ")"))
    when = timing.add_mutually_exclusive_group(required=not editing)
    when.add_argument("--at", metavar="TIME",
                      help="once at TIME: 2026-12-01T09:00, 2026-12-01T09:00+01:00 or 09:00")
    when.add_argument("--in", dest="in_", metavar="DURATION", help="once after 90s, 10m, 1h30m…")
    when.add_argument("--cron", metavar="EXPR",
                      help="repeat on a cron schedule in --tz: \"0 9 * * 1-5\" (6 fields: "
                      "with seconds)")
    when.add_argument("--every", metavar="DURATION", help="repeat every 30m, 1h, 1d…")
    timing.add_argument("--tz", metavar="ZONE",
                        help="IANA time zone for --at/--cron (default: BELFRY_TZ or local)")


def _service_options(parser: argparse.ArgumentParser, *, api: bool) -> None:
    ntfy = parser.add_argument_group("ntfy")
    ntfy.add_argument("--ntfy-url", metavar="URL", help="ntfy base URL (env BELFRY_NTFY_URL; "
                      "default https://ntfy.sh)")
    ntfy.add_argument("--ntfy-token", metavar="TOKEN",
                      help="ntfy access token, Bearer auth (env BELFRY_NTFY_TOKEN)")
    ntfy.add_argument("--ntfy-user", metavar="USER",
                      help="ntfy user for Basic auth; password in env BELFRY_NTFY_PASSWORD")
    ntfy.add_argument("--ntfy-format", choices=["headers", "json"],
                      help="publish with headers to /<topic> (default) or JSON to /")
    tuning = parser.add_argument_group("delivery")
    tuning.add_argument("--max-attempts", type=int, metavar="N",
                        help="attempts before dead-lettering (default 5)")
    tuning.add_argument("--retry-delay", type=float, metavar="S",
                        help="first backoff delay, doubled each attempt (default 10)")
    tuning.add_argument("--retry-max-delay", type=float, metavar="S",
                        help="backoff cap (default 900)")
    tuning.add_argument("--http-timeout", type=float, metavar="S",
                        help="seconds one ntfy request may take (default 15)")
    tuning.add_argument("--visibility-timeout", type=int, metavar="S",
                        help="seconds before a crashed worker's delivery is retried (60)")
    tuning.add_argument("--concurrency", type=int, metavar="N",
                        help="deliveries in flight at once (default 4)")
    tuning.add_argument("--grace-period", type=float, default=10.0, metavar="S",
                        help="seconds running deliveries get to finish on stop (default 10)")
    tuning.add_argument("--no-scheduler", action="store_true",
                        help="do not fire recurring reminders in this process")
    if api:
        http = parser.add_argument_group("HTTP API")
        http.add_argument("--host", help="address to listen on (env BELFRY_HOST; default "
                          "127.0.0.1; anything but loopback needs a token)")
        http.add_argument("--port", type=int, help="port (env BELFRY_PORT; default 8484; 0: "
                          "any free port)")
        http.add_argument("--no-worker", action="store_true",
                          help="API (and scheduler) only; run 'belfry worker' elsewhere")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``belfry`` command."""
    parser = argparse.ArgumentParser(
        prog="belfry",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"belfry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = _common(suppress=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    add = command("add", "create a reminder: --at/--in for once, --cron/--every to repeat")
    add.add_argument("message", help="the notification text (at most 4,096 bytes)")
    _content_options(add, editing=False)
    add.add_argument("--json", action="store_true", help="print the reminder as JSON")

    listing = command(
        "list", "list reminders with their next delivery and their last one (or its error)"
    )
    listing.add_argument("--state", choices=["active", "paused", "done", "failed"])
    listing.add_argument("--json", action="store_true", help="print JSON")

    show = command("show", "show a reminder and its delivery history")
    show.add_argument("id", type=int)
    show.add_argument("--limit", type=int, default=20, help="history lines (default 20)")
    show.add_argument("--json", action="store_true", help="print JSON")

    edit = command("edit", "change a reminder")
    edit.add_argument("id", type=int)
    _content_options(edit, editing=True)
    edit.add_argument("--json", action="store_true", help="print the reminder as JSON")

    for name, text in (
        ("pause", "stop a reminder's deliveries"),
        ("resume", "start a paused reminder again (missed occurrences are skipped)"),
        ("send", "deliver a reminder once more, right now"),
        ("retry", "requeue a reminder's dead-lettered deliveries"),
        ("delete", "delete a reminder, its schedule and its history"),
    ):
        cmd = command(name, text)
        cmd.add_argument("id", type=int)
        if name != "delete":
            cmd.add_argument("--json", action="store_true", help="print the reminder as JSON")

    snooze = command("snooze", "remind again later: snooze ID 10m, or --until TIME")
    snooze.add_argument("id", type=int)
    snooze.add_argument("duration", nargs="?", help="how long: 10m, 1h…")
    snooze.add_argument("--until", metavar="TIME", help="or until this time")
    snooze.add_argument("--json", action="store_true", help="print the reminder as JSON")

    serve = command("serve", "run the HTTP API, delivery worker and scheduler in one process")
    _service_options(serve, api=True)
    worker = command("worker", "run the delivery worker (and a standby scheduler), no API")
    _service_options(worker, api=False)
    return parser


# -- output --------------------------------------------------------------------------------
def _compact(iso: str | None) -> str:
    if not iso:
        return "-"
    dt = datetime.fromisoformat(iso)
    text = dt.strftime("%Y-%m-%d %H:%M:%S" if dt.second else "%Y-%m-%d %H:%M")
    return f"{text}{dt.strftime('%z')[:3]}:{dt.strftime('%z')[3:]}" if dt.tzinfo else text


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _last(reminder: dict[str, Any]) -> str:
    last = reminder.get("last_delivery")
    if not last:
        return "-"
    status = last["status"]
    when = _compact(last.get("finished_at") or last.get("started_at"))
    if status == "delivered":
        return f"delivered {when}"
    if status in ("dead", "retrying"):
        tail = f" (next try {_compact(last['retry_at'])})" if status == "retrying" else ""
        return f"{status.upper()} {when}: {last.get('error') or '?'}{tail}"
    return f"{status} {when}"


def _table(rows: list[list[str]], out: Callable[[str], None]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out("  ".join([*cells, row[-1]]).rstrip())


def print_list(reminders: list[dict[str, Any]], out: Callable[[str], None] = print) -> None:
    """The ``belfry list`` table (the LAST column carries errors in full)."""
    if not reminders:
        out("no reminders")
        return
    rows = [["ID", "STATE", "SCHEDULE", "NEXT", "TOPIC", "MESSAGE", "LAST DELIVERY"]]
    for r in reminders:
        schedule = r["schedule"] if r["kind"] != "once" else "once"
        rows.append([
            str(r["id"]),
            r["state"],
            _clip(schedule, 34),
            _compact(r["next_at"]),
            r["topic"],
            _clip(r["message"], 32),
            _last(r),
        ])
    _table(rows, out)


def print_reminder(r: dict[str, Any], out: Callable[[str], None] = print) -> None:
    """Key/value description of one reminder."""
    fields = [
        ("id", str(r["id"])),
        ("message", r["message"]),
        ("title", r["title"] or "-"),
        ("tags", ", ".join(r["tags"]) or "-"),
        ("priority", f"{r['priority']} ({r['priority_name']})"),
        ("topic", r["topic"]),
        ("click", r["click"] or "-"),
        ("schedule", r["schedule"]),
        ("time zone", r["tz"]),
        ("state", r["state"]),
        ("next", _compact(r["next_at"])),
        ("snoozed until", _compact(r["snoozed_until"])),
        ("delivered", f"{r['delivered_count']} time(s)"),
        ("last delivery", _last(r)),
        ("created", _compact(r["created_at"])),
    ]
    for key, value in fields:
        out(f"{key + ':':15}{value}")


def print_deliveries(items: list[dict[str, Any]], out: Callable[[str], None] = print) -> None:
    """The delivery-history table of ``belfry show``."""
    if not items:
        out("no deliveries yet")
        return
    rows = [["WHEN", "JOB", "TRY", "TRIGGER", "STATUS", "HTTP", "DETAIL"]]
    for d in items:
        detail = d["error"] or (f"ntfy id {d['ntfy_id']}" if d["ntfy_id"] else "")
        if d["status"] == "retrying" and d["retry_at"]:
            detail += f" (next try {_compact(d['retry_at'])})"
        rows.append([
            _compact(d["started_at"]),
            str(d["job_id"]),
            str(d["attempt"]),
            d["trigger"],
            d["status"],
            "-" if d["http_status"] is None else str(d["http_status"]),
            detail,
        ])
    _table(rows, out)


# -- commands ------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    return settings.replace(
        db=getattr(args, "db", None),
        url=getattr(args, "url", None),
        token=getattr(args, "token", None),
        topic=getattr(args, "default_topic", None),
        ntfy_url=getattr(args, "ntfy_url", None),
        ntfy_token=getattr(args, "ntfy_token", None),
        ntfy_user=getattr(args, "ntfy_user", None),
        ntfy_format=getattr(args, "ntfy_format", None),
        max_attempts=getattr(args, "max_attempts", None),
        retry_delay_s=getattr(args, "retry_delay", None),
        retry_max_delay_s=getattr(args, "retry_max_delay", None),
        http_timeout_s=getattr(args, "http_timeout", None),
        visibility_timeout_s=getattr(args, "visibility_timeout", None),
        concurrency=getattr(args, "concurrency", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _backend(args: argparse.Namespace, settings: Settings) -> Backend:
    if getattr(args, "db", None) and getattr(args, "url", None):
        raise InvalidInput("give --db or --url, not both")
    if settings.url and not getattr(args, "db", None):
        from .client import RemoteBelfry

        return RemoteBelfry(settings.url, settings.token)
    from .store import Belfry

    if args.command != "add" and not _is_url(settings.db) and not os.path.exists(settings.db):
        raise BelfryError(
            f"no belfry database at {settings.db!r}: set BELFRY_DB or --db "
            "(or BELFRY_URL/--url for a running server); 'belfry add' creates one"
        )
    return Belfry.open(settings)


def _is_url(db: str) -> bool:
    """Whether ``db`` names a PostgreSQL server rather than a SQLite file."""
    from honker.postgres import is_url

    return is_url(db)


def _content_changes(args: argparse.Namespace, settings: Settings, *, editing: bool
                     ) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if editing and args.message is not None:
        data["message"] = args.message
    if args.title is not None:
        data["title"] = args.title or None
    if args.tags:
        data["tags"] = [t for item in args.tags for t in item.split(",")]
    elif editing and args.no_tags:
        data["tags"] = []
    if args.priority is not None:
        data["priority"] = args.priority
    if args.topic is not None:
        data["topic"] = args.topic
    if args.click is not None:
        data["click"] = args.click or None
    timing = {"at": args.at, "in": args.in_, "cron": args.cron, "every": args.every}
    data.update({k: v for k, v in timing.items() if v is not None})
    if args.tz is not None:
        data["tz"] = args.tz
    elif not editing and settings.url and (args.at is not None or args.cron is not None):
        # The CLI's zone, not the server's: "--at 09:00" means nine o'clock here.
        data["tz"] = settings.default_tz
    return data


def _emit(result: Any, as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        render()


def _run_reminder_command(args: argparse.Namespace, settings: Settings) -> int:
    backend = _backend(args, settings)
    try:
        command = args.command
        if command == "add":
            data = {"message": args.message, **_content_changes(args, settings, editing=False)}
            r = backend.add(data)
            _emit(r, args.json, lambda: print(
                f"added reminder {r['id']}: {r['schedule']}, next {_compact(r['next_at'])}, "
                f"topic {r['topic']}"))
        elif command == "list":
            items = backend.list_reminders(args.state)
            _emit(items, args.json, lambda: print_list(items))
        elif command == "show":
            r = backend.get(args.id)
            history = backend.deliveries(args.id, args.limit)
            if args.json:
                _emit({**r, "deliveries": history}, True, lambda: None)
            else:
                print_reminder(r)
                print()
                print_deliveries(history)
        elif command == "edit":
            r = backend.edit(args.id, _content_changes(args, settings, editing=True))
            _emit(r, args.json, lambda: print(f"updated reminder {r['id']}: {r['schedule']}, "
                                              f"next {_compact(r['next_at'])}"))
        elif command == "delete":
            backend.delete(args.id)
            print(f"deleted reminder {args.id}")
        elif command == "snooze":
            if (args.duration is None) == (args.until is None):
                raise InvalidInput("give a duration (e.g. 10m) or --until TIME")
            r = backend.snooze(args.id, for_=args.duration, until=args.until)
            _emit(r, args.json, lambda: print(
                f"snoozed reminder {r['id']}: next {_compact(r['next_at'])}"))
        else:
            actions: dict[str, tuple[Callable[[int], dict[str, Any]], str]] = {
                "pause": (backend.pause, "paused"),
                "resume": (backend.resume, "resumed"),
                "send": (backend.send_now, "queued a delivery of"),
                "retry": (backend.retry_dead, "requeued the dead deliveries of"),
            }
            action, verb = actions[command]
            r = action(args.id)
            _emit(r, args.json, lambda: print(
                f"{verb} reminder {r['id']} (state {r['state']}, next "
                f"{_compact(r['next_at'])})"))
    finally:
        backend.close()
    return 0


def _run_service(args: argparse.Namespace, settings: Settings) -> int:
    from . import service
    from .store import Belfry

    if settings.ntfy_user and not settings.ntfy_password:
        raise InvalidInput("--ntfy-user needs BELFRY_NTFY_PASSWORD in the environment")
    api = args.command == "serve"
    if api:
        service.check_listen(settings.host, settings.token)
    service.configure_logging(bool(getattr(args, "verbose", False)))
    belfry = Belfry.open(settings)

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(
            service.run(
                belfry,
                api=api,
                worker=not getattr(args, "no_worker", False),
                scheduler=not args.no_scheduler,
                grace_period_s=args.grace_period,
                announce=announce,
            )
        )
    finally:
        belfry.close()
    print("belfry: stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``belfry`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        if args.command in ("serve", "worker"):
            return _run_service(args, settings)
        return _run_reminder_command(args, settings)
    except BelfryError as exc:
        print(f"belfry: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
