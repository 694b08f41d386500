"""belfry's input rules: durations, times in IANA zones (DST), priorities, topics, sizes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from belfry import reminders, timeutil
from belfry.config import Settings
from belfry.errors import InvalidInput
from belfry.ntfy import parse_retry_after
from honker import cron

PARIS = "Europe/Paris"


def ts(text: str, tz: str = PARIS) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
     ("1.5h", 5400), ("10 minutes", 600), ("0s", 0), ("1H", 3600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert timeutil.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "hint"),
    [("10", "add a unit"), ("", "empty"), ("5 fortnights", "unknown unit"),
     ("soon", "not a duration"), ("99999999d", "too long")],
)
def test_bad_durations_say_why(text: str, hint: str) -> None:
    with pytest.raises(InvalidInput, match=hint):
        timeutil.parse_duration(text)


def test_every_needs_a_positive_interval() -> None:
    with pytest.raises(InvalidInput, match="at least 1s"):
        reminders.check_timing({"every": "0s"}, PARIS, 0)
    timing = reminders.check_timing({"every": "1h30m"}, PARIS, 0)
    assert (timing.kind, timing.expr, timing.every_s) == ("every", "@every 5400s", 5400)
    assert timeutil.format_duration(5400) == "1h30m"


def test_at_is_read_in_the_reminders_zone() -> None:
    now = ts("2026-06-01T12:00")
    assert timeutil.parse_when("2026-12-01T09:00", PARIS, now) == ts("2026-12-01T09:00")
    assert timeutil.parse_when("2026-12-01T09:00", "America/New_York", now) == ts(
        "2026-12-01T09:00", "America/New_York"
    )
    # An explicit offset wins over the zone.
    assert timeutil.parse_when("2026-12-01T09:00Z", PARIS, now) == ts("2026-12-01T09:00", "UTC")
    # A bare time is the next time the clock shows it: later today, else tomorrow.
    assert timeutil.parse_when("18:30", PARIS, now) == ts("2026-06-01T18:30")
    assert timeutil.parse_when("09:00", PARIS, now) == ts("2026-06-02T09:00")


def test_at_refuses_the_past_and_times_skipped_by_dst() -> None:
    now = ts("2026-03-01T12:00")
    with pytest.raises(InvalidInput, match="in the past"):
        timeutil.parse_when("2026-02-01T09:00", PARIS, now)
    # 2026-03-29 02:30 does not exist in Paris (clocks jump from 02:00 to 03:00).
    with pytest.raises(InvalidInput, match="does not exist"):
        timeutil.parse_when("2026-03-29T02:30", PARIS, now)
    # 2026-10-25 02:30 happens twice in Paris: the earlier one (CEST, +02:00) is used.
    when = timeutil.parse_when("2026-10-25T02:30", PARIS, now)
    assert datetime.fromtimestamp(when, ZoneInfo(PARIS)).utcoffset().total_seconds() == 7200
    with pytest.raises(InvalidInput, match="not a date-time"):
        timeutil.parse_when("next tuesday", PARIS, now)
    with pytest.raises(InvalidInput, match="unknown time zone"):
        timeutil.parse_when("09:00", "Mars/Olympus", now)


def test_cron_is_evaluated_in_the_reminders_zone() -> None:
    now = ts("2026-06-01T12:00")
    timing = reminders.check_timing({"cron": "0  9 * * 1-5"}, "Asia/Tokyo", now)
    assert (timing.kind, timing.expr, timing.tz) == ("cron", "0 9 * * 1-5", "Asia/Tokyo")
    nxt = cron.next_after_unix(timing.expr, now, ZoneInfo("Asia/Tokyo"))
    assert datetime.fromtimestamp(nxt, ZoneInfo("Asia/Tokyo")).hour == 9
    with pytest.raises(InvalidInput, match="out of range"):
        reminders.check_timing({"cron": "61 * * * *"}, PARIS, now)
    with pytest.raises(InvalidInput, match="use 'every'"):
        reminders.check_timing({"cron": "@every 1h"}, PARIS, now)
    with pytest.raises(InvalidInput, match="exactly one of at, in, cron, every"):
        reminders.check_timing({"cron": "* * * * *", "every": "1h"}, PARIS, now)
    with pytest.raises(InvalidInput, match=r"\(got none\)"):
        reminders.check_timing({}, PARIS, now)


@pytest.mark.parametrize(
    ("value", "level"),
    [(1, 1), (5, 5), ("3", 3), ("min", 1), ("LOW", 2), ("default", 3), ("high", 4),
     ("max", 5), ("urgent", 5), (None, 3)],
)
def test_priorities(value: object, level: int) -> None:
    assert reminders.check_priority(value) == level


@pytest.mark.parametrize("value", [0, 6, "9", "loud", True, 2.5])
def test_bad_priorities(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be 1-5 or one of min, low, default, high, max"):
        reminders.check_priority(value)


def test_topics_follow_ntfys_rule() -> None:
    assert reminders.check_topic("my_Topic-1") == "my_Topic-1"
    assert reminders.check_topic(None, "fallback") == "fallback"
    assert reminders.check_topic("x" * 64) == "x" * 64
    for bad in ("x" * 65, "with space", "émoji", "a/b"):
        with pytest.raises(InvalidInput, match="not a valid ntfy topic"):
            reminders.check_topic(bad)
    with pytest.raises(InvalidInput, match="BELFRY_TOPIC"):
        reminders.check_topic(None)


def test_message_limit_is_4096_bytes_not_characters() -> None:
    assert reminders.check_message("x" * 4096)
    with pytest.raises(InvalidInput, match="4097 bytes"):
        reminders.check_message("x" * 4097)
    with pytest.raises(InvalidInput, match="4098 bytes"):
        reminders.check_message("é" * 2049)  # 2 bytes each
    with pytest.raises(InvalidInput, match="empty"):
        reminders.check_message("  ")


def test_other_fields() -> None:
    assert reminders.check_tags("a, b,,c") == ["a", "b", "c"]
    assert reminders.check_tags(["warning", " skull "]) == ["warning", "skull"]
    with pytest.raises(InvalidInput, match="commas"):
        reminders.check_tags(["a,b"])
    assert reminders.check_title("  ") is None
    with pytest.raises(InvalidInput, match="single line"):
        reminders.check_title("two\nlines")
    assert reminders.check_click("https://example.com/x?y=1") == "https://example.com/x?y=1"
    with pytest.raises(InvalidInput, match="not a URL"):
        reminders.check_click("example dot com")


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    base = datetime(2026, 10, 21, 7, 27, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    assert parse_retry_after(date, now=base) == 30
    assert parse_retry_after(date, now=base + 60) == 0
    assert parse_retry_after("99999999") == 86400


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {"BELFRY_DB": "x.db", "BELFRY_TOPIC": "t", "BELFRY_MAX_ATTEMPTS": "2",
         "BELFRY_NTFY_FORMAT": "json", "BELFRY_TZ": "Asia/Tokyo"}
    )
    assert (settings.db, settings.topic, settings.max_attempts) == ("x.db", "t", 2)
    assert (settings.ntfy_format, settings.default_tz) == ("json", "Asia/Tokyo")
    with pytest.raises(InvalidInput, match="BELFRY_PORT"):
        Settings.from_env({"BELFRY_PORT": "eighty"})
    with pytest.raises(InvalidInput, match="headers' or 'json"):
        Settings.from_env({"BELFRY_NTFY_FORMAT": "xml"})
    with pytest.raises(InvalidInput, match="not a valid ntfy topic"):
        Settings.from_env({"BELFRY_TOPIC": "no spaces"})
