"""Example-based tests for honker.cron (parsing, search, leap years, DST)."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from honker import cron
from honker.cron import CronExpr, next_after, next_after_unix, parse

SetTZ = Callable[[str], None]


@pytest.fixture
def set_tz() -> Iterator[SetTZ]:
    """Switch the process time zone (``TZ`` + ``time.tzset()``); restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:

        def _set(name: str) -> None:
            mp.setenv("TZ", name)
            time.tzset()

        yield _set
    time.tzset()


@pytest.fixture
def utc(set_tz: SetTZ) -> None:
    set_tz("UTC")


def u(*args: int) -> int:
    """UTC calendar date-time -> Unix seconds."""
    return calendar.timegm(datetime(*args).timetuple())  # type: ignore[arg-type]


def values(mask: int) -> set[int]:
    return {i for i in range(mask.bit_length()) if mask >> i & 1}


def chain(expr: str, start: int, n: int) -> list[int]:
    """The next ``n`` fire times after ``start``."""
    out = []
    t = start
    for _ in range(n):
        t = next_after_unix(expr, t)
        out.append(t)
    return out


# --------------------------------------------------------------------------
# Parsing: accepted forms
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "minutes"),
    [
        ("* * * * *", set(range(60))),
        ("0 * * * *", {0}),
        ("05 * * * *", {5}),
        ("59 * * * *", {59}),
        ("*/15 * * * *", {0, 15, 30, 45}),
        ("*/1 * * * *", set(range(60))),
        ("*/59 * * * *", {0, 59}),
        ("*/60 * * * *", {0}),
        ("*/100 * * * *", {0}),
        ("0-30/10 * * * *", {0, 10, 20, 30}),
        ("1-31/10 * * * *", {1, 11, 21, 31}),
        ("10-12 * * * *", {10, 11, 12}),
        ("7-7 * * * *", {7}),
        ("5/10 * * * *", {5}),
        ("1,2,3 * * * *", {1, 2, 3}),
        ("1-3,10-20/5,59 * * * *", {1, 2, 3, 10, 15, 20, 59}),
        ("3,3,3 * * * *", {3}),
        ("*,5 * * * *", set(range(60))),
    ],
)
def test_parse_minute_field(expr: str, minutes: set[int]) -> None:
    parsed = parse(expr)
    assert parsed.interval is None
    assert values(parsed.minutes) == minutes
    assert values(parsed.seconds) == {0}


def test_parse_five_fields_full_ranges() -> None:
    p = parse("* * * * *")
    assert values(p.seconds) == {0}
    assert values(p.minutes) == set(range(60))
    assert values(p.hours) == set(range(24))
    assert values(p.days) == set(range(1, 32))
    assert values(p.months) == set(range(1, 13))
    assert values(p.weekdays) == set(range(7))


def test_parse_six_fields() -> None:
    p = parse("*/20 1 2 3 4 5")
    assert values(p.seconds) == {0, 20, 40}
    assert values(p.minutes) == {1}
    assert values(p.hours) == {2}
    assert values(p.days) == {3}
    assert values(p.months) == {4}
    assert values(p.weekdays) == {5}
    q = parse("* * * * * *")
    assert values(q.seconds) == set(range(60))


def test_parse_field_bounds() -> None:
    p = parse("59 59 23 31 12 6")
    assert values(p.seconds) == {59}
    assert values(p.hours) == {23}
    assert values(p.days) == {31}
    assert values(p.months) == {12}
    assert values(p.weekdays) == {6}
    q = parse("0 0 0 1 1 0")
    assert values(q.days) == {1}
    assert values(q.months) == {1}
    assert values(q.weekdays) == {0}
    assert values(parse("* * */10 */5 */2").days) == {1, 11, 21, 31}
    assert values(parse("* * */10 */5 */2").months) == {1, 6, 11}
    assert values(parse("* * */10 */5 */2").weekdays) == {0, 2, 4, 6}


@pytest.mark.parametrize(
    "expr",
    ["  */5 * * * *  ", "\t*/5\t*  *\n* *\n", "*/5 * * * *"],
)
def test_parse_whitespace(expr: str) -> None:
    p = parse(expr)
    assert values(p.minutes) == {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55}
    assert p.expr == expr.strip()


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [
        ("@every 1s", 1),
        ("@every 30s", 30),
        ("@every 5m", 300),
        ("@every 2h", 7200),
        ("@every 1d", 86400),
        ("@every 0005m", 300),
        ("@every5m", 300),
        ("@every    10s", 10),
        ("@every\t10s", 10),
        ("  @every 10s  ", 10),
        ("@every 36525d", 36525 * 86400),
    ],
)
def test_parse_every(expr: str, seconds: int) -> None:
    p = parse(expr)
    assert p.interval == seconds
    assert next_after_unix(expr, 1_000) == 1_000 + seconds
    assert next_after_unix(expr, 0) == seconds
    assert next_after_unix(expr, -5) == -5 + seconds


def test_parse_is_cached() -> None:
    a = parse("1 2 3 4 5")
    b = parse("1 2 3 4 5")
    assert a is b
    assert isinstance(a, CronExpr)
    info = cron.parse.cache_info()
    assert info.hits >= 1


def test_cron_expr_is_frozen_and_hashable() -> None:
    p = parse("*/5 * * * *")
    with pytest.raises(AttributeError):
        p.minutes = 0  # type: ignore[misc]
    assert hash(p) == hash(parse("*/5 * * * *"))
    assert "*/5 * * * *" in repr(p)


# --------------------------------------------------------------------------
# Parsing: errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        # field count / macros
        ("", ["expected 5 or 6 fields, got 0"]),
        ("   ", ["expected 5 or 6 fields, got 0"]),
        ("* * * *", ["expected 5 or 6 fields, got 4"]),
        ("* * * * * * *", ["expected 5 or 6 fields, got 7"]),
        ("@daily", ["@daily", "not supported"]),
        ("@hourly", ["@hourly", "not supported"]),
        ("@reboot", ["@reboot"]),
        ("@yearly", ["@yearly"]),
        # range checks, per field
        ("61 * * * *", ["minute value 61 is out of range 0-59"]),
        ("60 * * * *", ["minute value 60 is out of range 0-59"]),
        ("* 24 * * *", ["hour value 24 is out of range 0-23"]),
        ("* * 0 * *", ["day-of-month value 0 is out of range 1-31"]),
        ("* * 32 * *", ["day-of-month value 32 is out of range 1-31"]),
        ("* * * 0 *", ["month value 0 is out of range 1-12"]),
        ("* * * 13 *", ["month value 13 is out of range 1-12"]),
        ("* * * * 7", ["day-of-week value 7 is out of range 0-6"]),
        ("60 * * * * *", ["second value 60 is out of range 0-59"]),
        ("0 60 * * * *", ["minute value 60 is out of range 0-59"]),
        ("* * * * 0-7", ["day-of-week value 7 is out of range 0-6"]),
        ("1-60 * * * *", ["minute value 60 is out of range 0-59"]),
        ("99999999999999999999999 * * * *", ["minute value", "out of range 0-59"]),
        # inverted ranges
        ("30-10 * * * *", ["minute range 30-10", "inverted"]),
        ("* * * 12-1 *", ["month range 12-1", "inverted"]),
        # steps
        ("*/0 * * * *", ["minute step 0 must be positive"]),
        ("0-30/0 * * * *", ["minute step 0 must be positive"]),
        ("* */00 * * *", ["hour step 00 must be positive"]),
        ("*/ * * * *", ["minute step", "not a positive integer"]),
        ("*/-1 * * * *", ["minute step '-1'"]),
        ("*/x * * * *", ["minute step 'x'"]),
        ("*/1/2 * * * *", ["minute step '1/2'"]),
        ("*/1.5 * * * *", ["minute step '1.5'"]),
        # not integers / unsupported syntax
        ("* * * JAN *", ["month value 'JAN' is not a number"]),
        ("* * * * MON", ["day-of-week value 'MON' is not a number"]),
        ("* * ? * *", ["day-of-month value '?'"]),
        ("* * L * *", ["day-of-month value 'L'"]),
        ("* * 15W * *", ["day-of-month value '15W'"]),
        ("* * * * 5#3", ["day-of-week value '5#3'"]),
        ("* * * * 5L", ["day-of-week value '5L'"]),
        ("1.5 * * * *", ["minute value '1.5'"]),
        ("+5 * * * *", ["minute value '+5'"]),
        ("-5 * * * *", ["minute value '-5'"]),
        ("1_0 * * * *", ["minute value '1_0'"]),
        ("\u0665 * * * *", ["minute value '\u0665'"]),
        ("** * * * *", ["minute value '**'"]),
        ("*-5 * * * *", ["minute value '*'"]),
        ("1-2-3 * * * *", ["minute value '2-3'"]),
        ("5- * * * *", ["minute value"]),
        ("-5- * * * *", ["minute value"]),
        # empty items
        ("1,,2 * * * *", ["minute field '1,,2'", "empty item"]),
        ("1, * * * *", ["minute field '1,'", "empty item"]),
        (",1 * * * *", ["minute field ',1'", "empty item"]),
        ("* * * , *", ["month field ','", "empty item"]),
        # @every
        ("@every", ["missing interval"]),
        ("@every   ", ["missing interval"]),
        ("@every 0s", ["interval must be positive"]),
        ("@every 000m", ["interval must be positive"]),
        ("@every 5", ["'5'", "missing a unit"]),
        ("@every s", ["'s'", "count followed by a unit"]),
        ("@every -5m", ["'-5m'"]),
        ("@every +5m", ["'+5m'"]),
        ("@every 1.5h", ["'1.5h'"]),
        ("@every 5w", ["unknown unit 'w'"]),
        ("@every 5ms", ["unknown unit 'ms'"]),
        ("@every 5M", ["unknown unit 'M'"]),
        ("@every 5 m", ["'5 m'"]),
        ("@every 5m extra", ["'5m extra'"]),
        ("@every 1h30m", ["'1h30m'", "compound"]),
        ("@every 1d12h", ["'1d12h'", "compound"]),
        ("@every 36526d", ["too large"]),
        ("@every 99999999999999999999999999999s", ["too large"]),
        ("@everyday", ["'day'"]),
        ("@every \u0665m", ["'\u0665m'"]),
    ],
)
def test_parse_errors(expr: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse(expr)
    message = str(info.value)
    assert message.startswith(f"invalid schedule '{expr.strip()}': "), message
    for fragment in fragments:
        assert fragment in message, message


def test_parse_error_messages_exact() -> None:
    cases = {
        "61 * * * *": "invalid schedule '61 * * * *': minute value 61 is out of range 0-59",
        "*/0 * * * *": "invalid schedule '*/0 * * * *': minute step 0 must be positive",
        "* * * *": "invalid schedule '* * * *': expected 5 or 6 fields, got 4",
        "@every 0s": "invalid schedule '@every 0s': interval must be positive",
    }
    for expr, message in cases.items():
        with pytest.raises(ValueError) as info:
            parse(expr)
        assert str(info.value) == message


@pytest.mark.parametrize("bad", [None, 5, 1.5, b"* * * * *", ["* * * * *"]])
def test_parse_non_str_is_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        parse(bad)
    with pytest.raises(TypeError):
        next_after_unix(bad, 0)  # type: ignore[arg-type]


def test_from_unix_must_be_an_integer(utc: None) -> None:
    with pytest.raises(TypeError):
        next_after_unix("* * * * *", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        next_after_unix("@every 1s", "0")  # type: ignore[arg-type]


def test_out_of_range_timestamp(utc: None) -> None:
    with pytest.raises(ValueError):
        next_after_unix("* * * * *", 10**15)
    with pytest.raises(ValueError):
        next_after_unix("* * * * *", -(10**15))


# --------------------------------------------------------------------------
# Next fire time (UTC)
# --------------------------------------------------------------------------


def test_every_minute_is_strictly_after(utc: None) -> None:
    t = u(2025, 6, 1, 12, 0, 0)
    assert next_after_unix("* * * * *", t) == t + 60
    assert next_after_unix("* * * * *", t - 1) == t
    assert next_after_unix("* * * * *", t - 59) == t
    assert next_after_unix("* * * * *", t - 60) == t
    assert next_after_unix("* * * * * *", t) == t + 1
    assert next_after_unix("* * * * * *", t - 1) == t


def test_every_does_not_align(utc: None) -> None:
    assert next_after_unix("@every 5m", 1_000_007) == 1_000_307
    assert next_after_unix("@every 1d", u(2025, 3, 9, 3, 17, 2)) == u(2025, 3, 10, 3, 17, 2)


def test_every_ignores_dst(set_tz: SetTZ) -> None:
    set_tz("America/New_York")
    before = u(2025, 3, 9, 5, 0, 0)  # 00:00 EST
    assert next_after_unix("@every 1d", before) == before + 86400
    assert next_after_unix("@every 3h", before) == before + 3 * 3600


def test_steps_and_lists(utc: None) -> None:
    t = u(2025, 6, 1, 12, 7, 30)
    assert chain("*/15 * * * *", t, 4) == [
        u(2025, 6, 1, 12, 15),
        u(2025, 6, 1, 12, 30),
        u(2025, 6, 1, 12, 45),
        u(2025, 6, 1, 13, 0),
    ]
    assert chain("0-30/10 9,17 * * *", u(2025, 6, 1), 5) == [
        u(2025, 6, 1, 9, 0),
        u(2025, 6, 1, 9, 10),
        u(2025, 6, 1, 9, 20),
        u(2025, 6, 1, 9, 30),
        u(2025, 6, 1, 17, 0),
    ]
    assert chain("10,20 30 * * * *", t, 3) == [
        u(2025, 6, 1, 12, 30, 10),
        u(2025, 6, 1, 12, 30, 20),
        u(2025, 6, 1, 13, 30, 10),
    ]


def test_hour_and_day_rollover(utc: None) -> None:
    assert next_after_unix("0 0 * * *", u(2025, 6, 1, 0, 0)) == u(2025, 6, 2)
    assert next_after_unix("30 23 * * *", u(2025, 6, 30, 23, 30)) == u(2025, 7, 1, 23, 30)
    assert next_after_unix("59 59 23 * * *", u(2025, 6, 1, 23, 59, 58)) == u(2025, 6, 1, 23, 59, 59)
    assert next_after_unix("0 0 0 * * *", u(2025, 6, 1, 23, 59, 59)) == u(2025, 6, 2)


def test_year_rollover(utc: None) -> None:
    assert next_after_unix("0 0 1 1 *", u(2025, 12, 31, 23, 59, 59)) == u(2026, 1, 1)
    assert next_after_unix("0 0 1 1 *", u(2026, 1, 1)) == u(2027, 1, 1)
    assert next_after_unix("* * * * *", u(2025, 12, 31, 23, 59, 30)) == u(2026, 1, 1)
    assert next_after_unix("0 12 * 1 *", u(2025, 2, 1)) == u(2026, 1, 1, 12, 0)
    assert next_after_unix("0 0 * * 0", u(2025, 12, 28, 0, 0, 1)) == u(2026, 1, 4)


def test_month_lengths(utc: None) -> None:
    assert next_after_unix("0 0 31 * *", u(2025, 4, 1)) == u(2025, 5, 31)
    assert next_after_unix("0 0 31 * *", u(2025, 5, 31)) == u(2025, 7, 31)
    assert next_after_unix("0 0 30 * *", u(2025, 1, 31)) == u(2025, 3, 30)
    assert chain("0 0 31 * *", u(2025, 1, 1), 7) == [
        u(2025, 1, 31),
        u(2025, 3, 31),
        u(2025, 5, 31),
        u(2025, 7, 31),
        u(2025, 8, 31),
        u(2025, 10, 31),
        u(2025, 12, 31),
    ]


def test_day_of_week_zero_is_sunday(utc: None) -> None:
    # 2025-01-01 is a Wednesday.
    assert next_after_unix("0 12 * * 0", u(2025, 1, 1)) == u(2025, 1, 5, 12)
    assert next_after_unix("0 12 * * 6", u(2025, 1, 1)) == u(2025, 1, 4, 12)
    assert next_after_unix("0 12 * * 1", u(2025, 1, 1)) == u(2025, 1, 6, 12)
    assert next_after_unix("0 12 * * 3", u(2025, 1, 1)) == u(2025, 1, 1, 12)
    weekdays = chain("0 9 * * 1-5", u(2025, 1, 3, 10), 3)  # Friday 10:00
    assert weekdays == [u(2025, 1, 6, 9), u(2025, 1, 7, 9), u(2025, 1, 8, 9)]


def test_day_of_month_and_day_of_week_intersect(utc: None) -> None:
    # Friday the 13th: classic cron (union) would fire on Friday 2025-01-03.
    assert next_after_unix("0 0 13 * 5", u(2025, 1, 1)) == u(2025, 6, 13)
    assert next_after_unix("0 0 13 * 5", u(2025, 6, 13)) == u(2026, 2, 13)
    # The first Monday of the month.
    assert chain("0 8 1-7 * 1", u(2025, 1, 1), 3) == [
        u(2025, 1, 6, 8),
        u(2025, 2, 3, 8),
        u(2025, 3, 3, 8),
    ]
    # Christmas on a Sunday.
    assert next_after_unix("0 0 25 12 0", u(2025, 1, 1)) == u(2033, 12, 25)


def test_leap_years(utc: None) -> None:
    assert next_after_unix("0 0 29 2 *", u(2025, 1, 1)) == u(2028, 2, 29)
    assert next_after_unix("0 0 29 2 *", u(2024, 2, 28)) == u(2024, 2, 29)
    assert next_after_unix("0 0 29 2 *", u(2024, 2, 29)) == u(2028, 2, 29)
    # 2100 is not a leap year, 2000 is.
    assert next_after_unix("0 0 29 2 *", u(2096, 3, 1)) == u(2104, 2, 29)
    assert next_after_unix("0 0 29 2 *", u(1999, 1, 1)) == u(2000, 2, 29)
    # Feb 29 falling on a Monday: 2016, 2044, 2072.
    assert next_after_unix("0 0 29 2 1", u(2016, 3, 1)) == u(2044, 2, 29)
    assert next_after_unix("0 0 * 2 *", u(2024, 2, 28, 1)) == u(2024, 2, 29)
    assert next_after_unix("0 0 * 2 *", u(2025, 2, 28, 1)) == u(2026, 2, 1)
    assert next_after_unix("0 0 1 3 *", u(2024, 2, 28, 1)) == u(2024, 3, 1)


def test_leap_day_search_is_fast(utc: None) -> None:
    start = time.perf_counter()
    for i in range(200):
        next_after_unix("0 0 29 2 *", u(2025, 1, 1) + i * 86400)
        next_after_unix("59 59 23 29 2 1", u(2016, 3, 1) + i * 86400)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 31 2 *",
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "* * 30-31 2 *",
        "0 0 0 31 2 *",
        "* * * 31 2,4,6,9,11 *",
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_unsatisfiable_raises_quickly(set_tz: SetTZ, zone: str, expr: str) -> None:
    set_tz(zone)
    parse(expr)  # syntactically valid
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no matching time within 100 years"):
        next_after_unix(expr, u(2025, 1, 1))
    assert time.perf_counter() - start < 0.05


def test_search_limit_near_max_year(utc: None) -> None:
    assert next_after_unix("0 0 1 1 *", u(9998, 6, 1)) == u(9999, 1, 1)
    with pytest.raises(ValueError):
        next_after_unix("0 0 1 1 *", u(9999, 6, 1))


def test_time_zone_is_not_cached(set_tz: SetTZ) -> None:
    t = u(2025, 6, 1)
    set_tz("UTC")
    assert next_after_unix("0 12 * * *", t) == u(2025, 6, 1, 12)
    set_tz("America/New_York")  # EDT, UTC-4
    assert next_after_unix("0 12 * * *", t) == u(2025, 6, 1, 16)
    set_tz("Europe/London")  # BST, UTC+1
    assert next_after_unix("0 12 * * *", t) == u(2025, 6, 1, 11)
    set_tz("Asia/Kolkata")  # UTC+5:30
    assert next_after_unix("0 12 * * *", t) == u(2025, 6, 1, 6, 30)


# --------------------------------------------------------------------------
# next_after (datetime API)
# --------------------------------------------------------------------------


def test_next_after_naive_local(set_tz: SetTZ) -> None:
    set_tz("America/New_York")
    got = next_after("0 9 * * *", datetime(2025, 6, 1, 8, 30))
    assert got == datetime(2025, 6, 1, 9, 0)
    assert got.tzinfo is None
    assert next_after("0 9 * * *", datetime(2025, 6, 1, 9, 0)) == datetime(2025, 6, 2, 9, 0)
    assert next_after("@every 90s", datetime(2025, 6, 1, 8, 30)) == datetime(2025, 6, 1, 8, 31, 30)


def test_next_after_aware_input(set_tz: SetTZ) -> None:
    set_tz("America/New_York")
    dt = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)  # 08:30 EDT
    assert next_after("0 9 * * *", dt) == datetime(2025, 6, 1, 9, 0)
    dt2 = datetime(2025, 6, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))  # 03:30 EDT
    assert next_after("0 * * * *", dt2) == datetime(2025, 6, 1, 4, 0)


def test_next_after_truncates_fraction(utc: None) -> None:
    dt = datetime(2025, 6, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    assert next_after("* * * * * *", dt) == datetime(2025, 6, 1, 12, 0, 1)


def test_next_after_returns_transition_in_gap(set_tz: SetTZ) -> None:
    set_tz("America/New_York")
    got = next_after("30 2 * * *", datetime(2025, 3, 9, 0, 0))
    assert got == datetime(2025, 3, 9, 3, 0)


# --------------------------------------------------------------------------
# Daylight-saving time: America/New_York
# --------------------------------------------------------------------------

NY_SPRING_2025 = 1741503600  # 2025-03-09 07:00 UTC: 02:00 EST -> 03:00 EDT
NY_FALL_2025 = 1762063200  # 2025-11-02 06:00 UTC: 02:00 EDT -> 01:00 EST
NY_SPRING_2026 = 1772953200  # 2026-03-08 07:00 UTC
NY_FALL_2026 = 1793512800  # 2026-11-01 06:00 UTC
LONDON_SPRING_2025 = 1743296400  # 2025-03-30 01:00 UTC: 01:00 GMT -> 02:00 BST
LONDON_FALL_2025 = 1761440400  # 2025-10-26 01:00 UTC: 02:00 BST -> 01:00 GMT
LONDON_SPRING_2026 = 1774746000  # 2026-03-29 01:00 UTC
LONDON_FALL_2026 = 1792890000  # 2026-10-25 01:00 UTC


def test_transition_constants() -> None:
    assert u(2025, 3, 9, 7) == NY_SPRING_2025
    assert u(2025, 11, 2, 6) == NY_FALL_2025
    assert u(2026, 3, 8, 7) == NY_SPRING_2026
    assert u(2026, 11, 1, 6) == NY_FALL_2026
    assert u(2025, 3, 30, 1) == LONDON_SPRING_2025
    assert u(2025, 10, 26, 1) == LONDON_FALL_2025
    assert u(2026, 3, 29, 1) == LONDON_SPRING_2026
    assert u(2026, 10, 25, 1) == LONDON_FALL_2026


@pytest.fixture
def new_york(set_tz: SetTZ) -> None:
    set_tz("America/New_York")
    assert datetime.fromtimestamp(NY_SPRING_2025 - 1) == datetime(2025, 3, 9, 1, 59, 59)
    assert datetime.fromtimestamp(NY_SPRING_2025) == datetime(2025, 3, 9, 3, 0, 0)


@pytest.fixture
def london(set_tz: SetTZ) -> None:
    set_tz("Europe/London")
    assert datetime.fromtimestamp(LONDON_SPRING_2025 - 1) == datetime(2025, 3, 30, 0, 59, 59)
    assert datetime.fromtimestamp(LONDON_SPRING_2025) == datetime(2025, 3, 30, 2, 0, 0)


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 2 * * *", "0 30 2 * * *", "59 59 2 * * *"])
def test_ny_spring_forward_gap_fires_at_transition(new_york: None, expr: str) -> None:
    midnight = NY_SPRING_2025 - 2 * 3600  # 00:00 EST
    assert next_after_unix(expr, midnight) == NY_SPRING_2025
    assert next_after_unix(expr, NY_SPRING_2025 - 1) == NY_SPRING_2025
    # The skipped time fires only once; the next day is back to normal (EDT).
    nxt = next_after_unix(expr, NY_SPRING_2025)
    wall = datetime.fromtimestamp(nxt)
    assert wall.date() == datetime(2025, 3, 10).date()
    assert wall.hour == 2


def test_ny_spring_forward_sequences(new_york: None) -> None:
    t = NY_SPRING_2025
    # Every 15 minutes: 01:45 EST, then 02:00 (gap) -> 03:00 EDT, then 03:15.
    assert chain("*/15 * * * *", t - 20 * 60, 4) == [t - 15 * 60, t, t + 15 * 60, t + 30 * 60]
    # 02:00, 02:15, ..., 02:45 and 03:00 all collapse into a single firing.
    assert chain("*/15 2,3 * * *", t - 3600, 3) == [t, t + 15 * 60, t + 30 * 60]
    # A time after the gap is unaffected.
    assert next_after_unix("0 3 * * *", t - 3 * 3600) == t
    assert next_after_unix("30 3 * * *", t - 3 * 3600) == t + 1800
    assert next_after_unix("59 1 * * *", t - 3 * 3600) == t - 60
    # Every second across the transition.
    assert chain("* * * * * *", t - 2, 3) == [t - 1, t, t + 1]
    # Hourly: 01:00 EST, 03:00 EDT (02:00 does not exist), 04:00 EDT.
    assert chain("0 * * * *", t - 2 * 3600 + 1, 3) == [t - 3600, t, t + 3600]
    # The every-day 02:30 fire times around the transition, in UTC.
    assert chain("30 2 * * *", u(2025, 3, 8), 3) == [
        u(2025, 3, 8, 7, 30),  # 02:30 EST
        NY_SPRING_2025,  # 02:30 does not exist -> 03:00 EDT
        u(2025, 3, 10, 6, 30),  # 02:30 EDT
    ]


def test_ny_fall_back_fires_once_in_first_occurrence(new_york: None) -> None:
    t = NY_FALL_2025
    first_0130 = t - 1800  # 01:30 EDT, 05:30 UTC
    second_0130 = t + 1800  # 01:30 EST, 06:30 UTC
    assert datetime.fromtimestamp(first_0130) == datetime(2025, 11, 2, 1, 30)
    assert datetime.fromtimestamp(second_0130) == datetime(2025, 11, 2, 1, 30)
    assert datetime.fromtimestamp(second_0130).fold == 1
    assert chain("30 1 * * *", u(2025, 10, 31, 12), 3) == [
        u(2025, 11, 1, 5, 30),  # 01:30 EDT
        first_0130,  # 01:30 EDT on the transition day
        u(2025, 11, 3, 6, 30),  # 01:30 EST; the repeated 01:30 EST is skipped
    ]
    # Every half hour: 01:00 EDT, 01:30 EDT, then 02:00 EST (01:00/01:30 EST skipped).
    assert chain("*/30 * * * *", t - 3600 - 60, 4) == [
        t - 3600,
        t - 1800,
        t + 3600,
        t + 3600 + 1800,
    ]
    # From the last second of the first occurrence, the next second is 02:00:00 EST.
    assert next_after_unix("* * * * * *", t - 1) == t + 3600
    # 02:00 exists once (EST).
    assert next_after_unix("0 2 * * *", t - 3 * 3600) == t + 3600


def test_ny_from_inside_second_occurrence(new_york: None) -> None:
    t = NY_FALL_2025
    second_0130 = t + 1800  # 01:30 EST
    # Wall times of the repeated hour map to their first (past) occurrence.
    assert next_after_unix("45 1 * * *", second_0130) == u(2025, 11, 3, 6, 45)
    assert next_after_unix("* * * * *", second_0130) == t + 3600  # 02:00 EST
    assert next_after_unix("* * * * * *", t) == t + 3600  # from 01:00:00 EST
    assert next_after_unix("0 2 * * *", second_0130) == t + 3600
    assert next_after_unix("*/10 * * * *", t + 3599) == t + 3600
    # Times that lie in the repeated hour but before from_unix's wall time too.
    assert next_after_unix("15 1 * * *", second_0130) == u(2025, 11, 3, 6, 15)
    # Other expressions are unaffected.
    assert next_after_unix("0 3 * * *", second_0130) == t + 2 * 3600
    assert next_after_unix("@every 1m", second_0130) == second_0130 + 60


def test_ny_2026_transitions(new_york: None) -> None:
    assert next_after_unix("30 2 8 3 *", u(2026, 1, 1)) == NY_SPRING_2026
    assert next_after_unix("30 1 1 11 *", u(2026, 10, 1)) == NY_FALL_2026 - 1800
    assert next_after_unix("30 1 1 11 *", NY_FALL_2026 - 1800) == u(2027, 11, 1, 5, 30)


def test_ny_next_after_datetimes(new_york: None) -> None:
    got = next_after("*/30 * * * *", datetime.fromtimestamp(NY_FALL_2025 - 1800))
    assert got == datetime(2025, 11, 2, 2, 0)
    got = next_after("0 * * * *", datetime(2025, 3, 9, 1, 0))
    assert got == datetime(2025, 3, 9, 3, 0)


# --------------------------------------------------------------------------
# Daylight-saving time: Europe/London
# --------------------------------------------------------------------------


def test_london_spring_forward(london: None) -> None:
    t = LONDON_SPRING_2025  # 01:00 GMT -> 02:00 BST; 01:00-01:59 do not exist
    midnight = t - 3600
    assert next_after_unix("30 1 * * *", midnight) == t
    assert next_after_unix("0 1 * * *", midnight) == t
    assert next_after_unix("0 2 * * *", midnight) == t
    assert next_after_unix("30 1 * * *", t) == u(2025, 3, 31, 0, 30)  # 01:30 BST
    assert chain("*/20 * * * *", midnight + 30 * 60, 3) == [midnight + 40 * 60, t, t + 20 * 60]
    assert next_after_unix("59 59 0 * * *", midnight) == t - 1
    assert next_after_unix("0 0 1 * * *", t - 1) == t
    assert next_after_unix("30 1 29 3 *", LONDON_SPRING_2026 - 3600) == LONDON_SPRING_2026


def test_london_fall_back(london: None) -> None:
    t = LONDON_FALL_2025  # 02:00 BST -> 01:00 GMT; 01:00-01:59 repeat
    first_0130 = t - 1800  # 01:30 BST = 00:30 UTC
    second_0130 = t + 1800  # 01:30 GMT
    assert datetime.fromtimestamp(first_0130) == datetime(2025, 10, 26, 1, 30)
    assert datetime.fromtimestamp(second_0130) == datetime(2025, 10, 26, 1, 30)
    midnight = t - 2 * 3600  # 00:00 BST
    assert next_after_unix("30 1 * * *", midnight) == first_0130
    assert next_after_unix("30 1 * * *", first_0130) == u(2025, 10, 27, 1, 30)
    assert next_after_unix("30 1 * * *", second_0130) == u(2025, 10, 27, 1, 30)
    assert next_after_unix("* * * * *", second_0130) == t + 3600  # 02:00 GMT
    assert chain("0 * * * *", midnight, 3) == [t - 3600, t + 3600, t + 2 * 3600]
    assert next_after_unix("30 1 25 10 *", LONDON_FALL_2026 - 7200) == LONDON_FALL_2026 - 1800


def test_utc_has_no_dst(utc: None) -> None:
    t = NY_SPRING_2025
    assert next_after_unix("30 2 * * *", u(2025, 3, 9)) == u(2025, 3, 9, 2, 30)
    assert chain("0 * * * *", t - 1, 3) == [t, t + 3600, t + 7200]


def test_explicit_time_zone_matches_process_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    """``tz=ZoneInfo(...)`` gives exactly what running under ``TZ=...`` gives, DST included."""
    import random
    import time as _time
    from zoneinfo import ZoneInfo

    rng = random.Random(7)
    exprs = ["0 9 * * 1-5", "30 2 * * *", "*/20 1-3 * * *", "0 0 29 2 *", "15 1 * 3,10,11 0"]
    starts = [rng.randrange(1_700_000_000, 1_800_000_000) for _ in range(40)]
    starts += [1741499000, 1741500000, 1762063000, 1762066800, 1742691600, 1761440000]
    for zone in ("America/New_York", "Europe/London", "Asia/Kolkata"):
        with monkeypatch.context() as m:
            m.setenv("TZ", zone)
            _time.tzset()
            expected = {(e, t): cron.next_after_unix(e, t) for e in exprs for t in starts}
        _time.tzset()
        for (e, t), want in expected.items():
            assert cron.next_after_unix(e, t, ZoneInfo(zone)) == want, (zone, e, t)
