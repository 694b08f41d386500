"""Retention: how long dead jobs, results, notifications, stream events and job history stay.

A :class:`Retention` policy is given to ``honker.open(path, retention=...)`` (a mapping or a
``Retention``). It is applied by whichever process holds the scheduler's leader lock, or,
when no scheduler runs, by one worker (the holder of the ``honker-retention`` lock), about
once a minute; ``python -m honker prune DB`` applies it once. Rows are deleted in small
batches: the candidates are read on a reader connection and each batch of at most
``BATCH`` rows is deleted in its own short write transaction, so the writer is never held
for long.

Defaults follow the reference, which prunes nothing but expired results: ``dead``,
``notifications`` and ``stream_events`` are kept forever unless given. ``results`` (age
since the result was stored) also deletes results past their own TTL. ``history`` is this
library's own job metadata (attempt history, progress, last errors, cancel records) of
jobs that are gone from both the live and the dead table: kept one hour by default (as
long as a result's default TTL), so a busy queue's history of finished jobs stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ._errors import DatabaseClosed, WatcherDied

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("honker.retention")

__all__ = ["Retention", "aprune", "parse_duration", "prune"]

BATCH = 500
INTERVAL_S = 60.0
LOCK_NAME = "honker-retention"
HISTORY_DEFAULT_S = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
# retention key -> the _ops.RETENTION_TARGETS it drives
_TARGETS = {
    "dead": ("dead",),
    "results": ("results",),
    "notifications": ("notifications",),
    "stream_events": ("stream_events",),
    "history": (
        "history.attempts",
        "history.progress",
        "history.errors",
        "history.cancel",
    ),
}


def parse_duration(value: Any, key: str = "duration") -> float | None:
    """Seconds from ``"30d"``/``"12h"``/``"15m"``/``"45s"``/``"2w"`` or a number; ``None``
    stays ``None`` (keep forever). ``ValueError``/``TypeError`` naming ``key`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"retention {key!r}: expected a duration like '30d' or seconds, not bool")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"retention {key!r}: cannot read duration {value!r}; use a number of seconds "
                "or a string like '45s', '15m', '12h', '30d', '2w'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise TypeError(
            f"retention {key!r}: expected a duration like '30d' or seconds, "
            f"not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"retention {key!r}: duration must be a finite, non-negative number")
    return seconds


@dataclass(frozen=True)
class Retention:
    """How long each kind of row is kept, in seconds (``None``: forever).

    Build it with durations as seconds or strings: ``Retention(dead="30d",
    results="1h")``, or :meth:`of` a mapping. Keys: ``dead`` (dead-lettered jobs, by the
    time they died), ``results`` (stored results, by the time they were stored; expired
    results always go), ``notifications``, ``stream_events`` (by their creation time) and
    ``history`` (attempt history, progress and cancel records of jobs gone from both job
    tables; default one hour).
    """

    dead: float | None = None
    results: float | None = None
    notifications: float | None = None
    stream_events: float | None = None
    history: float | None = HISTORY_DEFAULT_S

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, parse_duration(getattr(self, f.name), f.name))

    @classmethod
    def of(cls, value: Retention | Mapping[str, Any] | None) -> Retention:
        """A policy from a ``Retention``, a mapping of the keys above, or ``None`` (defaults).

        An unknown key raises ``ValueError`` naming it.
        """
        if value is None:
            return cls()
        if isinstance(value, Retention):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"retention must be a dict or honker.Retention, not {type(value).__name__}"
            )
        known = {f.name for f in fields(cls)}
        for key in value:
            if key not in known:
                raise ValueError(f"unknown retention key {key!r}; expected some of {sorted(known)}")
        return cls(**dict(value))

    def targets(self) -> list[tuple[str, int | None]]:
        """``(ops target, older_than_s)`` pairs to prune (results always: expired ones)."""
        out: list[tuple[str, int | None]] = []
        for key, names in _TARGETS.items():
            age: float | None = getattr(self, key)
            if age is None and key != "results":
                continue
            for name in names:
                out.append((name, None if age is None else int(age)))
        # cancelled-job counters: buckets older than a day, like _honker_stats
        from ._ops import STATS_KEEP_S

        out.append(("history.stats_cancelled", STATS_KEEP_S))
        return out


def _prune_batch(engine: Engine, target: str, age: int | None, batch: int) -> tuple[int, bool]:
    """One batch: read up to ``batch`` candidate keys, delete them in one short write
    transaction; returns ``(deleted, more may remain)``."""
    ops = engine.ops
    keys = engine.read(ops.retention_candidates, target, age, batch)
    if not keys:
        return 0, False
    deleted = int(engine.write(ops.retention_delete, target, keys, age, quiet=True))
    return deleted, len(keys) >= batch


def _key(target: str) -> str:
    return target.split(".")[0]


def prune(engine: Engine, policy: Retention, batch: int = BATCH) -> dict[str, int]:
    """Apply ``policy`` once, in batches of ``batch`` rows; returns deleted rows per key."""
    counts = dict.fromkeys(_TARGETS, 0)
    for target, age in policy.targets():
        more = True
        while more:
            deleted, more = _prune_batch(engine, target, age, batch)
            counts[_key(target)] += deleted
    return counts


async def aprune(engine: Engine, policy: Retention, batch: int = BATCH) -> dict[str, int]:
    """:func:`prune` on the engine's I/O threads; yields to the event loop between batches."""
    counts = dict.fromkeys(_TARGETS, 0)
    for target, age in policy.targets():
        more = True
        while more:
            deleted, more = await engine.arun(_prune_batch, engine, target, age, batch)
            counts[_key(target)] += deleted
    if any(counts.values()):
        log.info("retention pruned %s", ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return counts


async def run_as_leader(engine: Engine, policy: Retention, interval_s: float = INTERVAL_S) -> None:
    """Apply ``policy`` every ``interval_s`` (the scheduler leader runs this) until cancelled."""
    with contextlib.suppress(DatabaseClosed, WatcherDied):
        while True:
            await _prune_quietly(engine, policy)
            await asyncio.sleep(interval_s)


async def run_for_worker(
    engine: Engine,
    policy: Retention,
    scheduler_lock: str,
    interval_s: float = INTERVAL_S,
) -> None:
    """A worker's retention loop: prune only while no scheduler leads and this process holds
    the ``honker-retention`` lock (one worker of many), every ``interval_s``."""
    ops = engine.ops
    owner = f"{socket.gethostname()}:{os.getpid()}:{id(engine):x}"
    ttl = int(max(3 * interval_s, 10))
    try:
        while True:
            try:
                led = await engine.aread(ops.lock_expires_at, scheduler_lock)
                if led is None or led <= time.time():
                    held = await engine.awrite(ops.lock_renew, LOCK_NAME, owner, ttl, quiet=True)
                    if not held:
                        held = await engine.awrite(
                            ops.lock_acquire, LOCK_NAME, owner, ttl, quiet=True
                        )
                    if held:
                        await _prune_quietly(engine, policy)
            except (DatabaseClosed, WatcherDied):
                raise
            except RuntimeError as exc:  # transient (busy): the next round tries again
                log.warning("retention lock or pass failed: %s", exc)
            await asyncio.sleep(interval_s)
    except (DatabaseClosed, WatcherDied):
        return
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.awrite(ops.lock_release, LOCK_NAME, owner, quiet=True))


async def _prune_quietly(engine: Engine, policy: Retention) -> None:
    try:
        await aprune(engine, policy)
    except (DatabaseClosed, WatcherDied):
        raise
    except RuntimeError as exc:  # transient (busy): the next round tries again
        log.warning("retention pass failed: %s", exc)
