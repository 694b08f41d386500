"""Running task handlers: timeouts, retries with backoff, heartbeats and graceful shutdown.

``run_task`` runs one handler for one claimed job and records the outcome (ack, retry or
dead letter). ``WorkerPool`` runs ``concurrency`` workers per queue: async tasks run on the
event loop, sync tasks in threads (so a blocking task never stalls its peers), and a job
that runs longer than a third of its visibility window is heartbeated so a live worker's
job is never reclaimed. Stopping is graceful: workers stop claiming, running jobs get a
grace period to finish, and whatever is still running after it is cancelled and its claim
handed back at once (not after the visibility timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import _observe
from ._errors import DatabaseClosed, Retryable, WatcherDied
from ._json import dumps
from ._watcher import wait_any
from .tasks import ENVELOPE_KEY, TaskRegistry, TaskSpec

if TYPE_CHECKING:
    from ._database import Database
    from .queue import Job, Queue

RAW_PAYLOAD_ERROR = "raw (non-decorated) payload on a decorated-task queue"
SHUTDOWN_ERROR = "worker shutting down"


def _compute_delay(retry_delay: float, backoff: float, attempts: int) -> int:
    """``int(retry_delay * backoff ** (attempts - 1))`` (attempts counted from 1)."""
    return int(retry_delay * backoff ** max(0, attempts - 1))


def _retry_or_fail(job: Job, retries: int | None, delay_s: int, error: str) -> bool:
    """Dead-letter when the task's own budget is spent, else retry after ``delay_s``."""
    if retries is not None and job.attempts >= retries:
        return job.fail(error)
    return job.retry(delay_s, error)


def _failure_outcome(job: Job, retries: int | None, held: bool) -> str:
    """'dead', 'retried' or 'lapsed' for a failed attempt (see ``_retry_or_fail``)."""
    if not held:
        return "lapsed"
    spent = job.attempts >= job.max_attempts or (retries is not None and job.attempts >= retries)
    return "dead" if spent else "retried"


def _dead_letter(job: Job, error: str) -> tuple[str, str | None]:
    return ("dead" if job.fail(error) else "lapsed"), error


def _save_and_ack(job: Job, result: Any, result_ttl: float | None) -> bool:
    try:
        text = dumps(result, f"result of job {job.id}")
    except (TypeError, ValueError) as exc:
        print(f"honker: not storing the result of job {job.id}: {exc}", file=sys.stderr)
        return job.ack()
    from . import _ops

    ttl_s = 0 if result_ttl is None else int(result_ttl)
    db = job.queue.db

    def save_then_ack(conn: Any) -> bool:
        _ops.result_save(conn, job.id, text, ttl_s)
        return _ops.ack(conn, job.id, job.worker_id)

    return db._write(save_then_ack)


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
) -> tuple[str, str | None]:
    """Run ``handler(job.payload)``, record the outcome on the job and return
    ``(outcome, error)``: outcome is 'done', 'retried', 'dead' or 'lapsed' (claim lost).

    Success: the result is stored (when ``save_result``) and the job acked, in one
    transaction. ``Retryable`` retries after its ``delay_s``; a timeout or any other
    exception retries after ``retry_delay * backoff**(attempts-1)``, or dead-letters once
    ``retries`` attempts were made (or the row's own budget is spent). Cancellation
    propagates untouched (the visibility timeout, or the pool, hands the job back).
    """
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
        delay = _compute_delay(retry_delay, backoff, job.attempts)
    except Retryable as exc:
        error, delay = str(exc), exc.delay_s
    except Exception as exc:
        error = f"{exc}\n{traceback.format_exc()}"
        delay = _compute_delay(retry_delay, backoff, job.attempts)
    else:
        held = _save_and_ack(job, result, result_ttl) if save_result else job.ack()
        return ("done" if held else "lapsed"), None
    held = _retry_or_fail(job, retries, delay, error)
    return _failure_outcome(job, retries, held), error


def _task_handler(spec: TaskSpec, args: list[Any], kwargs: dict[str, Any]) -> Any:
    fn = spec.fn
    if inspect.iscoroutinefunction(fn):

        async def run_async(_: Any) -> Any:
            return await fn(*args, **kwargs)

        return run_async

    async def run_in_thread(_: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    return run_in_thread


class Heartbeat:
    """Extends a running job's claim every third of its visibility window.

    Start it when the work starts (inside a running event loop) and ``cancel()`` it when
    the work ends, or use it as ``with Heartbeat(job): await work()``. Stops by itself once
    the claim is lost (e.g. the job was cancelled).
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.interval = max(0.5, job.queue.visibility_timeout_s / 3)
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(self.interval, self._beat)

    def _beat(self) -> None:
        try:
            held = self.job.heartbeat()
        except RuntimeError:
            held = True  # transient (e.g. database busy): try again next time
        if held:
            self._handle = self._loop.call_later(self.interval, self._beat)

    def cancel(self) -> None:
        """Stop extending the claim."""
        self._handle.cancel()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class WorkerPool:
    """``concurrency`` workers per queue running registered tasks until stopped."""

    def __init__(
        self,
        db: Database,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        registry: TaskRegistry | None = None,
        grace_period_s: float = 30.0,
        idle_poll_s: float | None = 5.0,
        observers: Sequence[_observe.WorkerObserver] = (),
    ) -> None:
        from .tasks import registry as global_registry

        self.db = db
        self.registry = registry or global_registry()
        self.queue_names = sorted(set(queues)) if queues is not None else None
        self.concurrency = max(1, int(concurrency or os.cpu_count() or 1))
        self.grace_period_s = grace_period_s
        self.idle_poll_s = idle_poll_s
        self.running: dict[str, Job] = {}
        self.abandoned = 0
        self._stopping = asyncio.Event()
        # observers (honker._observe): registry, metrics, tracing; empty = no overhead
        self.observers = [*observers, *_observe.default_observers]

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
        queues = [self.db.queue(name) for name in names]
        tasks = [
            asyncio.create_task(
                self._work(q, f"honker-worker-{os.getpid()}-{q.name}-{i}"),
                name=f"honker-worker-{q.name}-{i}",
            )
            for q in queues
            for i in range(self.concurrency)
        ]
        stop_waiter = asyncio.ensure_future(stop.wait())
        _observe.notify_pool(self.observers, self, started=True)
        try:
            done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_waiter and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop_waiter.cancel()
            await self._shutdown(tasks)
            _observe.notify_pool(self.observers, self, started=False)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self._stopping.set()
        pending = [t for t in tasks if not t.done()]
        if pending and self.grace_period_s > 0:
            _, pending_set = await asyncio.wait(pending, timeout=self.grace_period_s)
            pending = list(pending_set)
        self.abandoned += len(self.running)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def release_all(self) -> int:
        """Hand every running job back at once (for an immediate exit)."""
        released = 0
        for job in list(self.running.values()):
            with contextlib.suppress(RuntimeError):
                released += job.queue.release(job.id, job.worker_id)
        return released

    async def _next_job(self, queue: Queue, worker_id: str, sub: Any) -> Job | None:
        while not self._stopping.is_set():
            job = queue.claim_one(worker_id)
            if job is not None:
                return job
            timeout = self.idle_poll_s
            deadline = queue.next_claim_at()
            if deadline > 0:
                until = max(0.0, deadline - time.time())
                timeout = until if timeout is None else min(timeout, until)
            await wait_any(sub, self._stopping, None, timeout)
        return None

    async def _work(self, queue: Queue, worker_id: str) -> None:
        sub = queue.db._subscribe()
        job: Job | None = None
        try:
            while not self._stopping.is_set():
                job = await self._next_job(queue, worker_id, sub)
                if job is None:
                    return
                self.running[worker_id] = job
                try:
                    await self.dispatch(job)
                except (WatcherDied, DatabaseClosed):
                    raise
                except RuntimeError as exc:  # e.g. the database stayed locked: keep going
                    print(f"honker worker {worker_id}: job {job.id}: {exc}", file=sys.stderr)
                    await asyncio.sleep(1.0)
                self.running.pop(worker_id, None)
                job = None
        except asyncio.CancelledError:
            if job is not None:
                with contextlib.suppress(RuntimeError):
                    job.queue.release(job.id, job.worker_id)
            raise
        finally:
            self.running.pop(worker_id, None)
            sub.close()

    async def dispatch(self, job: Job) -> None:
        """Run the task a claimed job names (or dead-letter the job if it names none)."""
        if self.observers:
            await _observe.run_observed(self.observers, job, self._dispatch)
        else:
            await self._dispatch(job)

    async def _dispatch(self, job: Job) -> tuple[str, str | None]:
        try:
            payload = job.payload
        except ValueError as exc:
            return _dead_letter(job, f"payload is not valid JSON: {exc}")
        envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
        if not isinstance(envelope, dict):
            return _dead_letter(job, RAW_PAYLOAD_ERROR)
        name = envelope.get("task")
        spec = self.registry.get(name) if isinstance(name, str) else None
        if spec is None:
            return _dead_letter(
                job, f"unknown task: {name}. Registered tasks: {self.registry.names()}"
            )
        args = envelope.get("args") or []
        kwargs = envelope.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return _dead_letter(
                job, f"malformed task envelope for {name}: args must be a list, kwargs an object"
            )
        with Heartbeat(job):
            return await run_task(
                job,
                _task_handler(spec, args, kwargs),
                timeout=spec.timeout_s,
                retries=spec.retries,
                retry_delay=float(spec.retry_delay_s),
                backoff=spec.backoff,
                save_result=spec.store_result,
                result_ttl=spec.result_ttl_s,
            )
