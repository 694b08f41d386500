"""Property tests: honker.cron agrees with a brute-force oracle.

The oracle walks forward over *instants* (second by second for 6-field
expressions, minute by minute for 5-field ones), looks at the local wall
clock with ``datetime.fromtimestamp`` and applies the DST rules directly:

* an instant in the second occurrence of a repeated hour (``fold == 1``)
  never fires (its wall time already mapped to the first occurrence);
* an instant that follows a forward jump of the wall clock fires if its own
  wall time matches *or* any skipped wall time in the jump matches.

The oracle only looks a bounded distance ahead; when it finds nothing, the
implementation must answer something later than that window (or raise).
"""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from honker.cron import next_after_unix, parse

ZONES = ["UTC", "America/New_York", "Europe/London"]

TRANSITIONS = {
    "America/New_York": [1741503600, 1762063200, 1772953200, 1793512800],
    "Europe/London": [1743296400, 1761440400, 1774746000, 1792890000],
}
ALL_TRANSITIONS = sorted(t for ts in TRANSITIONS.values() for t in ts)

ORDINARY_LO = calendar.timegm((1995, 1, 1, 0, 0, 0))
ORDINARY_HI = calendar.timegm((2035, 12, 31, 0, 0, 0))

WINDOW_5 = 3 * 86400  # oracle horizon for 5-field expressions (minute steps)
WINDOW_6 = 3 * 3600  # oracle horizon for 6-field expressions (second steps)

# (low, high) per field, 6-field order.
BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module", params=ZONES)
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module's tests once per time zone (TZ set via monkeypatch)."""
    name: str = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", name)
        time.tzset()
        yield name
    time.tzset()


def test_zone_fixture_applies(zone: str) -> None:
    assert os.environ["TZ"] == zone
    for t in TRANSITIONS.get(zone, []):
        before = datetime.fromtimestamp(t - 1)
        after = datetime.fromtimestamp(t)
        assert after - before != timedelta(seconds=1)  # a real transition


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    text: str
    sets: tuple[frozenset[int], ...]  # 6-field order; second = {0} for 5 fields
    six: bool


@st.composite
def item(draw: st.DrawFn, low: int, high: int) -> tuple[str, set[int]]:
    kind = draw(st.sampled_from(["star", "star_step", "value", "range", "range_step", "val_step"]))
    span = high - low + 1
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "star_step":
        k = draw(st.integers(1, span + 1))
        return f"*/{k}", set(range(low, high + 1, k))
    a = draw(st.integers(low, high))
    if kind == "value":
        return str(a), {a}
    if kind == "val_step":
        k = draw(st.integers(1, span))
        return f"{a}/{k}", {a}
    b = draw(st.integers(a, high))
    if kind == "range":
        return f"{a}-{b}", set(range(a, b + 1))
    k = draw(st.integers(1, span))
    return f"{a}-{b}/{k}", set(range(a, b + 1, k))


@st.composite
def cron_field(
    draw: st.DrawFn, low: int, high: int, star_bias: int, anchor: int | None
) -> tuple[str, set[int]]:
    """A field; ``*`` with probability ~star_bias/(star_bias+1); includes ``anchor`` if given."""
    if draw(st.integers(0, star_bias)) > 0:
        return "*", set(range(low, high + 1))
    items = draw(st.lists(item(low, high), min_size=1, max_size=3))
    if anchor is not None:
        items.insert(draw(st.integers(0, len(items))), (str(anchor), {anchor}))
    values: set[int] = set()
    for _, s in items:
        values |= s
    return ",".join(text for text, _ in items), values


@st.composite
def cron_case(draw: st.DrawFn, six: bool, anchor: datetime | None = None) -> Case:
    # More freedom in the fast-changing fields, mostly '*' in the slow ones so
    # that a match usually exists within the oracle's window.
    biases = [0, 0, 1, 3, 4, 3] if six else [0, 0, 1, 2, 4, 2]
    anchors: list[int | None] = [None] * 6
    if anchor is not None:
        anchors = [
            anchor.second,
            anchor.minute,
            anchor.hour,
            anchor.day,
            anchor.month,
            anchor.isoweekday() % 7,
        ]
    fields = [
        draw(cron_field(low, high, bias, a))
        for (low, high), bias, a in zip(BOUNDS, biases, anchors, strict=True)
    ]
    if not six:
        fields[0] = ("0", {0})
    texts = [text for text, _ in fields]
    if not six:
        texts = texts[1:]
    sep = draw(st.sampled_from([" ", "  ", "\t"]))
    text = sep.join(texts)
    return Case(text, tuple(frozenset(s) for _, s in fields), six)


def near_transitions(transitions: list[int]) -> st.SearchStrategy[int]:
    base = st.sampled_from(transitions)
    seconds = st.tuples(base, st.integers(-4 * 3600, 4 * 3600)).map(sum)
    aligned = st.tuples(base, st.integers(-240, 240), st.sampled_from([-1, 0, 0, 1])).map(
        lambda t: t[0] + 60 * t[1] + t[2]
    )
    return st.one_of(seconds, aligned)


def instants(zone: str) -> st.SearchStrategy[int]:
    ordinary = st.integers(ORDINARY_LO, ORDINARY_HI)
    return st.one_of(
        near_transitions(TRANSITIONS.get(zone, ALL_TRANSITIONS)),
        near_transitions(ALL_TRANSITIONS),
        ordinary,
        ordinary.map(lambda t: t - t % 60),
    )


# --------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------


def wall_matches(case: Case, w: datetime) -> bool:
    sec, minute, hour, dom, month, dow = case.sets
    return (
        w.second in sec
        and w.minute in minute
        and w.hour in hour
        and w.day in dom
        and w.month in month
        and w.isoweekday() % 7 in dow
    )


def oracle(case: Case, from_unix: int, window: int) -> int | None:
    """First firing instant in ``(from_unix, from_unix + window]``, or None."""
    step = 1 if case.six else 60
    t = from_unix + 1 if case.six else (from_unix // 60 + 1) * 60
    delta = timedelta(seconds=step)
    prev = datetime.fromtimestamp(t - step)
    end = from_unix + window
    while t <= end:
        w = datetime.fromtimestamp(t)
        if not w.fold:
            if wall_matches(case, w):
                return t
            # Wall times skipped by a forward jump resolve to this instant.
            g = prev + delta
            while g < w:
                if wall_matches(case, g):
                    return t
                g += delta
        prev = w
        t += step
    return None


def implementation(text: str, from_unix: int) -> int | None:
    try:
        return next_after_unix(text, from_unix)
    except ValueError:
        return None


def check_against_oracle(case: Case, from_unix: int) -> None:
    window = WINDOW_6 if case.six else WINDOW_5
    expected = oracle(case, from_unix, window)
    got = implementation(case.text, from_unix)
    event("oracle found a match" if expected is not None else "no match within window")
    if datetime.fromtimestamp(from_unix).fold:
        event("from_unix in a repeated hour")
    if expected is not None and not wall_matches(case, datetime.fromtimestamp(expected)):
        event("fired at a spring-forward transition")
    if expected is not None:
        assert got == expected, (case.text, from_unix, got, expected)
    else:
        assert got is None or got > from_unix + window, (case.text, from_unix, got)


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), six=st.booleans())
def test_parse_matches_generated_sets(zone: str, data: st.DataObject, six: bool) -> None:
    case = data.draw(cron_case(six))
    parsed = parse(case.text)
    masks = [
        parsed.seconds,
        parsed.minutes,
        parsed.hours,
        parsed.days,
        parsed.months,
        parsed.weekdays,
    ]
    for mask, expected in zip(masks, case.sets, strict=True):
        assert {i for i in range(mask.bit_length()) if mask >> i & 1} == expected


@SETTINGS
@given(data=st.data())
def test_five_field_matches_oracle(zone: str, data: st.DataObject) -> None:
    from_unix = data.draw(instants(zone), label="from_unix")
    case = data.draw(cron_case(six=False), label="case")
    check_against_oracle(case, from_unix)


@SETTINGS
@given(data=st.data())
def test_six_field_matches_oracle(zone: str, data: st.DataObject) -> None:
    from_unix = data.draw(instants(zone), label="from_unix")
    case = data.draw(cron_case(six=True), label="case")
    check_against_oracle(case, from_unix)


@SETTINGS
@given(data=st.data(), six=st.booleans())
def test_anchored_matches_oracle(zone: str, data: st.DataObject, six: bool) -> None:
    """Expressions built to contain a wall time shortly after from_unix."""
    from_unix = data.draw(instants(zone), label="from_unix")
    window = WINDOW_6 if six else WINDOW_5
    offset = data.draw(st.integers(1, window), label="offset")
    anchor = datetime.fromtimestamp(from_unix + offset)
    case = data.draw(cron_case(six=six, anchor=anchor), label="case")
    expected = oracle(case, from_unix, window)
    if anchor.fold == 0 and (six or anchor.second == 0):
        assert expected is not None  # the anchor itself fires (or an earlier time)
    check_against_oracle(case, from_unix)


@settings(SETTINGS, max_examples=150)
@given(data=st.data(), six=st.booleans(), kind=st.sampled_from(["gap", "fold"]))
def test_dst_anchored_matches_oracle(zone: str, data: st.DataObject, six: bool, kind: str) -> None:
    """Expressions containing a skipped or repeated wall time, near that transition."""
    transitions = [
        t
        for t in TRANSITIONS.get(zone, [])
        if (datetime.fromtimestamp(t) > datetime.fromtimestamp(t - 1)) == (kind == "gap")
    ]
    if not transitions:  # UTC: no transitions, nothing special to test
        return
    t = data.draw(st.sampled_from(transitions), label="transition")
    before, after = datetime.fromtimestamp(t - 1), datetime.fromtimestamp(t)
    if kind == "gap":  # wall times in (before, after) do not exist
        width = int((after - before).total_seconds()) - 1
    else:  # wall times in [after, before] occur twice
        width = int((before - after).total_seconds()) + 1
    start = before if kind == "gap" else after - timedelta(seconds=1)
    anchor = start + timedelta(seconds=data.draw(st.integers(1, width), label="offset"))
    if not six:
        anchor = anchor.replace(second=0)
    from_unix = t + data.draw(st.integers(-3 * 3600, 2 * 3600), label="from_delta")
    case = data.draw(cron_case(six=six, anchor=anchor), label="case")
    check_against_oracle(case, from_unix)


@SETTINGS
@given(data=st.data(), six=st.booleans())
def test_result_is_stable_until_it_fires(zone: str, data: st.DataObject, six: bool) -> None:
    """For every f' in [f, r): next(f') == r, and next(r) > r."""
    from_unix = data.draw(instants(zone), label="from_unix")
    case = data.draw(cron_case(six), label="case")
    r = implementation(case.text, from_unix)
    if r is None:
        return
    assert r > from_unix
    between = data.draw(st.integers(from_unix, r - 1), label="between")
    assert next_after_unix(case.text, between) == r
    assert next_after_unix(case.text, r - 1) == r
    assert next_after_unix(case.text, r) > r


@SETTINGS
@given(
    from_unix=st.integers(-(2**40), 2**40),
    count=st.integers(1, 10_000),
    unit=st.sampled_from(["s", "m", "h", "d"]),
)
def test_every_is_plain_addition(zone: str, from_unix: int, count: int, unit: str) -> None:
    seconds = count * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert next_after_unix(f"@every {count}{unit}", from_unix) == from_unix + seconds
