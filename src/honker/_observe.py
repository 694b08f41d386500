"""Worker observers: hooks that metrics, tracing and the live-worker registry plug into."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .queue import Job
    from .worker import WorkerPool


class WorkerObserver:
    """Base class with no-op methods; a ``WorkerPool`` calls these for every job it runs.

    Methods run on the event-loop thread, must be cheap and should not raise (the worker
    logs and ignores an observer's exception).
    """

    def pool_started(self, pool: WorkerPool) -> None:
        """The pool is about to start claiming."""

    def pool_stopped(self, pool: WorkerPool) -> None:
        """The pool stopped (every outcome is flushed)."""

    def job_context(
        self, job: Job, task_name: str | None
    ) -> contextlib.AbstractContextManager[None]:
        """Entered around the handler's execution (e.g. a tracing span)."""
        return contextlib.nullcontext()

    def job_finished(
        self,
        job: Job,
        task_name: str | None,
        outcome: str,
        duration_s: float,
        error: str | None,
    ) -> None:
        """After the outcome is committed: ``outcome`` is ``done``, ``retried``, ``dead``,
        ``lapsed`` (the claim was lost; nothing written) or ``released`` (handed back)."""
