"""Hooks for watching a worker pool: the ``WorkerObserver`` interface and how it is called.

A ``WorkerPool(..., observers=[...])`` calls every observer's ``pool_started`` and
``pool_stopped`` around its run, enters ``job_context`` around each job's handler and calls
``job_finished`` once the outcome is known. The live-workers registry
(:mod:`honker.workers`), the worker's Prometheus counters (:mod:`honker.metrics`) and the
OpenTelemetry consumer spans (:mod:`honker.tracing`) are observers.

Observer exceptions are logged and ignored: an observer can never fail a job.

This module also holds the single switch the enqueue path looks at for tracing
(``enqueue_hook``, ``None`` unless :func:`honker.tracing.enable` was called), so the hot
path costs one ``if`` when tracing is off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .queue import Job, Queue
    from .worker import WorkerPool

log = logging.getLogger("honker.observe")

OUTCOMES = ("done", "retried", "dead", "lapsed", "released", "snoozed")

# (queue, enqueue args as passed to _ops.enqueue minus the connection, tx) -> job id
EnqueueHook = Callable[["Queue", tuple[Any, ...], Any], int]
enqueue_hook: EnqueueHook | None = None

# Observers every new WorkerPool adds to the ones it is given (tracing, once enabled).
default_observers: list[WorkerObserver] = []


class WorkerObserver:
    """Base class with no-op methods; the worker calls these for every job it runs.

    Subclass it and override what you need. Every method is called on the event-loop
    thread and must be cheap (no blocking I/O: hand slow work to a thread); exceptions are
    logged and ignored.
    """

    def pool_started(self, pool: WorkerPool) -> None:
        """The pool is about to start claiming."""

    def pool_stopped(self, pool: WorkerPool) -> None:
        """The pool has stopped: no job runs any more."""

    def job_context(
        self, job: Job, task_name: str | None
    ) -> contextlib.AbstractContextManager[None]:
        """Entered around the handler's execution (e.g. a tracing span); default no-op."""
        return contextlib.nullcontext()

    def job_finished(
        self,
        job: Job,
        task_name: str | None,
        outcome: str,
        duration_s: float,
        error: str | None,
    ) -> None:
        """The job's outcome is committed (or known lapsed).

        ``outcome`` is one of ``'done'``, ``'retried'``, ``'dead'``, ``'cancelled'`` (ended
        by a cancel request), ``'lapsed'`` (the claim was lost; nothing was written),
        ``'released'`` (handed back at shutdown) or ``'snoozed'`` (the task raised
        ``honker.Snooze``: pending again, attempt given back).
        """


def task_name_of(job: Job) -> str | None:
    """The task name in a job's envelope, or ``None`` (raw payload, invalid JSON...)."""
    from .tasks import ENVELOPE_KEY

    try:
        payload = job.payload
    except ValueError:
        return None
    envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
    name = envelope.get("task") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def _warn(observer: WorkerObserver, what: str) -> None:
    log.warning("observer %r failed in %s (ignored)", observer, what, exc_info=True)


def notify_pool(observers: Sequence[WorkerObserver], pool: WorkerPool, started: bool) -> None:
    """Call ``pool_started`` (or ``pool_stopped``) of every observer, ignoring failures."""
    for observer in observers:
        try:
            if started:
                observer.pool_started(pool)
            else:
                observer.pool_stopped(pool)
        except Exception:
            _warn(observer, "pool_started" if started else "pool_stopped")


async def run_observed(
    observers: Sequence[WorkerObserver],
    job: Job,
    run: Callable[[Job], Awaitable[tuple[str, str | None]]],
) -> None:
    """Run ``run(job)`` (which returns ``(outcome, error)``) inside every observer's
    ``job_context``, then report the outcome to each ``job_finished``.

    A cancelled run (shutdown) is reported as ``'released'``; a run that raised (its
    outcome could not be written, e.g. the database stayed locked) as ``'lapsed'``: the
    claim will lapse. Either way the exception propagates.
    """
    task_name = task_name_of(job)
    outcome, error = "released", None
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            for observer in observers:
                try:
                    stack.enter_context(observer.job_context(job, task_name))
                except Exception:
                    _warn(observer, "job_context")
            try:
                outcome, error = await run(job)
            except Exception as exc:
                outcome, error = "lapsed", f"{type(exc).__name__}: {exc}"
                raise
    finally:
        duration = time.perf_counter() - start
        for observer in observers:
            try:
                observer.job_finished(job, task_name, outcome, duration, error)
            except Exception:
                _warn(observer, "job_finished")


def _enable_from_env() -> None:
    if os.environ.get("HONKER_OTEL", "").strip().lower() in ("1", "true", "yes", "on"):
        try:
            from . import tracing

            tracing.enable()
        except ImportError:
            log.warning("HONKER_OTEL is set but opentelemetry-api is not installed: no tracing")


_enable_from_env()
