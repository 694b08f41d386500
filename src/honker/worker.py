"""Running task handlers: one producer per queue, execution slots and group-committed outcomes.

``WorkerPool`` runs registered tasks. For each queue it runs one *producer*: it holds one
update subscription, waits for a commit (any process) or the queue's next deadline, and
claims up to its free slots with one ``claim_batch``. Each claimed job runs in an execution
slot: async tasks on the event loop, sync tasks in a thread pool sized to the concurrency,
so a blocking task never stalls its peers or the loop.

Outcomes are *group-committed*: a finished job's result, ack, retry or dead-letter move is
buffered and written with the other jobs that finished around it, in one transaction, at
most ~2 ms later (or at once when the producer claims again: the flush and the next claim
share a transaction). A worker that crashes before a flush leaves those jobs claimed; their
visibility window lapses and they run again: delivery stays at-least-once. An outcome whose
claim had lapsed (another worker reclaimed the job) writes nothing, not even its result.

Every database call of the pool runs on the engine's I/O threads, never on the event loop.
Stopping is graceful: the producers stop claiming, running jobs get a grace period, and
whatever is still running after it is cancelled and its claim handed back at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import queue as _queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import DatabaseClosed, JobCancelled, Retryable, Snooze, WatcherDied
from ._jobcontext import JobContext, _current, set_current
from ._json import dumps
from ._retry import backoff_delay as backoff_delay  # public: honker.worker.backoff_delay
from ._watcher import cancel_and_wait
from .queue import wait_for_work
from .tasks import ENVELOPE_KEY, TaskRegistry, TaskSpec

if TYPE_CHECKING:
    from ._database import Database
    from ._engine import Engine
    from ._observe import WorkerObserver
    from ._watcher import Subscription
    from .queue import Job, Queue

log = logging.getLogger("honker.worker")

RAW_PAYLOAD_ERROR = "raw (non-decorated) payload on a decorated-task queue"
SHUTDOWN_ERROR = "worker shutting down"
CANCELLED_ERROR = "cancelled"
FLUSH_INTERVAL_S = 0.002
FLUSH_MAX = 512
PROGRESS_INTERVAL_S = 1.0  # at most one progress write per job per second
CANCEL_CHECK_MIN_S = 0.05  # under a storm of wakes, at most one cancel-request read per 50 ms

# (kind, job id, arg, error): see honker._ops.apply_outcomes.
Outcome = tuple[str, int, Any, Any]


def _compute_delay(retry_delay: float, backoff: float, attempts: int) -> int:
    """``int(retry_delay * backoff ** (attempts - 1))`` (attempts counted from 1)."""
    return backoff_delay(retry_delay, backoff, attempts)


def _retry_or_dead(job: Job, retries: int | None, delay_s: int, error: str) -> Outcome:
    """Dead-letter when the task's own budget is spent, else retry after ``delay_s``."""
    if retries is not None and job.attempts >= retries:
        return ("dead", job.id, None, error)
    return ("retry", job.id, int(delay_s), error)


def _retry_or_fail(job: Job, retries: int | None, delay_s: int, error: str) -> bool:
    """Record at once: dead-letter when the task's budget is spent, else retry."""
    kind, _, delay, message = _retry_or_dead(job, retries, delay_s, error)
    return job.fail(message) if kind == "dead" else job.retry(delay, message)


def _done(job: Job, result: Any, save_result: bool, result_ttl: float | None) -> Outcome:
    if not save_result:
        return ("done", job.id, None, 0)
    try:
        text = dumps(result, f"result of job {job.id}")
    except (TypeError, ValueError) as exc:
        log.warning("not storing the result of job %s: %s", job.id, exc)
        return ("done", job.id, None, 0)
    return ("done", job.id, text, 0 if result_ttl is None else int(result_ttl))


async def _run_handler(
    job: Job,
    handler: Callable[[Any], Any],
    *,
    timeout: float | None,
    retries: int | None,
    retry_delay: float,
    backoff: float,
    save_result: bool,
    result_ttl: float | None,
) -> Outcome:
    """Run ``handler(job.payload)`` and return the outcome to record (nothing is written)."""
    try:
        if inspect.iscoroutinefunction(handler):
            coro = handler(job.payload)
            result = await (coro if timeout is None else asyncio.wait_for(coro, timeout))
        else:
            result = handler(job.payload)
            if inspect.isawaitable(result):
                result = await (result if timeout is None else asyncio.wait_for(result, timeout))
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        error = f"timeout after {timeout}s" if timeout is not None else "handler timeout"
        return _retry_or_dead(
            job, retries, _compute_delay(retry_delay, backoff, job.attempts), error
        )
    except Snooze as exc:
        return ("snooze", job.id, exc.delay_s, None)
    except Retryable as exc:
        return _retry_or_dead(job, retries, exc.delay_s, str(exc))
    except JobCancelled:
        return ("cancelled", job.id, None, CANCELLED_ERROR)
    except Exception as exc:
        error = f"{exc}\n{traceback.format_exc()}"
        return _retry_or_dead(
            job, retries, _compute_delay(retry_delay, backoff, job.attempts), error
        )
    return _done(job, result, save_result, result_ttl)


async def run_task(
    job: Job,
    handler: Callable[[Any], Any],
    *,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float = 60.0,
    backoff: float = 1.0,
    save_result: bool = False,
    result_ttl: float = 3600.0,
) -> None:
    """Run ``handler(job.payload)`` and record the outcome on the job at once.

    Success: the result is stored (when ``save_result``) and the job acked, in one
    transaction. ``Snooze(seconds)`` puts it back after ``seconds`` without using up an
    attempt. ``Retryable`` retries after its ``delay_s``; a timeout or any other
    exception retries after ``retry_delay * backoff**(attempts-1)``, or dead-letters once
    ``retries`` attempts were made (or the row's own budget is spent). Cancellation
    propagates untouched (the visibility timeout, or the pool, hands the job back).
    """
    outcome = await _run_handler(
        job,
        handler,
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        backoff=backoff,
        save_result=save_result,
        result_ttl=result_ttl,
    )
    engine = job.queue.db.engine
    await engine.awrite(engine.ops.apply_outcomes, job.worker_id, [outcome])


class Heartbeat:
    """Extends a running job's claim every third of its visibility window.

    Start it when the work starts (inside a running event loop) and ``cancel()`` it when
    the work ends, or use it as ``with Heartbeat(job): await work()``. Stops by itself once
    the claim is lost (e.g. the job was cancelled). The write runs on the database's I/O
    threads, never on the event loop.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.interval = max(0.5, job.queue.visibility_timeout_s / 3)
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self.interval, self._beat)

    def _beat(self) -> None:
        self._task = self._loop.create_task(self._beat_async())

    async def _beat_async(self) -> None:
        try:
            held = await self.job.queue.db.engine.arun(self.job.heartbeat)
        except RuntimeError:
            held = True  # transient (e.g. database busy): try again next time
        if held and self._handle is not None:
            self._handle = self._loop.call_later(self.interval, self._beat)

    def cancel(self) -> None:
        """Stop extending the claim."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def _task_name(job: Job) -> str | None:
    """The task a job's envelope names (``None`` for a raw or undecodable payload)."""
    try:
        payload = job.payload
    except ValueError:
        return None
    envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
    name = envelope.get("task") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def _first_line(error: Any) -> str:
    text = str(error or "")
    return text.splitlines()[0] if text else ""


class _Finished:
    """A job whose outcome waits for the next flush, with what observers need to know."""

    __slots__ = ("duration_s", "ended_at", "job", "outcome", "task_name")

    def __init__(self, job: Job, outcome: Outcome, task_name: str | None, duration_s: float):
        self.job = job
        self.outcome = outcome
        self.task_name = task_name
        self.duration_s = duration_s
        self.ended_at = time.time()

    def cancelled_retry(self, ctx: JobContext | None) -> None:
        """A failure after a cancel request is recorded as cancelled (apply_outcomes does
        the same on disk); say so to the log and the observers."""
        if ctx is not None and ctx.cancel_requested and self.outcome[0] == "retry":
            self.outcome = ("cancelled", self.job.id, None, self.outcome[3])

    def attempt_row(self) -> tuple[Any, ...] | None:
        """This attempt for ``_honker_job_attempts`` (None for a job handed back)."""
        kind, job_id, _, error = self.outcome
        if kind == "release":
            return None
        job = self.job
        return (
            job_id,
            job.attempts,
            job.worker_id,
            self.ended_at - self.duration_s,
            self.ended_at,
            self.duration_s,
            None if kind == "done" else str(error),
        )


class _QueueRunner:
    """One queue of a pool: its producer, its slots, its outcome buffer and heartbeats."""

    def __init__(self, pool: WorkerPool, queue: Queue) -> None:
        self.pool = pool
        self.queue = queue
        self.engine: Engine = queue.db.engine
        self.worker_id = f"honker-worker-{os.getpid()}-{queue.name}"
        self.slots = pool.concurrency
        self.capacity = pool.concurrency + pool.prefetch
        self.active: dict[int, asyncio.Task[None]] = {}
        self.ready: collections.deque[Job] = collections.deque()
        self.finished: list[_Finished] = []
        self.kick = asyncio.Event()
        self.full = True  # the last claim filled every free slot: more may be waiting
        self._flush_timer: asyncio.TimerHandle | None = None
        # current_job(): per running job its context; cancel requests being honoured;
        # the latest unwritten progress per job (filled from task threads, hence the lock)
        self.contexts: dict[int, JobContext] = {}
        self.cancelling: set[int] = set()
        self._progress: dict[int, tuple[float, str | None]] = {}
        self._progress_lock = threading.Lock()
        self._cancel_timer: asyncio.TimerHandle | None = None
        self._cancel_task: asyncio.Task[None] | None = None
        self._cancel_again = False
        self._cancel_next_at = 0.0

    # -- the producer ------------------------------------------------------------------
    async def run(self) -> None:
        sub = self.engine.subscribe()
        beats = asyncio.create_task(self._heartbeats())
        progress = asyncio.create_task(self._progress_writer())
        try:
            await self._produce(sub)
            await self._drain()
        finally:
            if self._cancel_timer is not None:
                self._cancel_timer.cancel()
            checking = [self._cancel_task] if self._cancel_task is not None else []
            await cancel_and_wait([beats, progress, *checking])
            with contextlib.suppress(DatabaseClosed, WatcherDied, RuntimeError):
                await self._write_progress()
            sub.close()

    async def _produce(self, sub: Subscription) -> None:
        stopping = self.pool._stopping
        token: Any = None
        force = True
        next_at = 0
        while not stopping.is_set():
            free = self.capacity - len(self.active) - len(self.ready)
            if free > 0 or self.finished:
                token, rows, next_at_now = await self._cycle(token, force, max(0, free))
                if rows is not None:
                    for row in rows:
                        self._take(row)
                    self.full = free > 0 and len(rows) == free
                    next_at = 0 if self.full else next_at_now
                    if rows:
                        # Let the new slots start (a quick async task may finish right
                        # away) before deciding whether to wait.
                        await asyncio.sleep(0)
                force = False
                if self.full and len(self.active) + len(self.ready) < self.capacity:
                    force = True
                    continue
            self.kick.clear()
            if self.finished and self._flush_timer is None:
                self.kick.set()
            woke = await wait_for_work(
                self.engine,
                sub,
                self.queue.name,
                self.pool.idle_poll_s,
                next_at,
                stopping,
                self.kick,
            )
            if woke and self.active:
                self._wake_cancel_check()
            if not woke or (next_at > 0 and time.time() >= next_at):
                force = True
            if self.full:
                force = True

    async def _cycle(self, token: Any, force: bool, n: int) -> tuple[Any, list[Any] | None, int]:
        """Flush buffered outcomes and (when anything may have changed) claim up to ``n``."""
        finished, self.finished = self.finished, []
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        outcomes = [f.outcome for f in finished]
        call = functools.partial(
            _cycle_sync,
            self.engine,
            self.queue.name,
            self.worker_id,
            n,
            self.queue.visibility_timeout_s,
            outcomes,
            token,
            force,
            [f.attempt_row() for f in finished],
        )
        fut = asyncio.ensure_future(self.engine.arun(call))
        try:
            new_token, applied, rows, next_at = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The transaction finishes on its thread anyway: hand back what it claimed.
            with contextlib.suppress(Exception):
                _, _, rows, _ = await fut
                if rows:
                    ids = [int(r[0]) for r in rows]
                    await self.engine.awrite(self.engine.ops.release_claims, self.worker_id, ids)
            raise
        self.pool._report(self, finished, applied)
        return new_token, rows, next_at

    def _take(self, row: Any) -> None:
        """A claimed job: run it in a free slot, or keep it ready for the next one."""
        from .queue import Job

        job = Job._from_claim(self.queue, row)
        self.pool.running[job.id] = job
        if len(self.active) < self.slots:
            self._start(job)
        else:
            self.ready.append(job)

    def _start(self, job: Job) -> None:
        self.contexts[job.id] = JobContext(job, self, _task_name(job))
        self.active[job.id] = asyncio.create_task(self._run_slot(job), name=f"honker-job-{job.id}")

    async def _run_slot(self, job: Job) -> None:
        started = time.monotonic()
        task_name: str | None = None
        outcome: Outcome | None = None
        set_current(self.contexts.get(job.id))  # this slot task's own context
        try:
            task_name, outcome = await self.pool._execute(job)
        except asyncio.CancelledError:
            task_name = _task_name(job)
            if job.id in self.cancelling:  # cancelled on request: the job ends cancelled
                outcome = ("cancelled", job.id, None, CANCELLED_ERROR)
            else:
                outcome = ("release", job.id, None, None)
            raise
        except (WatcherDied, DatabaseClosed):
            raise
        except Exception as exc:  # a custom dispatch that raised: let the claim lapse
            log.error("job %s: dispatch raised %s: %s", job.id, type(exc).__name__, exc)
        finally:
            self.active.pop(job.id, None)
            self.pool.running.pop(job.id, None)
            ctx = self.contexts.pop(job.id, None)
            self.cancelling.discard(job.id)
            if self.ready and not self.pool._stopping.is_set():
                self._start(self.ready.popleft())
            if outcome is not None:
                item = _Finished(job, outcome, task_name, time.monotonic() - started)
                item.cancelled_retry(ctx)
                self._finish(item)
            elif self.full:
                self.kick.set()

    def _finish(self, finished: _Finished) -> None:
        self.finished.append(finished)
        if self.full or len(self.finished) >= FLUSH_MAX:
            self.kick.set()
        elif self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(FLUSH_INTERVAL_S, self._flush_due)

    def _flush_due(self) -> None:
        self._flush_timer = None
        self.kick.set()

    async def _drain(self) -> None:
        """After the producer stopped: grace for running jobs, cancel the rest, last flush."""
        pool = self.pool
        while self.ready:  # claimed but never started: hand back at once
            job = self.ready.popleft()
            pool.running.pop(job.id, None)
            self._finish(_Finished(job, ("release", job.id, None, None), _task_name(job), 0.0))
        pending = list(self.active.values())
        if pending and pool.grace_period_s > 0:
            _, still = await asyncio.wait(pending, timeout=pool.grace_period_s)
            pending = list(still)
        pool.abandoned += len(pending)
        await cancel_and_wait(pending)
        if self.finished:
            with contextlib.suppress(DatabaseClosed):
                await self._cycle(None, False, 0)

    # -- cancel requests and progress (current_job()) ---------------------------------
    def _wake_cancel_check(self) -> None:
        """After a wake: look for cancel requests soon, off the producer's path.

        The first wake after a quiet spell checks at once; a storm of wakes (a busy file)
        is coalesced to one read per ``CANCEL_CHECK_MIN_S``. A wake during a check runs
        another one after it, so a request committed meanwhile is not missed.
        """
        if self._cancel_task is not None:
            self._cancel_again = True
            return
        if self._cancel_timer is not None:
            return
        delay = max(0.0, self._cancel_next_at - time.monotonic())
        loop = asyncio.get_running_loop()
        self._cancel_timer = loop.call_later(delay, self._start_cancel_check)

    def _start_cancel_check(self) -> None:
        self._cancel_timer = None
        self._cancel_again = False
        self._cancel_task = asyncio.get_running_loop().create_task(self._run_cancel_check())

    async def _run_cancel_check(self) -> None:
        try:
            await self._check_cancels()
        finally:
            self._cancel_task = None
            self._cancel_next_at = time.monotonic() + CANCEL_CHECK_MIN_S
            if self._cancel_again and self.contexts:
                self._wake_cancel_check()

    async def _check_cancels(self) -> None:
        """One indexed read: which running jobs were asked to stop; tell each one.

        An async task's slot is cancelled (the task sees ``asyncio.CancelledError``); a sync
        task only gets its flag set (``current_job().cancel_requested``), since a thread
        cannot be interrupted.
        """
        ids = [i for i, ctx in self.contexts.items() if not ctx.cancel_requested]
        if not ids:
            return
        try:
            requested = await self.engine.aread(self.engine.ops.cancel_requests, ids)
        except (DatabaseClosed, WatcherDied):
            return
        except RuntimeError as exc:  # transient: the next wake asks again
            log.warning("reading cancel requests failed: %s", exc)
            return
        for job_id in requested:
            ctx = self.contexts.get(job_id)
            task = self.active.get(job_id)
            if ctx is None or task is None:
                continue
            ctx._request_cancel()
            log.info("job %s: cancel requested, stopping it", job_id)
            if ctx.is_async:
                self.cancelling.add(job_id)
                task.cancel()

    def offer_progress(self, job_id: int, fraction: float, message: str | None) -> None:
        """Keep a job's latest progress (from any thread); written by the progress loop."""
        with self._progress_lock:
            self._progress[job_id] = (fraction, message)

    async def _write_progress(self) -> None:
        with self._progress_lock:
            pending, self._progress = self._progress, {}
        if pending:
            rows = [(job_id, f, m) for job_id, (f, m) in pending.items()]
            await self.engine.awrite(self.engine.ops.progress_save_many, rows, quiet=True)

    async def _progress_writer(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            try:
                await self._write_progress()
            except (DatabaseClosed, WatcherDied):
                return
            except RuntimeError as exc:  # transient (busy): later values replace it
                log.warning("writing job progress failed: %s", exc)

    async def _heartbeats(self) -> None:
        interval = max(0.5, self.queue.visibility_timeout_s / 3)
        ops = self.engine.ops
        while True:
            await asyncio.sleep(interval)
            ids = [*self.active, *(job.id for job in self.ready)]
            if not ids:
                continue
            await self._check_cancels()  # also covers a job reclaimed after a crash
            try:
                await self.engine.awrite(
                    ops.heartbeat_many,
                    self.worker_id,
                    ids,
                    self.queue.visibility_timeout_s,
                    quiet=True,
                )
            except (DatabaseClosed, WatcherDied):
                return
            except RuntimeError as exc:  # transient (busy): the next beat tries again
                log.warning("heartbeat of %d job(s) failed: %s", len(ids), exc)


def _cycle_sync(
    engine: Engine,
    queue: str,
    worker_id: str,
    n: int,
    visibility_s: int,
    outcomes: list[Outcome],
    prev_token: Any,
    force: bool,
    history: list[Any] | None = None,
) -> tuple[Any, list[bool], list[Any] | None, int]:
    """On an I/O thread: skip the claim when nothing changed since the last one."""
    token = engine.change_token()
    if not force and token is not None and token == prev_token:
        n = 0
    if n <= 0 and not outcomes:
        return token, [], None, 0
    quiet = all(o[0] in ("done", "dead", "cancelled") for o in outcomes)
    applied, rows, next_at = engine.write(
        engine.ops.claim_cycle, queue, worker_id, n, visibility_s, outcomes, history, quiet=quiet
    )
    return token, applied, (rows if n > 0 else None), next_at


class _TaskThreads:
    """The threads that run sync tasks: ``submit(call)`` returns an awaitable future.

    Unlike an executor, a busy thread takes its next call without a round trip through
    the event loop, and results are handed back in batches: one loop wake-up for every
    call that finished since the last one. A call abandoned by a timeout keeps its thread
    until it returns; another thread is started so the pool never runs short.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._calls: _queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[[], Any]] | None] = (
            _queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._scheduled = False
        self._inflight = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        for _ in range(max(1, size)):
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(
            target=self._serve, name=f"honker-task-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``call()`` on a task thread; the future resolves on the event loop."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        with self._lock:
            self._inflight += 1
            short = self._inflight > len(self._threads)
        if short:
            self._spawn()
        self._calls.put((fut, call))
        return fut

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fut, call = item
            error: BaseException | None = None
            result: Any = None
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting task as is
                error = exc
            with self._lock:
                self._inflight -= 1
                self._done.append((fut, result, error))
                wake = not self._scheduled
                self._scheduled = True
            if wake:
                try:
                    self._loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

    def _deliver(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._scheduled = False
        for fut, result, error in done:
            if fut.done():
                continue
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

    def close(self) -> None:
        """Let every idle thread exit (busy ones exit after their call)."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._calls.put(None)


class WorkerPool:
    """Runs registered tasks: one producer and ``concurrency`` execution slots per queue.

    ``prefetch`` (default: the concurrency) is how many jobs a producer may hold claimed
    ahead of a free slot, so a slot that frees starts its next job without waiting for a
    database round trip. Prefetched jobs are heartbeated with the running ones and handed
    back at once on shutdown; if the process dies they become claimable again after their
    visibility timeout, like its running jobs. ``prefetch=0`` claims only for free slots.
    """

    def __init__(
        self,
        db: Database,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        registry: TaskRegistry | None = None,
        grace_period_s: float = 30.0,
        idle_poll_s: float | None = 5.0,
        observers: Sequence[WorkerObserver] = (),
        prefetch: int | None = None,
    ) -> None:
        from .tasks import registry as global_registry

        self.db = db
        self.registry = registry or global_registry()
        self.queue_names = sorted(set(queues)) if queues is not None else None
        self.concurrency = max(1, int(concurrency or os.cpu_count() or 1))
        self.prefetch = self.concurrency if prefetch is None else max(0, int(prefetch))
        self.grace_period_s = grace_period_s
        self.idle_poll_s = idle_poll_s
        from . import _observe

        given = list(observers)
        self.observers: list[WorkerObserver] = given + [
            o for o in _observe.default_observers if o not in given
        ]
        self.running: dict[int, Job] = {}
        self.abandoned = 0
        self._stopping = asyncio.Event()
        self._threads: _TaskThreads | None = None
        self._custom_dispatch = type(self).dispatch is not WorkerPool.dispatch
        self.retention_interval_s: float | None = None  # None: honker.retention.INTERVAL_S

    def _queues(self) -> list[str]:
        names = self.queue_names if self.queue_names is not None else sorted(self.registry.queues())
        if not names:
            raise RuntimeError(
                "run_workers() called with no tasks registered: import the module that "
                "defines your @queue.task functions first"
            )
        return names

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Run until ``stop_event`` is set (or this coroutine is cancelled)."""
        names = self._queues()
        stop = stop_event if stop_event is not None else asyncio.Event()
        self._stopping = asyncio.Event()
        runners = [_QueueRunner(self, self.db.queue(name)) for name in names]
        self._threads = _TaskThreads(asyncio.get_running_loop(), self.concurrency * len(runners))
        log.info(
            "worker started: pid %d, queues %s, concurrency %d",
            os.getpid(),
            ", ".join(names),
            self.concurrency,
        )
        self._notify("pool_started", self)
        tasks = [asyncio.create_task(r.run(), name=f"honker-queue-{r.queue.name}") for r in runners]
        retention = self._start_retention()
        stop_waiter = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_waiter and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop_waiter.cancel()
            self._stopping.set()
            try:
                await cancel_and_wait([retention])
                await asyncio.wait(tasks)  # each runner drains: grace period, last flush
                for task in tasks:
                    if not task.cancelled():
                        task.exception()  # raised above already, or nothing
            finally:
                self._finish_run()

    def _finish_run(self) -> None:
        """The end of :meth:`run`, also when it is cancelled while draining."""
        if self._threads is not None:
            self._threads.close()
        self._notify("pool_stopped", self)
        log.info(
            "worker stopped: pid %d%s",
            os.getpid(),
            f", {self.abandoned} job(s) handed back unfinished" if self.abandoned else "",
        )

    def _start_retention(self) -> asyncio.Task[None]:
        """One worker applies the retention policy when no scheduler leads (see
        honker.retention.run_for_worker)."""
        from .retention import INTERVAL_S, run_for_worker
        from .scheduler import Scheduler

        interval = INTERVAL_S if self.retention_interval_s is None else self.retention_interval_s
        return asyncio.create_task(
            run_for_worker(self.db.engine, self.db.retention, Scheduler.LOCK_NAME, interval),
            name="honker-retention",
        )

    def release_all(self) -> int:
        """Hand every running job back at once (for an immediate exit)."""
        released = 0
        for job in list(self.running.values()):
            with contextlib.suppress(RuntimeError):
                released += job.queue.release(job.id, job.worker_id)
        return released

    # -- executing one job -------------------------------------------------------------
    async def _execute(self, job: Job) -> tuple[str | None, Outcome | None]:
        """Run one claimed job; returns its task name and the outcome to group-commit."""
        if self._custom_dispatch:
            await self.dispatch(job)
            return None, None
        return await self._run_job(job)

    async def _run_job(self, job: Job) -> tuple[str | None, Outcome]:
        try:
            payload = job.payload
        except ValueError as exc:
            return None, ("dead", job.id, None, f"payload is not valid JSON: {exc}")
        envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
        if not isinstance(envelope, dict):
            return None, ("dead", job.id, None, RAW_PAYLOAD_ERROR)
        name = envelope.get("task")
        spec = self.registry.get(name) if isinstance(name, str) else None
        if spec is None:
            return (name if isinstance(name, str) else None), (
                "dead",
                job.id,
                None,
                f"unknown task: {name}. Registered tasks: {self.registry.names()}",
            )
        args = envelope.get("args") or []
        kwargs = envelope.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return name, (
                "dead",
                job.id,
                None,
                f"malformed task envelope for {name}: args must be a list, kwargs an object",
            )
        ctx = _current_context(job)
        if ctx is not None:
            ctx.is_async = inspect.iscoroutinefunction(spec.fn)
            ctx.task_name = name
        with contextlib.ExitStack() as stack:
            for observer in self.observers:
                try:
                    stack.enter_context(observer.job_context(job, name))
                except Exception:
                    log.exception("observer %r failed in job_context (ignored)", observer)
            outcome = await _run_handler(
                job,
                self._handler(spec, args, kwargs),
                timeout=spec.timeout_s,
                retries=spec.retries,
                retry_delay=float(spec.retry_delay_s),
                backoff=spec.backoff,
                save_result=spec.store_result,
                result_ttl=spec.result_ttl_s,
            )
        return name, outcome

    def _handler(self, spec: TaskSpec, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn = spec.fn
        if inspect.iscoroutinefunction(fn):

            async def run_async(_: Any) -> Any:
                return await fn(*args, **kwargs)

            return run_async
        threads = self._threads
        assert threads is not None

        async def run_in_thread(_: Any) -> Any:
            ctx = contextvars.copy_context()
            return await threads.submit(functools.partial(ctx.run, fn, *args, **kwargs))

        return run_in_thread

    async def dispatch(self, job: Job) -> None:
        """Run the job and record its outcome at once (override to handle jobs yourself).

        The pool's own path group-commits outcomes instead; a subclass that overrides this
        records each job's outcome itself (``job.ack()``, ``job.retry()``…).
        """
        _, outcome = await self._run_job(job)
        engine = job.queue.db.engine
        await engine.awrite(engine.ops.apply_outcomes, job.worker_id, [outcome])

    # -- reporting -----------------------------------------------------------------------
    def _report(self, runner: _QueueRunner, finished: list[_Finished], applied: list[bool]) -> None:
        for item, ok in zip(finished, applied, strict=False):
            kind, job_id, arg, error = item.outcome
            if kind == "done":
                error = None
            job = item.job
            name = item.task_name or "-"
            if not ok:
                result = "lapsed"
                log.warning(
                    "job %s (%s) finished but its claim had lapsed: nothing recorded",
                    job_id,
                    name,
                )
            elif kind == "done":
                result = "done"
                log.debug("job %s (%s) done in %.3fs", job_id, name, item.duration_s)
            elif kind == "retry" and job.attempts < job.max_attempts:
                result = "retried"
                log.warning(
                    "task %s job %s attempt %d failed, retrying in %ss: %s",
                    name,
                    job_id,
                    job.attempts,
                    arg,
                    _first_line(error),
                )
            elif kind == "release":
                result = "released"
                log.info("job %s (%s) handed back unfinished", job_id, name)
            elif kind == "snooze":
                result = "snoozed"
                log.debug("job %s (%s) snoozed for %ss", job_id, name, arg)
            elif kind == "cancelled":
                result = "cancelled"
                log.info("job %s (%s) cancelled", job_id, name)
            else:
                result = "dead"
                log.error(
                    "task %s job %s dead-lettered after %d attempt(s): %s",
                    name,
                    job_id,
                    job.attempts,
                    _first_line(error),
                )
            for observer in self.observers:
                try:
                    observer.job_finished(job, item.task_name, result, item.duration_s, error)
                except Exception:
                    log.exception("observer %r failed in job_finished (ignored)", observer)

    def _notify(self, method: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:
                log.exception("observer %r failed in %s (ignored)", observer, method)


def _current_context(job: Job) -> JobContext | None:
    """The context the worker made for ``job`` (``None`` outside the pool's slots)."""
    ctx = _current.get()
    return ctx if ctx is not None and ctx.job is job else None
