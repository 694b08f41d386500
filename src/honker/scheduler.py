"""Time-triggered jobs: cron and ``@every`` schedules with a leader-elected scheduler.

Schedules are rows in ``_honker_scheduler_tasks``, so every process (and every other honker
binding) sees, pauses, resumes and edits the same set. ``Scheduler.run()`` may run in many
processes; only the holder of the scheduler lock fires. Firing a boundary enqueues one job
into the schedule's queue and advances ``next_fire_at`` in the same transaction, with the
update conditional on the old value and on this process still holding the lock, so a
boundary is enqueued exactly once even if two processes briefly believe they lead. Missed
boundaries are caught up (at most 64 per schedule per tick); give a schedule ``expires`` so
stale catch-up jobs drop out of the claim window.

The leader sleeps until the soonest ``next_fire_at`` or until any commit (a new, changed or
paused schedule), never on a fixed tick; a wake costs one read.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _ops, cron
from ._errors import LeadershipLost, LockHeld
from ._json import dumps
from ._validate import check_str
from ._watcher import cancel_and_wait, wait_any

if TYPE_CHECKING:
    from ._database import Database, Transaction
    from ._watcher import Subscription
    from .locks import _Lock

MIN_SLEEP_S = 0.1
log = logging.getLogger("honker.scheduler")


class CronSchedule:
    """A validated schedule expression: 5-field cron, 6-field cron or ``@every <n><unit>``."""

    __slots__ = ("expr",)

    def __init__(self, expr: str) -> None:
        check_str(expr, "schedule expression")
        cron.next_after_unix(expr, 0)  # raises ValueError for malformed/unsatisfiable
        self.expr = expr

    def next_after_unix(self, from_unix: int) -> int:
        """First boundary strictly after ``from_unix`` (unix seconds)."""
        return cron.next_after_unix(self.expr, int(from_unix))

    def next_after(self, dt: datetime) -> datetime:
        """First boundary strictly after ``dt``, as a naive local-time datetime."""
        return datetime.fromtimestamp(self.next_after_unix(int(dt.timestamp())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronSchedule) and other.expr == self.expr

    def __hash__(self) -> int:
        return hash(self.expr)

    def __repr__(self) -> str:
        return f"crontab({self.expr!r})"


def crontab(expr: str) -> CronSchedule:
    """A cron schedule (5 fields, or 6 with leading seconds), in the local time zone."""
    if isinstance(expr, str) and expr.strip().startswith("@every"):
        raise ValueError("use every_s(...) for interval schedules")
    return CronSchedule(expr)


def every_s(seconds: float) -> CronSchedule:
    """An interval schedule firing every ``seconds`` seconds (stored as ``@every <n>s``)."""
    n = int(seconds)
    if n <= 0:
        raise ValueError("every_s(seconds) requires a positive integer")
    return CronSchedule(f"@every {n}s")


def _as_schedule(schedule: Any) -> CronSchedule:
    if isinstance(schedule, CronSchedule):
        return schedule
    if isinstance(schedule, str):
        return CronSchedule(schedule)
    raise TypeError(
        f"schedule must be a CronSchedule (crontab(...) or every_s(...)), "
        f"not {type(schedule).__name__}"
    )


_UNSET: Any = object()


class Scheduler:
    """Registers schedules and, in ``run()``, fires them while holding the leader lock."""

    LOCK_NAME = "honker-scheduler"
    LOCK_TTL = 60
    HEARTBEAT_INTERVAL = 30

    def __init__(
        self,
        db: Database,
        lock_name: str | None = None,
        *,
        lock_ttl: int = LOCK_TTL,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        owner: str | None = None,
    ) -> None:
        """``owner`` names this process in the lock row (default: a random token); it must
        be unique per running scheduler, since the same owner re-acquires its own lock."""
        self.db = db
        self._engine = db.engine
        self.owner = owner
        self.lock_name = lock_name if lock_name is not None else self.LOCK_NAME
        self.lock_ttl = lock_ttl
        self.heartbeat_interval = heartbeat_interval
        self._registered: set[str] = set()
        self._lost = False
        self.retention_interval_s: float | None = None  # None: honker.retention.INTERVAL_S

    # -- registration (each call is its own transaction) ---------------------------------
    def add(
        self,
        *,
        name: str,
        queue: str,
        schedule: CronSchedule | str,
        payload: Any = None,
        priority: int = 0,
        expires: float | None = None,
        max_attempts: int = 3,
        tz: str | None = None,
        tx: Transaction | None = None,
    ) -> None:
        """Create or replace schedule ``name``; its next fire is the next boundary after now.

        A paused schedule stays paused. ``expires`` is how long each fired job stays
        claimable (seconds); ``max_attempts`` is the budget each fired job gets. ``tz``
        (an IANA name such as ``"Europe/Paris"``) evaluates cron fields in that time zone
        instead of the process's local one; it is honoured by honker for Python only
        (other bindings ticking the same file use their local time zone). With ``tx=`` the
        schedule commits or rolls back with the caller's transaction.
        """
        if not isinstance(name, str) or not isinstance(queue, str):
            raise TypeError("name and queue must be str")
        expr = _as_schedule(schedule).expr
        if tz is not None:
            _ops.zone(tz)  # validate before writing anything
        self._engine.in_tx(
            tx,
            self._engine.ops.scheduler_register,
            name,
            queue,
            expr,
            dumps(payload),
            int(priority),
            None if expires is None else int(expires),
            int(max_attempts),
            tz,
            True,
        )
        self._registered.add(name)

    def remove(self, name: str, tx: Transaction | None = None) -> bool:
        """Delete schedule ``name``; ``True`` if it existed (``tx=`` joins a transaction)."""
        self._registered.discard(name)
        return bool(self._engine.in_tx(tx, self._engine.ops.scheduler_unregister, name) > 0)

    def pause(self, name: str, tx: Transaction | None = None) -> bool:
        """Stop firing ``name`` (kept on disk); ``True`` if it was enabled."""
        return bool(self._engine.in_tx(tx, self._engine.ops.scheduler_set_enabled, name, False))

    def resume(self, name: str, tx: Transaction | None = None) -> bool:
        """Fire ``name`` again (missed boundaries are caught up); ``True`` if it was paused."""
        return bool(self._engine.in_tx(tx, self._engine.ops.scheduler_set_enabled, name, True))

    def list(self) -> list[dict[str, Any]]:
        """Every schedule ordered by name (``payload`` as raw JSON text, ``enabled`` bool;
        a ``tz`` key only on schedules that have their own time zone)."""
        return self._engine.read(self._engine.ops.scheduler_list, True)

    def get(self, name: str) -> dict[str, Any] | None:
        """One schedule as in :meth:`list`, or ``None``."""
        return next((s for s in self.list() if s["name"] == name), None)

    def update(
        self,
        name: str,
        *,
        schedule: CronSchedule | str | None = None,
        payload: Any = _UNSET,
        priority: int | None = None,
        expires: Any = _UNSET,
        max_attempts: Any = _UNSET,
        tz: Any = _UNSET,
        tx: Transaction | None = None,
    ) -> bool:
        """Change only the given fields, atomically; ``False`` if unknown or nothing given.

        A new ``schedule`` or ``tz`` recomputes the next fire from now. ``payload=None``
        stores JSON null; ``expires=None`` clears the expiry; ``max_attempts=None`` resets
        it to 3; ``tz=None`` goes back to the process's local time zone.
        """
        touch_tz = tz is not _UNSET
        zone_name = None if tz is _UNSET or tz is None else str(tz)
        if zone_name is not None:
            _ops.zone(zone_name)
        expr = None if schedule is None else _as_schedule(schedule).expr
        payload_text = None if payload is _UNSET else dumps(payload)
        touch_expires = expires is not _UNSET
        expires_s = None if expires is _UNSET or expires is None else int(expires)
        touch_max = max_attempts is not _UNSET
        budget = None if max_attempts is _UNSET or max_attempts is None else int(max_attempts)
        if (
            expr is None
            and payload_text is None
            and priority is None
            and not touch_expires
            and not touch_max
            and not touch_tz
        ):
            return False
        return bool(
            self._engine.in_tx(
                tx,
                self._engine.ops.scheduler_update,
                name,
                expr,
                payload_text,
                None if priority is None else int(priority),
                expires_s,
                touch_expires,
                budget,
                touch_max,
                zone_name,
                touch_tz,
            )
        )

    def tick(self, now: int | None = None) -> builtins.list[dict[str, Any]]:
        """Fire everything due at ``now`` (default: the current second) once, without the lock.

        For tests and manual operation; ``run()`` is the normal way to fire schedules.
        """
        at = int(time.time()) if now is None else int(now)
        return self._engine.write(self._engine.ops.scheduler_tick, at)

    # -- the leader loop -----------------------------------------------------------------
    async def run(
        self,
        stop_event: asyncio.Event | None = None,
        *,
        standby: bool = False,
        exit_when_idle: bool = True,
    ) -> None:
        """Fire schedules while holding the leader lock, until ``stop_event`` is set.

        Without ``standby`` a lock held elsewhere raises ``LockHeld`` at once; with it, this
        process waits as a hot standby and takes over when the leader releases the lock or
        its TTL lapses. With ``exit_when_idle`` (the default) the loop returns when no
        schedule is enabled; otherwise it keeps waiting for one to appear. Raises
        ``LeadershipLost`` if the lock was taken away while running.
        """
        if self.lock_ttl <= 0 or self.heartbeat_interval <= 0:
            raise ValueError("lock_ttl and heartbeat_interval must be positive")
        engine = self._engine
        ops = engine.ops
        if exit_when_idle and not self._registered and await engine.aread(ops.scheduler_count) == 0:
            raise RuntimeError(
                "Scheduler.run(): no registered tasks; add a schedule first "
                "(scheduler.add(...) or @queue.periodic_task)"
            )
        stop = stop_event if stop_event is not None else asyncio.Event()
        sub = engine.subscribe()
        try:
            lock = self.db.lock(self.lock_name, ttl=int(self.lock_ttl), owner=self.owner)
            if not await self._acquire(lock, sub, stop, standby):
                return
            self._lost = False
            lost = asyncio.Event()
            heartbeat = asyncio.create_task(self._heartbeat(lock, lost))
            retention = self._start_retention()
            try:
                await self._lead(lock, sub, stop, lost, exit_when_idle)
            finally:
                await cancel_and_wait([heartbeat, retention])
                if not self._lost:
                    with contextlib.suppress(RuntimeError):
                        await engine.arun(lock.release)
                    log.info("stepped down: released lock %r", self.lock_name)
            if self._lost:
                log.warning(
                    "lost leadership: lock %r is no longer held by %s",
                    self.lock_name,
                    lock.owner,
                )
                raise LeadershipLost(
                    f"lost leadership: lock {self.lock_name!r} is no longer held "
                    f"by owner {lock.owner!r}"
                )
        finally:
            sub.close()

    async def _acquire(
        self, lock: _Lock, sub: Subscription, stop: asyncio.Event, standby: bool
    ) -> bool:
        engine = self._engine
        announced = False
        while not stop.is_set():
            if await engine.arun(lock.acquire):
                log.info("became leader: holding lock %r as %s", self.lock_name, lock.owner)
                return True
            if not standby:
                raise LockHeld(f"lock {self.lock_name!r} is already held")
            if not announced:
                log.info("standing by: lock %r is held elsewhere", self.lock_name)
                announced = True
            expires_at = await engine.aread(engine.ops.lock_expires_at, self.lock_name)
            wait = float(self.lock_ttl) if expires_at is None else expires_at - time.time()
            await wait_any(sub, stop, None, max(MIN_SLEEP_S, min(wait, float(self.lock_ttl))))
        return False

    async def _lead(
        self,
        lock: _Lock,
        sub: Subscription,
        stop: asyncio.Event,
        lost: asyncio.Event,
        exit_when_idle: bool,
    ) -> None:
        engine = self._engine
        ops = engine.ops
        ttl = int(self.lock_ttl)
        while not stop.is_set() and not lost.is_set():
            now = int(time.time())
            soonest = await engine.aread(ops.scheduler_soonest)
            if 0 < soonest <= now:
                held, soonest = await engine.awrite(
                    ops.tick_as_leader, self.lock_name, lock.owner, ttl, now
                )
                if not held:
                    self._lost = True
                    return
            if soonest == 0:
                if exit_when_idle:
                    return
                delay = float(self.heartbeat_interval)
            else:
                delay = max(MIN_SLEEP_S, soonest - time.time())
            await wait_any(sub, stop, lost, delay)

    def _start_retention(self) -> asyncio.Task[None]:
        """The leader applies the database's retention policy (see honker.retention)."""
        from .retention import INTERVAL_S, run_as_leader

        interval = INTERVAL_S if self.retention_interval_s is None else self.retention_interval_s
        return asyncio.create_task(run_as_leader(self._engine, self.db.retention, interval))

    async def _heartbeat(self, lock: _Lock, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(float(self.heartbeat_interval))
            try:
                held = await self._engine.arun(lock.renew)
            except RuntimeError:
                held = False
            if not held:
                self._lost = True
                lost.set()
                return
