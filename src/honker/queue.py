"""Work queues: ``Queue`` and ``Job``.

A queue is a named group of rows in ``_honker_live``. ``enqueue`` inserts a pending row
(optionally inside the caller's transaction); a claim flips up to ``n`` due rows to
``processing`` with one indexed ``UPDATE … RETURNING`` and gives each a visibility window;
``ack`` deletes the row; ``retry`` puts it back with a delay or, once its attempt budget is
spent, moves it to ``_honker_dead``; ``fail`` dead-letters it at once. A worker that dies
holding a job simply lets the window lapse and another worker reclaims it: delivery is
at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast, overload

from . import _observe
from ._errors import DatabaseClosed
from ._json import LazyPayload, dumps
from ._validate import check_id, check_int64, check_opt_id, check_str, check_unique
from ._watcher import wait_any
from .results import get_result, save_result, sweep_results, wait_result

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Unpack

    from ._database import Database, Transaction
    from ._engine import Engine
    from ._watcher import Subscription
    from .scheduler import CronSchedule
    from .tasks import P, PeriodicTaskOptions, R, TaskDecorator, TaskOptions, _TaskWrapper

DEFAULT_VISIBILITY_TIMEOUT_S = 300
DEFAULT_MAX_ATTEMPTS = 3


def _check_name(name: Any, what: str = "queue name") -> str:
    return str(check_str(name, what))


def _check_worker(worker_id: Any) -> str:
    return str(check_str(worker_id, "worker_id"))


class Job(LazyPayload):
    """A claimed job. ``payload`` decodes lazily; ``ack/retry/fail/heartbeat`` act on it.

    Each method runs in its own transaction and returns an honest ``bool``: ``False`` means
    this worker's claim had lapsed (another worker may hold the job now) and nothing changed.
    """

    __slots__ = (
        "attempts",
        "claim_expires_at",
        "created_at",
        "id",
        "last_error",
        "max_attempts",
        "priority",
        "queue",
        "queue_name",
        "run_at",
        "state",
        "worker_id",
    )

    def __init__(self, queue: Queue, row: dict[str, Any]) -> None:
        self.queue = queue
        self.id: int = int(row["id"])
        self.queue_name: str = row["queue"]
        self._raw: str | None = row["payload"]
        self._decoded = False
        self._payload: Any = None
        self.worker_id: str = row["worker_id"]
        self.attempts: int = int(row["attempts"])
        self.claim_expires_at: int = int(row["claim_expires_at"])
        self.state: str = row.get("state") or "processing"
        self.priority: int = int(row.get("priority") or 0)
        self.run_at: int = int(row.get("run_at") or 0)
        max_attempts = row.get("max_attempts")
        self.max_attempts: int = queue.max_attempts if max_attempts is None else int(max_attempts)
        self.last_error: str | None = row.get("last_error")
        self.created_at: int = int(row.get("created_at") or 0)

    @classmethod
    def _from_claim(cls, queue: Queue, row: tuple[Any, ...]) -> Job:
        job = cls.__new__(cls)
        job.queue = queue
        (
            job.id,
            job.queue_name,
            job._raw,
            job.worker_id,
            job.attempts,
            job.claim_expires_at,
            job.priority,
            job.run_at,
            job.max_attempts,
            job.created_at,
        ) = row
        job._decoded = False
        job._payload = None
        job.state = "processing"
        job.last_error = None
        return job

    def ack(self, tx: Transaction | None = None) -> bool:
        """Delete the job: done. ``False`` if the claim lapsed. ``tx=`` joins a transaction."""
        return self.queue.ack(self.id, self.worker_id, tx=tx)

    def retry(self, delay_s: int = 60, error: str = "", tx: Transaction | None = None) -> bool:
        """Back to pending after ``delay_s`` seconds (dead-lettered when the budget is spent)."""
        return self.queue.retry(self.id, self.worker_id, delay_s, error, tx=tx)

    def fail(self, error: str = "", tx: Transaction | None = None) -> bool:
        """Move the job to ``_honker_dead`` with ``error``."""
        return self.queue.fail(self.id, self.worker_id, error, tx=tx)

    def heartbeat(self, extend_s: int | None = None) -> bool:
        """Extend the claim (default: the queue's visibility timeout) while it is still valid."""
        return self.queue.heartbeat(self.id, self.worker_id, extend_s)

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id}, queue={self.queue_name!r}, attempts={self.attempts}, "
            f"worker_id={self.worker_id!r})"
        )


class Queue:
    """A named work queue in the database file (obtain with ``db.queue(name)``)."""

    def __init__(
        self,
        db: Database,
        name: str,
        visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.db = db
        self.name: str = _check_name(name)
        self.visibility_timeout_s = int(visibility_timeout_s)
        self.max_attempts = int(max_attempts)
        self._engine: Engine = db.engine
        self._ops = db.engine.ops
        db.engine.ensure_queue_schema()

    # -- producing ---------------------------------------------------------------------
    def enqueue(
        self,
        payload: Any,
        tx: Transaction | None = None,
        run_at: float | None = None,
        delay: float | None = None,
        priority: int = 0,
        expires: float | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
        unique_for_s: float | None = None,
    ) -> int:
        """Add a job and return its id.

        ``delay`` (seconds from now) wins over ``run_at`` (absolute unix seconds); neither
        means claimable now. ``expires`` drops the job from claims that many seconds from
        now. With ``tx=`` the job commits or rolls back with the caller's transaction.

        ``unique_key``: while a job of this queue enqueued with the same key is pending or
        processing (and, with ``unique_for_s``, for that many seconds after it finished),
        nothing is written and that job's id is returned. Check and insert are one atomic
        step, in ``tx=`` too.
        """
        args: tuple[Any, ...] = (
            self.name,
            dumps(payload),
            None if run_at is None else int(run_at),
            None if delay is None else int(delay),
            int(priority),
            self.max_attempts if max_attempts is None else int(max_attempts),
            None if expires is None else int(expires),
        )
        unique = unique_key is not None or unique_for_s is not None
        if unique:
            args = (*args, *check_unique(unique_key, unique_for_s))
        if _observe.enqueue_hook is not None:  # tracing (honker.tracing) is on
            return _observe.enqueue_hook(self, args, tx)
        if unique:
            job_id, _ = self._engine.in_tx(tx, self._ops.enqueue_unique, *args)
            return int(job_id)
        return int(self._engine.in_tx(tx, self._ops.enqueue, *args))

    def enqueue_many(
        self,
        payloads: Iterable[Any],
        tx: Transaction | None = None,
        run_at: float | None = None,
        delay: float | None = None,
        priority: int = 0,
        expires: float | None = None,
        max_attempts: int | None = None,
    ) -> list[int]:
        """Add one job per payload, all with the same options, in one statement; their ids.

        (honker for Python.) The bulk form of :meth:`enqueue`, for loading many jobs at
        once: every payload is encoded first (a bad one raises and nothing is written), then
        all rows are inserted with one ``executemany`` in one transaction (or in ``tx``).
        """
        texts = [dumps(p) for p in payloads]
        args = (
            self.name,
            texts,
            None if run_at is None else int(run_at),
            None if delay is None else int(delay),
            int(priority),
            self.max_attempts if max_attempts is None else int(max_attempts),
            None if expires is None else int(expires),
        )
        return cast("list[int]", self._engine.in_tx(tx, self._ops.enqueue_batch, *args))

    # -- claiming ----------------------------------------------------------------------
    def claim_batch(self, worker_id: str, n: int) -> list[Job]:
        """Claim up to ``n`` ready jobs in priority order, in one transaction."""
        n = int(n)
        if n <= 0:
            return []
        rows = self._engine.write(
            self._ops.claim_batch,
            self.name,
            _check_worker(worker_id),
            n,
            self.visibility_timeout_s,
            quiet=True,
        )
        make = Job._from_claim
        return [make(self, row) for row in rows]

    async def aclaim_batch(self, worker_id: str, n: int) -> list[Job]:
        """:meth:`claim_batch` on the database's I/O threads (never blocks the event loop).

        If the awaiting task is cancelled while the claim runs, the claimed jobs are handed
        back at once rather than left to their visibility timeout.
        """
        n = int(n)
        if n <= 0:
            return []
        worker = _check_worker(worker_id)
        engine = self._engine
        fut = asyncio.ensure_future(
            engine.awrite(
                self._ops.claim_batch, self.name, worker, n, self.visibility_timeout_s, quiet=True
            )
        )
        try:
            rows = await asyncio.shield(fut)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                claimed = await fut
                if claimed:
                    ids = [int(r[0]) for r in claimed]
                    await engine.awrite(self._ops.release_claims, worker, ids)
            raise
        make = Job._from_claim
        return [make(self, row) for row in rows]

    def claim_one(self, worker_id: str) -> Job | None:
        """Claim the next ready job, or ``None``."""
        jobs = self.claim_batch(worker_id, 1)
        return jobs[0] if jobs else None

    def claim(self, worker_id: str, idle_poll_s: float | None = 5.0) -> ClaimIterator:
        """Async iterator yielding one claimed job at a time, forever.

        Wakes on any commit to the database and exactly when the next delayed job comes
        due or an expired claim becomes reclaimable; ``idle_poll_s`` is only a fallback.
        """
        return ClaimIterator(self, _check_worker(worker_id), idle_poll_s)

    def next_claim_at(self) -> int:
        """Unix time at which a claim could next succeed without new writes (0: none)."""
        return int(self._engine.read(self._ops.queue_next_claim_at, self.name))

    # -- outcomes ----------------------------------------------------------------------
    def ack(self, job_id: int, worker_id: str, tx: Transaction | None = None) -> bool:
        """Delete the job iff ``worker_id`` still holds a valid claim on it.

        With ``tx=`` the ack commits with the caller's writes (e.g. the job's side effects
        in the same database): exactly-once processing for work that stays in the file.
        """
        return bool(
            self._engine.in_tx(tx, self._ops.ack, check_id(job_id), _check_worker(worker_id))
        )

    def ack_batch(self, job_ids: Iterable[int], worker_id: str) -> int:
        """Ack many jobs in one transaction; returns how many were really deleted."""
        ids = [check_int64(i, f"job_ids[{n}]") for n, i in enumerate(job_ids)]
        if not ids:
            return 0
        return int(
            self._engine.write(self._ops.ack_batch, json.dumps(ids), _check_worker(worker_id))
        )

    def retry(
        self,
        job_id: int,
        worker_id: str,
        delay_s: int,
        error: str,
        tx: Transaction | None = None,
    ) -> bool:
        """Pending again after ``delay_s`` (or dead when the budget is spent); False if lapsed."""
        return bool(
            self._engine.in_tx(
                tx,
                self._ops.retry,
                check_id(job_id),
                _check_worker(worker_id),
                int(delay_s),
                str(error),
            )
        )

    def fail(self, job_id: int, worker_id: str, error: str, tx: Transaction | None = None) -> bool:
        """Dead-letter a held job with ``error``; False if the claim lapsed."""
        return bool(
            self._engine.in_tx(
                tx, self._ops.fail, check_id(job_id), _check_worker(worker_id), str(error)
            )
        )

    def heartbeat(self, job_id: int, worker_id: str, extend_s: int | None = None) -> bool:
        """Extend a still-valid claim to now + ``extend_s`` (default: visibility timeout)."""
        extend = self.visibility_timeout_s if extend_s is None else int(extend_s)
        return bool(
            self._engine.write(
                self._ops.heartbeat, check_id(job_id), _check_worker(worker_id), extend
            )
        )

    def release(self, job_id: int, worker_id: str) -> bool:
        """Give a held job back at once (pending, due now, attempt not counted).

        For shutdown paths: the job becomes claimable immediately instead of after the
        visibility timeout. ``False`` if the claim had already lapsed.
        """
        return bool(
            self._engine.write(self._ops.release_claim, check_id(job_id), _check_worker(worker_id))
        )

    def cancel(
        self,
        job_id: int,
        *,
        pending_only: bool = False,
        force: bool = False,
        tx: Transaction | None = None,
    ) -> bool:
        """Cancel a job: a pending one is deleted at once, a running one is asked to stop.

        For a job a worker is running, a cancel request is recorded; that worker notices it
        on its next wake: an ``async`` task receives ``asyncio.CancelledError``, a sync task
        sees ``honker.current_job().cancel_requested`` (or ``raise_if_cancelled()``). A job
        that ends so, or a pending job deleted here, is recorded as cancelled:
        ``TaskResult.get()`` raises ``honker.TaskCancelled``. ``pending_only=True`` leaves a
        claimed job alone (``False``) without a check-then-delete race; ``force=True``
        deletes a claimed job under its worker (whose outcome then finds no claim), as the
        SQL function ``honker_cancel`` does. Returns ``True`` when the job was cancelled or
        a request recorded; ``False`` when there was nothing to do (unknown, finished, dead,
        or a request already waits).
        """
        if pending_only and force:
            raise ValueError("cancel(): pending_only and force exclude each other")
        mode = "pending_only" if pending_only else "force" if force else "request"
        done = self._engine.in_tx(tx, self._ops.cancel_job, check_id(job_id), mode)
        return done is not None

    def job_attempts(self, job_id: int) -> list[dict[str, Any]]:
        """The attempt history of a job, oldest first (the last 20 attempts are kept).

        One dict per finished attempt: ``attempt``, ``worker_id``, ``started_at`` and
        ``ended_at`` (unix seconds, float), ``duration_s``, ``outcome`` ("done", "retried",
        "dead" or "cancelled") and ``error`` (``None`` on success). Rows stay after the job
        finished until the retention policy's ``history`` window prunes them.
        """
        return self._engine.read(self._ops.attempts_list, check_id(job_id))

    def progress(self, job_id: int) -> dict[str, Any] | None:
        """The last progress a task reported for the job (``fraction``, ``message``,
        ``updated_at``), or ``None``. See ``honker.current_job().set_progress``."""
        return cast(
            "dict[str, Any] | None", self._engine.read(self._ops.progress_get, check_id(job_id))
        )

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        """The job's live row as a dict (``payload`` is the raw JSON text), or ``None``.

        Besides the row's columns it has ``last_error`` (recorded on every retry) and
        ``progress`` (see :meth:`progress`).
        """
        return cast(
            "dict[str, Any] | None",
            self._engine.read(self._ops.get_job_extended, check_id(job_id)),
        )

    def sweep_expired(self) -> int:
        """Move this queue's expired pending jobs to ``_honker_dead``; returns the count."""
        return int(self._engine.write(self._ops.sweep_expired, self.name))

    # -- results -----------------------------------------------------------------------
    def save_result(
        self, job_id: int, value: Any, ttl: float | None = None, tx: Transaction | None = None
    ) -> None:
        """Store a job's result (JSON); ``ttl`` seconds, ``None`` = never expires."""
        save_result(self._engine, job_id, value, ttl, tx)

    def get_result(self, job_id: int) -> tuple[bool, Any]:
        """``(True, value)`` when a result is stored, else ``(False, None)``."""
        return get_result(self._engine, job_id)

    async def wait_result(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait (waking on commits) until the job's result is stored; returns the value."""
        return await wait_result(self._engine, job_id, timeout)

    def sweep_results(self) -> int:
        """Delete expired results (of every queue); returns the count."""
        return sweep_results(self._engine)

    # -- decorators --------------------------------------------------------------------
    @overload
    def task(
        self, name: Callable[P, Coroutine[Any, Any, R]], /
    ) -> _TaskWrapper[P, R, Coroutine[Any, Any, R]]: ...
    @overload
    def task(self, name: Callable[P, R], /) -> _TaskWrapper[P, R, R]: ...
    @overload
    def task(self, name: str | None = None, **options: Unpack[TaskOptions]) -> TaskDecorator: ...
    def task(self, name: Any = None, **options: Any) -> Any:
        """Decorator: calling the function enqueues it here and returns a ``TaskResult``.

        Options: ``retries`` (default: the queue's max_attempts), ``retry_delay_s`` (60),
        ``backoff`` (1.0: constant delay), ``timeout_s``, ``priority``, ``expires_s``,
        ``store_result`` (True), ``result_ttl_s`` (3600). Usable bare (``@queue.task``).
        The task keeps the function's signature for type checkers: calling it checks the
        arguments and returns ``TaskResult[R]`` (``R`` the return type, awaited for an
        ``async def``).
        """
        from .tasks import task_decorator

        return task_decorator(self, name, **options)

    def periodic_task(
        self, schedule: CronSchedule | str, **options: Unpack[PeriodicTaskOptions]
    ) -> TaskDecorator:
        """Decorator registering a task plus a schedule that enqueues it (no arguments).

        Typed like :meth:`task`. Options: ``name``, ``scheduler_name``, ``expires_s``,
        ``priority`` (0), ``store_result`` (False), ``result_ttl_s`` (3600)."""
        from .tasks import periodic_task_decorator

        return periodic_task_decorator(self, schedule, **options)

    # -- inspection and operator actions ------------------------------------------------
    def stats(self) -> dict[str, int | None]:
        """Counts for dashboards: ``pending`` (due), ``delayed``, ``expired``, ``processing``,
        ``dead``, ``oldest_pending_age_s``, ``done_last_minute``, ``dead_last_minute``,
        ``cancelled_last_minute`` and ``paused`` (a bool)."""
        return self._engine.read(self._ops.queue_stats, self.name)

    # -- pause and resume (honker for Python only) -----------------------------------------
    def pause(self) -> bool:
        """Stop every worker (any process) claiming from this queue; pending jobs stay.

        Takes effect at the workers' next wake (the pause is a commit, which wakes them);
        jobs already running finish normally. Returns False if it was already paused.
        Another binding's claims (e.g. the reference extension) ignore the pause.
        """
        return bool(self._engine.write(self._ops.queue_pause, self.name))

    def resume(self) -> bool:
        """Let workers claim from this queue again (and wake them); False if not paused."""
        return bool(self._engine.write(self._ops.queue_resume, self.name))

    def is_paused(self) -> bool:
        """Whether this queue is paused (by any process)."""
        return bool(self._engine.read(self._ops.queue_is_paused, self.name))

    def unique_holder(self, unique_key: str) -> int | None:
        """Id of the job holding ``unique_key`` on this queue (live, or finished within its
        ``unique_for_s`` window), or None."""
        key, _ = check_unique(unique_key, None)
        holder = self._engine.read(self._ops.unique_holder, self.name, key)
        return None if holder is None else int(holder)

    def list_jobs(
        self,
        state: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Live and dead jobs, newest first; ``state`` is one of pending, delayed,
        processing, dead (``None``: all); ``search`` matches payload text."""
        return self._engine.read(
            self._ops.list_jobs, self.name, state, search, max(0, int(limit)), max(0, int(offset))
        )

    def count_jobs(self, state: str | None = None, search: str | None = None) -> int:
        """Number of jobs :meth:`list_jobs` would page through."""
        return int(self._engine.read(self._ops.count_jobs, self.name, state, search))

    def find_job(self, job_id: int) -> dict[str, Any] | None:
        """A job of this queue by id, live or dead, with its last error and timestamps."""
        job = self._engine.read(self._ops.find_job, check_id(job_id))
        return job if job is not None and job["queue"] == self.name else None

    def retry_dead(self, job_id: int | None = None, tx: Transaction | None = None) -> int:
        """Put one dead job (or all of this queue's) back to pending with a fresh budget
        (``tx=`` joins a transaction)."""
        return int(self._engine.in_tx(tx, self._ops.dead_requeue, self.name, check_opt_id(job_id)))

    def discard_dead(self, job_id: int | None = None, tx: Transaction | None = None) -> int:
        """Delete one dead job (or all of this queue's dead jobs); ``tx=`` joins a transaction."""
        return int(self._engine.in_tx(tx, self._ops.dead_discard, self.name, check_opt_id(job_id)))

    def __repr__(self) -> str:
        return (
            f"Queue({self.name!r}, visibility_timeout_s={self.visibility_timeout_s}, "
            f"max_attempts={self.max_attempts})"
        )


async def wait_for_work(
    engine: Engine,
    sub: Subscription,
    queue: str,
    idle_poll_s: float | None,
    next_at: int | None = None,
    stop: asyncio.Event | None = None,
    kick: asyncio.Event | None = None,
) -> bool:
    """Wait until a commit, the queue's next deadline or ``idle_poll_s``, whichever is first.

    The deadline is the moment a delayed job comes due or an expired claim becomes
    reclaimable (read from the database unless the caller already knows it as
    ``next_at``; 0 means none). ``stop`` and ``kick`` end the wait early. Returns ``False``
    when the wait ended by timeout or deadline (claim regardless), ``True`` on a wake.
    Shared by ``Queue.claim()`` and the worker's producers.
    """
    if (stop is not None and stop.is_set()) or (kick is not None and kick.is_set()):
        return True
    if sub.pending:
        await sub.wait(0)
        return True
    deadline: int = (
        await engine.aread(engine.ops.queue_next_claim_at, queue) if next_at is None else next_at
    )
    timeout = idle_poll_s
    if deadline > 0:
        until = max(0.0, deadline - time.time())
        timeout = until if timeout is None else min(timeout, until)
    if stop is None and kick is None:
        return await sub.wait(timeout)
    started = time.monotonic()
    await wait_any(sub, stop or asyncio.Event(), kick, timeout)
    return timeout is None or time.monotonic() - started < timeout or bool(kick and kick.is_set())


class ClaimIterator:
    """Async iterator behind ``Queue.claim()``; subscribes to updates when created.

    Each step claims on the database's I/O threads, so the event loop never waits for the
    writer; a claim interrupted by cancellation hands its job back.
    """

    def __init__(self, queue: Queue, worker_id: str, idle_poll_s: float | None) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.idle_poll_s = idle_poll_s
        self._sub: Subscription = queue.db.engine.subscribe()
        self._finalizer = weakref.finalize(self, self._sub.close)

    def __aiter__(self) -> ClaimIterator:
        return self

    async def __anext__(self) -> Job:
        queue = self.queue
        engine = queue._engine
        try:
            while True:
                jobs = await queue.aclaim_batch(self.worker_id, 1)
                if jobs:
                    return jobs[0]
                await wait_for_work(engine, self._sub, queue.name, self.idle_poll_s)
        except asyncio.CancelledError:
            self.close()
            raise
        except DatabaseClosed:
            self.close()
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Release the update subscription."""
        self._finalizer()
