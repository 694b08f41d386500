"""Schedule expressions: parsing and "next fire time" computation.

This module is pure: it performs no I/O, never reads the clock and uses no
database.  The only environmental input is the process's local time zone
(the ``TZ`` rules consulted by :func:`datetime.datetime.fromtimestamp` and
:meth:`datetime.datetime.timestamp`).  Nothing that depends on the time zone
is cached, so a call made after :func:`time.tzset` sees the new rules.

Grammar
=======

Leading and trailing whitespace is ignored.  Two forms are accepted.

Interval: ``@every <count><unit>``
    ``@every`` optionally followed by whitespace, then one or more ASCII
    digits and exactly one unit letter: ``s`` (seconds), ``m`` (minutes),
    ``h`` (hours) or ``d`` (days, i.e. 86400 seconds).  The count must be
    positive and the interval at most 36525 days.  ``@every`` and the unit
    letters are lowercase only.  The next fire time is
    simply ``from_unix + interval``: no calendar alignment and no time zone.

Cron: 5 or 6 whitespace-separated fields
    ``minute hour day-of-month month day-of-week`` (second fixed at 0), or
    ``second minute hour day-of-month month day-of-week``.

    ===============  =======
    field            range
    ===============  =======
    second           0-59
    minute           0-59
    hour             0-23
    day-of-month     1-31
    month            1-12
    day-of-week      0-6 (0 = Sunday; 7 is rejected)
    ===============  =======

    A field is a comma-separated list of items.  An item is ``*`` (the whole
    range), ``N`` or ``N-M`` (inclusive, ``N <= M``), optionally followed by
    ``/K`` with ``K >= 1``; a step enumerates from the item's start to its
    end (``*/15`` -> 0,15,30,45; ``0-30/10`` -> 0,10,20,30) and a single
    value with a step (``5/10``) denotes just that value.  Names (``JAN``,
    ``MON``), ``?``, ``L``, ``W``, ``#`` and macros such as ``@daily`` are
    not supported.

    A local wall-clock time matches when *all six* components are in their
    sets.  In particular day-of-month and day-of-week are intersected (both
    must match), unlike classic cron, which takes their union.

Next fire time and daylight-saving time
=======================================

Cron expressions are evaluated against local wall-clock time, second by
second.  Every wall-clock time ``w`` (a naive date-time with whole seconds)
is mapped to a single instant ``inst(w)``:

* if ``w`` occurs exactly once in local time, ``inst(w)`` is that instant;
* if ``w`` is ambiguous (it occurs twice because clocks were set back),
  ``inst(w)`` is the *earlier* of the two instants;
* if ``w`` does not exist (clocks jumped over it), ``inst(w)`` is the
  transition instant, i.e. the first existing local time after ``w``
  (for example 02:30 on a US spring-forward day maps to 03:00:00 local).

``inst`` is non-decreasing in ``w``.  The next fire time after ``from_unix``
is ``inst(w)`` for the earliest matching wall-clock time ``w`` such that
``inst(w) > from_unix``.  Consequences:

* a schedule never fires twice during a repeated (fall-back) hour; it fires
  during the first occurrence only;
* if ``from_unix`` lies in the second occurrence of a repeated hour, the
  remaining wall-clock times of that hour map to their first occurrence,
  which is in the past, so they are skipped;
* every matching time inside a spring-forward gap fires once, at the
  transition instant (several matching times in one gap collapse into a
  single firing).

The search covers wall-clock times up to 100 calendar years after the year
of ``from_unix``; if nothing matches (for example ``0 0 31 2 *``), a
:class:`ValueError` is raised.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from ._validate import check_str

__all__ = ["CronExpr", "next_after", "next_after_unix", "parse"]

#: Upper bound for ``@every`` intervals: 100 Julian years, in seconds.
MAX_INTERVAL_SECONDS = 36525 * 86400
#: How many calendar years past ``from_unix`` the cron search looks.
SEARCH_YEARS = 100

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DIGITS = frozenset("0123456789")
_MAX_YEAR = 9999

# (name, low, high) in 6-field order.
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)

_Wall = tuple[int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed schedule expression (an ``@every`` interval or a cron expression).

    Obtain instances with :func:`parse`.  ``interval`` is the interval in
    seconds for ``@every`` expressions and ``None`` for cron expressions;
    the remaining fields are bit masks of the allowed values (bit ``n`` set
    means value ``n`` is allowed) and are ``0`` for intervals.
    """

    expr: str
    interval: int | None = None
    seconds: int = field(default=0, repr=False)
    minutes: int = field(default=0, repr=False)
    hours: int = field(default=0, repr=False)
    days: int = field(default=0, repr=False)
    months: int = field(default=0, repr=False)
    weekdays: int = field(default=0, repr=False)

    def next_after_unix(self, from_unix: int, tz: tzinfo | None = None) -> int:
        """Return the first fire time strictly after ``from_unix`` (Unix seconds).

        Calendar fields are matched in ``tz`` (e.g. ``zoneinfo.ZoneInfo("Europe/Paris")``)
        or, when ``tz`` is ``None``, in the process's local time zone.
        See the module docstring for the exact semantics, including DST.
        Raises :class:`ValueError` if a cron expression has no matching time
        within 100 years, or if ``from_unix`` is outside the range supported
        by the platform's local-time conversion.
        """
        from_unix = operator.index(from_unix)
        if self.interval is not None:
            return from_unix + self.interval
        start = self._first_candidate_wall(from_unix, tz)
        y_limit = min(start[0] + SEARCH_YEARS, _MAX_YEAR)
        while True:
            wall = self._next_match(start, y_limit)
            if wall is None:
                raise ValueError(
                    f"schedule '{self.expr}' has no matching time within "
                    f"{SEARCH_YEARS} years after {from_unix}"
                )
            ts = _instant_of_wall(wall, tz)
            if ts > from_unix:
                return ts
            # Not reachable with correct fold information from the platform;
            # kept as a safety net so the result is always > from_unix.
            y, mo, d, h, mi, s = wall
            start = (y, mo, d, h, mi, s + 1)

    # -- internals ---------------------------------------------------------

    def _first_candidate_wall(self, from_unix: int, tz: tzinfo | None) -> _Wall:
        """Smallest wall-clock time ``w`` with ``inst(w) > from_unix``.

        Returned possibly denormalised (seconds may be 60); the calendar
        search carries the overflow.
        """
        now = _local(from_unix, tz)
        if now.fold:
            # from_unix is in the second occurrence of a repeated period; all
            # later wall times of that period map to their first occurrence,
            # which is in the past.  Skip to the first instant after from_unix
            # that is no longer in the second occurrence.
            first = _timestamp(now.replace(fold=0), tz)
            span = from_unix - first
            if span > 0:
                lo, hi = from_unix, from_unix + span  # fold(lo)=1, fold(hi)=0
                if _local(hi, tz).fold == 0:
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if _local(mid, tz).fold:
                            lo = mid
                        else:
                            hi = mid
                    end = _local(hi, tz)
                    return (end.year, end.month, end.day, end.hour, end.minute, end.second)
        return (now.year, now.month, now.day, now.hour, now.minute, now.second + 1)

    def _next_day(self, year: int, month: int, day: int, ndays: int) -> int:
        """First day >= ``day`` of the month matching day-of-month and day-of-week."""
        days = self.days
        weekdays = self.weekdays
        # Cron weekday (0 = Sunday) of the first of the month.
        first_dow = (datetime(year, month, 1).weekday() + 1) % 7
        while day <= ndays:
            day = _next_bit(days, day)
            if day < 0 or day > ndays:
                return -1
            if (weekdays >> ((first_dow + day - 1) % 7)) & 1:
                return day
            day += 1
        return -1

    def _next_match(self, start: _Wall, y_limit: int) -> _Wall | None:
        """Earliest matching wall-clock time >= ``start`` (in year <= ``y_limit``)."""
        y, mo, d, h, mi, s = start
        while y <= y_limit:
            nmo = _next_bit(self.months, mo)
            if nmo < 0:
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if nmo != mo:
                mo, d, h, mi, s = nmo, 1, 0, 0, 0
            nd = self._next_day(y, mo, d, _days_in_month(y, mo))
            if nd < 0:
                if mo == 12:
                    y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                else:
                    mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                continue
            if nd != d:
                d, h, mi, s = nd, 0, 0, 0
            nh = _next_bit(self.hours, h)
            if nh < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if nh != h:
                h, mi, s = nh, 0, 0
            nmi = _next_bit(self.minutes, mi)
            if nmi < 0:
                h, mi, s = h + 1, 0, 0
                continue
            if nmi != mi:
                mi, s = nmi, 0
            ns = _next_bit(self.seconds, s)
            if ns < 0:
                mi, s = mi + 1, 0
                continue
            return (y, mo, d, h, mi, ns)
        return None


def _next_bit(mask: int, start: int) -> int:
    """Smallest set bit index >= ``start`` in ``mask``, or -1."""
    rest = mask >> start
    if not rest:
        return -1
    return start + (rest & -rest).bit_length() - 1


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _local(ts: int, tz: tzinfo | None = None) -> datetime:
    """Naive wall-clock time of instant ``ts`` in ``tz`` (local when None), ``fold`` set."""
    try:
        if tz is None:
            return datetime.fromtimestamp(ts)
        return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"timestamp {ts} is out of the supported range") from exc


def _timestamp(naive: datetime, tz: tzinfo | None) -> int:
    """Instant of naive wall time ``naive`` in ``tz`` (its ``fold`` picks the occurrence)."""
    if tz is None:
        return int(naive.timestamp())
    return int(naive.replace(tzinfo=tz).timestamp())


def _instant_of_wall(wall: _Wall, tz: tzinfo | None = None) -> int:
    """``inst(w)``: earliest instant showing wall time ``w``, or the end of its gap."""
    naive = datetime(*wall)
    ts = _timestamp(naive, tz)  # fold=0: earlier instant if ambiguous
    if _local(ts, tz) == naive:  # naive comparison ignores fold
        return ts
    # ``naive`` falls in a gap.  Find the first instant whose wall time is
    # later than ``naive``: that is the transition instant.
    other = _timestamp(naive.replace(fold=1), tz)
    lo, hi = min(ts, other), max(ts, other)
    step = 3600
    while _local(lo, tz) >= naive:
        lo -= step
        step *= 2
    step = 3600
    while _local(hi, tz) <= naive:
        hi += step
        step *= 2
    # invariant: wall(lo) < naive < wall(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local(mid, tz) > naive:
            hi = mid
        else:
            lo = mid
    return hi


# -- parsing -----------------------------------------------------------------


def _error(expr: str, detail: str) -> ValueError:
    return ValueError(f"invalid schedule '{expr}': {detail}")


def _parse_int(text: str) -> int | None:
    """Parse a non-empty run of ASCII digits; ``None`` if ``text`` is not one."""
    if not text or not _DIGITS.issuperset(text):
        return None
    text = text.lstrip("0") or "0"
    if len(text) > 18:  # beyond any meaningful value; avoid huge int parsing
        return 10**18
    return int(text)


def _parse_interval(expr: str, body: str) -> CronExpr:
    body = body.strip()
    if not body:
        raise _error(expr, "missing interval after '@every'")
    i = 0
    while i < len(body) and body[i] in _DIGITS:
        i += 1
    digits, unit = body[:i], body[i:]
    if not digits:
        raise _error(expr, f"interval '{body}' must be a count followed by a unit (s, m, h or d)")
    if not unit:
        raise _error(expr, f"interval '{body}' is missing a unit (s, m, h or d)")
    if unit not in _UNIT_SECONDS:
        if unit[0] in _UNIT_SECONDS and any(c in _DIGITS for c in unit):
            raise _error(
                expr,
                f"interval '{body}' must be a single <count><unit>; "
                "compound intervals are not supported",
            )
        raise _error(expr, f"interval '{body}' has unknown unit '{unit}' (expected s, m, h or d)")
    count = _parse_int(digits)
    assert count is not None
    if count == 0:
        raise _error(expr, "interval must be positive")
    seconds = count * _UNIT_SECONDS[unit]
    if seconds > MAX_INTERVAL_SECONDS:
        raise _error(
            expr, f"interval '{body}' is too large (maximum is {MAX_INTERVAL_SECONDS // 86400}d)"
        )
    return CronExpr(expr, interval=seconds)


def _parse_field(expr: str, text: str, name: str, low: int, high: int) -> int:
    """Parse one cron field into a bit mask."""
    mask = 0
    for item in text.split(","):
        if not item:
            raise _error(expr, f"{name} field '{text}' contains an empty item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            parsed_step = _parse_int(step_text)
            if parsed_step is None:
                raise _error(expr, f"{name} step '{step_text}' is not a positive integer")
            if parsed_step == 0:
                raise _error(expr, f"{name} step {step_text} must be positive")
            step = parsed_step
        if base == "*":
            start, end = low, high
        else:
            first_text, dash, last_text = base.partition("-")
            start = _parse_value(expr, name, first_text, base, low, high)
            if dash:
                end = _parse_value(expr, name, last_text, base, low, high)
                if start > end:
                    raise _error(
                        expr, f"{name} range {base} is inverted (start is greater than end)"
                    )
            else:
                end = start
        for value in range(start, end + 1, step):
            mask |= 1 << value
    return mask


def _parse_value(expr: str, name: str, text: str, item: str, low: int, high: int) -> int:
    value = _parse_int(text)
    if value is None:
        shown = text if text else item
        raise _error(expr, f"{name} value '{shown}' is not a number")
    if not low <= value <= high:
        raise _error(expr, f"{name} value {text} is out of range {low}-{high}")
    return value


@functools.lru_cache(maxsize=1024)
def parse(expr: str) -> CronExpr:
    """Parse a schedule expression (``@every <n><unit>`` or 5/6-field cron).

    Results are cached, so calling this repeatedly with the same text is
    cheap.  Raises :class:`TypeError` if ``expr`` is not a ``str`` and
    :class:`ValueError` (whose message quotes the expression and names the
    offending field and value) if it is invalid.
    """
    check_str(expr, "schedule")
    text = expr.strip()
    if text.startswith("@every"):
        return _parse_interval(text, text[len("@every") :])
    if text.startswith("@"):
        macro = text.split()[0]
        raise _error(
            text,
            f"macro '{macro}' is not supported; use '@every <count><unit>' or 5 or 6 cron fields",
        )
    parts = text.split()
    if len(parts) not in (5, 6):
        raise _error(text, f"expected 5 or 6 fields, got {len(parts)}")
    if len(parts) == 5:
        parts.insert(0, "0")
    masks = [
        _parse_field(text, part, name, low, high)
        for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
    ]
    return CronExpr(
        text,
        interval=None,
        seconds=masks[0],
        minutes=masks[1],
        hours=masks[2],
        days=masks[3],
        months=masks[4],
        weekdays=masks[5],
    )


def next_after_unix(expr: str, from_unix: int, tz: tzinfo | None = None) -> int:
    """Return the first fire time of ``expr`` strictly after ``from_unix``.

    Equivalent to ``parse(expr).next_after_unix(from_unix, tz)``; ``tz=None`` means the
    process's local time zone.
    """
    return parse(expr).next_after_unix(from_unix, tz)


def next_after(expr: str, dt: datetime) -> datetime:
    """Return the first fire time strictly after ``int(dt.timestamp())``.

    The result is a naive datetime in local time
    (``datetime.fromtimestamp(ts)``).  A naive ``dt`` is interpreted as
    local time, as :meth:`datetime.timestamp` does.
    """
    ts = parse(expr).next_after_unix(int(dt.timestamp()))
    return _local(ts)
