"""``honker.current_job()``: the job a task is running, its cancel flag and its progress.

The worker sets a context variable around each job it runs. Async tasks see it directly;
sync tasks run in threads inside a copy of that context, so they see it too. Progress is
only buffered here (``set_progress`` never blocks on the database): the worker writes the
latest value of each job at most once per second, on its I/O threads.
"""

from __future__ import annotations

import contextvars
import math
import threading
from typing import TYPE_CHECKING, Protocol

from ._errors import JobCancelled

if TYPE_CHECKING:
    from .queue import Job

__all__ = ["JobContext", "current_job"]

MAX_PROGRESS_MESSAGE = 1000
_EVENT_LOCK = threading.Lock()  # pairs a cancel request with a waiter's lazily made Event


class ProgressSink(Protocol):
    """Where a job context leaves its latest progress (the worker's queue runner)."""

    def offer_progress(self, job_id: int, fraction: float, message: str | None) -> None:
        """Keep ``(fraction, message)`` as the job's latest progress, to write later."""


class JobContext:
    """The job the current task runs; returned by :func:`honker.current_job`.

    Attributes: ``job_id``, ``queue`` (the queue's name), ``attempts`` (this attempt's
    number, from 1), ``max_attempts``, ``task_name`` and ``job`` (the claimed
    :class:`honker.Job`).
    """

    __slots__ = ("_cancelled", "_event", "_sink", "is_async", "job", "task_name")

    def __init__(self, job: Job, sink: ProgressSink | None, task_name: str | None = None):
        self.job = job
        self.task_name = task_name
        self.is_async = False
        self._sink = sink
        self._cancelled = False
        self._event: threading.Event | None = None  # made only if a task waits on it

    @property
    def job_id(self) -> int:
        """The running job's id."""
        return self.job.id

    @property
    def queue(self) -> str:
        """The running job's queue name."""
        return self.job.queue_name

    @property
    def attempts(self) -> int:
        """This attempt's number (1 for the first run)."""
        return self.job.attempts

    @property
    def max_attempts(self) -> int:
        """The job's attempt budget."""
        return self.job.max_attempts

    @property
    def cancel_requested(self) -> bool:
        """``True`` once ``q.cancel(job_id)`` asked this job to stop (seen by the worker)."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise :class:`honker.JobCancelled` if a cancel was requested; the job then ends
        as cancelled (it leaves the queue and is not retried)."""
        if self._cancelled:
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (a sync task's thread) until a cancel is requested or ``timeout`` passes;
        returns :attr:`cancel_requested`. A cancellable replacement for ``time.sleep``."""
        with _EVENT_LOCK:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            event = self._event
        return event.wait(timeout)

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress: ``fraction`` from 0.0 to 1.0, with an optional ``message``.

        Never blocks: the latest value is written by the worker at most once per second.
        Read it back with ``TaskResult.progress()`` or ``q.get_job(id)["progress"]``.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"progress fraction must be a number, not {type(fraction).__name__}")
        value = float(fraction)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"progress fraction must be between 0.0 and 1.0, got {fraction!r}")
        if message is not None:
            if not isinstance(message, str):
                raise TypeError(f"progress message must be a str, not {type(message).__name__}")
            if len(message) > MAX_PROGRESS_MESSAGE:
                raise ValueError(
                    f"progress message is {len(message)} characters; at most "
                    f"{MAX_PROGRESS_MESSAGE} are allowed"
                )
        if self._sink is not None:
            self._sink.offer_progress(self.job.id, value, message)

    def _request_cancel(self) -> None:
        with _EVENT_LOCK:
            self._cancelled = True
            if self._event is not None:
                self._event.set()

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job.id}, queue={self.job.queue_name!r})"


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "honker_current_job", default=None
)


def current_job() -> JobContext:
    """The job the calling task is running (inside a task run by a honker worker).

    Works in ``async`` tasks and in sync tasks (run in the worker's threads). Raises
    ``RuntimeError`` anywhere else.
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(
            "honker.current_job() called outside a running task: it only works inside a "
            "@queue.task function while a honker worker runs it"
        )
    return ctx


def set_current(ctx: JobContext | None) -> contextvars.Token[JobContext | None]:
    """Make ``ctx`` the current job of this context (the worker, around each job)."""
    return _current.set(ctx)
