"""Geometry of the throughput chart: jobs done and failed per minute, as SVG shapes.

The dashboard draws the chart on the server (an inline ``<svg>`` in the page, no
JavaScript); this module turns a per-minute series into bars and axis labels, and the
template ``_macros.html`` writes them out (autoescaped, like everything else).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

WIDTH = 800
HEIGHT = 150
LEFT = 40  # room for the y-axis labels
BOTTOM = 18  # room for the time labels
TOP = 8
BAR_GAP = 1.0


@dataclass(frozen=True)
class Bar:
    """One minute: done (lower) and failed (stacked on top) as rectangles."""

    minute: int
    done: int
    dead: int
    x: float
    width: float
    done_y: float
    done_h: float
    dead_y: float
    dead_h: float

    @property
    def label(self) -> str:
        """Tooltip text: ``12:03 UTC: 5 done, 1 failed``."""
        at = datetime.fromtimestamp(self.minute, tz=UTC).strftime("%H:%M UTC")
        return f"{at}: {self.done} done, {self.dead} failed"


@dataclass(frozen=True)
class Chart:
    """Everything the SVG template needs."""

    width: int
    height: int
    left: int
    top: int
    base: int
    bars: list[Bar]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, str, str]]
    total_done: int
    total_dead: int
    minutes: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value`` (>= 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def throughput_chart(series: list[tuple[int, int, int]]) -> Chart:
    """Bars for ``series`` (``(minute_start, done, dead)`` oldest first, the last one being
    the current minute), scaled to the busiest minute."""
    n = max(1, len(series))
    base = HEIGHT - BOTTOM
    plot_h = base - TOP
    peak = nice_ceiling(max((done + dead for _, done, dead in series), default=0))
    slot = (WIDTH - LEFT) / n
    bars = []
    for i, (minute, done, dead) in enumerate(series):
        done_h = plot_h * done / peak
        dead_h = plot_h * dead / peak
        bars.append(
            Bar(
                minute=minute,
                done=done,
                dead=dead,
                x=round(LEFT + i * slot + BAR_GAP / 2, 2),
                width=round(max(slot - BAR_GAP, 0.5), 2),
                done_y=round(base - done_h, 2),
                done_h=round(done_h, 2),
                dead_y=round(base - done_h - dead_h, 2),
                dead_h=round(dead_h, 2),
            )
        )
    y_ticks = [(float(base), 0), (round(base - plot_h / 2, 2), peak // 2), (float(TOP), peak)]
    if peak == 1:
        y_ticks = [(float(base), 0), (float(TOP), 1)]
    x_ticks = []
    label_every = 15 if n >= 30 else 5
    for i in range(n - 1, -1, -label_every):
        ago = n - 1 - i
        if ago == 0:
            x_ticks.append((float(WIDTH), "now", "end"))
        else:
            x_ticks.append((round(LEFT + (i + 0.5) * slot, 2), f"-{ago} min", "middle"))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        base=base,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        total_done=sum(done for _, done, _ in series),
        total_dead=sum(dead for _, _, dead in series),
        minutes=n,
    )
