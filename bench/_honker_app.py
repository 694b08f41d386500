"""The honker app of the peer benchmarks: ``python -m honker worker _honker_app:db``.

The worker process imports it with ``BENCH_DB`` set; the bench process imports it without
and calls :func:`tasks` on its own database, so both sides register the same functions.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import _common  # noqa: F401  (first: puts this checkout's src/ ahead of any installed honker)
import honker

QUEUE = "bench"


def noop(i: int) -> None:
    """No-op sync task (runs in a worker thread); its ``None`` result is stored."""


async def anoop(i: int) -> None:
    """No-op async task (runs on the worker's event loop); its ``None`` result is stored."""


def stamp(i: int) -> float:
    """Returns the wall-clock time at which the handler started."""
    return time.time()


async def astamp(i: int) -> float:
    """Async :func:`stamp`."""
    return time.time()


async def nap(i: int) -> None:
    """Async task that keeps its slot busy for 2 ms without holding the event loop."""
    await asyncio.sleep(0.002)


FUNCTIONS = {"noop": noop, "anoop": anoop, "stamp": stamp, "astamp": astamp, "nap": nap}


def tasks(db: honker.Database, queue: str = QUEUE) -> dict[str, Any]:
    """Register every bench task on ``db``'s ``queue``; name -> callable task."""
    q = db.queue(queue)
    return {name: q.task(name=name)(fn) for name, fn in FUNCTIONS.items()}


db: honker.Database | None = None
if "BENCH_DB" in os.environ:
    db = honker.open(os.environ["BENCH_DB"])
    tasks(db)
