"""Durations, wall-clock times in IANA time zones, and the local zone's name.

Every reminder carries an explicit IANA time zone so that ``--at 09:00`` and
``--cron "0 9 * * 1-5"`` mean the same instant whichever process (CLI, API server,
scheduler) evaluates them.
"""

from __future__ import annotations

import math
import os
import re
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")

#: Longest duration accepted anywhere (honker's ``@every`` limit: 36525 days).
MAX_DURATION_S = 36525 * 86400


def parse_duration(text: str, *, field: str = "duration", allow_zero: bool = True) -> int:
    """Seconds in ``text`` such as ``90s``, ``10m``, ``1h30m``, ``2 days`` or ``1w``.

    Fractions round up to the next whole second. A bare number without a unit is refused
    (``10`` could mean seconds or minutes).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("empty duration; write e.g. 30s, 10m, 1h30m, 2d", field=field)
    raw = text.strip().lower()
    pos = 0
    total = 0.0
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if match is None or match.end() == pos:
            break
        unit = _UNITS.get(match.group(2))
        if unit is None:
            raise InvalidInput(
                f"{text!r}: unknown unit {match.group(2)!r} (use s, m, h, d or w)", field=field
            )
        total += float(match.group(1)) * unit
        pos = match.end()
    if pos != len(raw) or pos == 0:
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            raise InvalidInput(f"{text!r}: add a unit, e.g. {raw}s or {raw}m", field=field)
        raise InvalidInput(f"{text!r} is not a duration (e.g. 30s, 10m, 1h30m, 2d)", field=field)
    seconds = math.ceil(total)
    if seconds > MAX_DURATION_S:
        raise InvalidInput(f"{text!r} is too long (at most 36525 days)", field=field)
    if seconds == 0 and not allow_zero:
        raise InvalidInput(f"{text!r}: must be at least 1s", field=field)
    return seconds


def format_duration(seconds: int) -> str:
    """``5400`` → ``"1h30m"``; ``0`` → ``"0s"``."""
    seconds = int(seconds)
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def zone(name: str, *, field: str = "tz") -> ZoneInfo:
    """The IANA time zone ``name`` (``InvalidInput`` naming the field if unknown)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("empty time zone name", field=field)
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)",
            field=field,
        ) from None


def local_zone_name() -> str:
    """Best guess at this machine's IANA zone: ``$TZ``, ``/etc/localtime``, ``/etc/timezone``,
    else ``"UTC"``."""
    candidates = []
    env_tz = os.environ.get("TZ", "").lstrip(":")
    if env_tz:
        candidates.append(env_tz)
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"


def _instant(naive: datetime, tz: tzinfo, text: str, field: str) -> int:
    """Unix time of wall-clock ``naive`` in ``tz``; the earlier one when ambiguous.

    A wall-clock time skipped by a daylight-saving jump does not exist and is refused.
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    ts = aware.timestamp()
    back = datetime.fromtimestamp(ts, tz).replace(tzinfo=None, fold=0)
    if back != naive.replace(fold=0):
        raise InvalidInput(
            f"{text!r} does not exist in {tz} (the clocks skip it for daylight saving time)",
            field=field,
        )
    return math.ceil(ts)


def parse_when(text: str, tz_name: str, now: float, *, field: str = "at") -> int:
    """Unix time for ``--at``/``--until`` values, as whole seconds (rounded up).

    Accepts ISO 8601 date-times (``2026-12-01T09:00``, ``2026-12-01 09:00:30``; with an
    offset or ``Z`` the offset wins over the reminder's zone), a bare date (midnight) or a
    bare time (``09:00``: the next time the clock in ``tz_name`` shows it). Times in the
    past are refused.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("empty time; write e.g. 2026-12-01T09:00 or 09:00", field=field)
    raw = text.strip()
    tz = zone(tz_name)
    ts: int
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is not None:
        if parsed.tzinfo is not None:
            ts = math.ceil(parsed.timestamp())
        else:
            ts = _instant(parsed, tz, raw, field)
    else:
        try:
            clock = time.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(
                f"{raw!r} is not a date-time; write e.g. 2026-12-01T09:00, "
                "2026-12-01T09:00+01:00 or 09:00",
                field=field,
            ) from None
        if clock.tzinfo is not None:
            raise InvalidInput(f"{raw!r}: give a time zone with --tz, not an offset", field=field)
        today = datetime.fromtimestamp(now, tz).date()
        ts = 0
        for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
            try:
                ts = _instant(datetime.combine(day, clock), tz, raw, field)
            except InvalidInput:
                continue
            if ts > now:
                break
    if ts <= now:
        raise InvalidInput(
            f"{raw!r} is in the past (now is {iso(now, tz_name)})",
            field=field,
        )
    return ts


def iso(ts: float | None, tz_name: str) -> str | None:
    """``ts`` as ISO 8601 with the offset of ``tz_name`` (seconds precision), or ``None``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), ZoneInfo(tz_name)).isoformat()


def short(ts: float | None, tz_name: str, now: float | None = None) -> str:
    """Compact local rendering for tables: ``2026-12-01 09:00 CET`` (``-`` for ``None``)."""
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(int(ts), ZoneInfo(tz_name))
    fmt = "%Y-%m-%d %H:%M:%S" if dt.second else "%Y-%m-%d %H:%M"
    return f"{dt.strftime(fmt)} {dt.tzname()}"
