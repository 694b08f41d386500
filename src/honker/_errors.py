"""Exceptions raised by honker, and the translation of SQLite errors into them."""

from __future__ import annotations

import math
import sqlite3
import threading

WATCHER_DIED_MESSAGE = (
    "honker: update watcher died (database file likely replaced; recreate honker.open() to recover)"
)
NESTED_TX_MESSAGE = (
    "nested db.transaction() is not supported: this thread already holds the writer; "
    "pass tx= to the operation, or run it after the transaction commits"
)
CLOSED_MESSAGE = "Database is closed"


class SQLiteError(RuntimeError):
    """A SQLite failure (cannot open, not a database, read-only, disk full, SQL error...).

    A ``RuntimeError`` subclass whose message carries SQLite's own text.
    """


class InvalidArgument(ValueError, RuntimeError):
    """A bad argument that the reference reports as a SQL error (hence also RuntimeError)."""


class WatcherDied(RuntimeError):
    """The update watcher stopped for good (for example the database file was replaced)."""


class DatabaseClosed(RuntimeError):
    """The ``Database`` was closed."""


class Retryable(Exception):
    """Raised by a task handler to ask for a retry after exactly ``delay_s`` seconds."""

    def __init__(self, message: str = "", delay_s: int = 60) -> None:
        super().__init__(message)
        self.delay_s = int(delay_s)


class Snooze(Exception):
    """Raised by a task to run it again after ``seconds`` without using up an attempt.

    The job goes back to pending, due ``seconds`` from now (rounded up to whole seconds);
    the attempt this run counted is given back. ``TypeError`` if ``seconds`` is not a
    number, ``ValueError`` if it is negative or not finite. (honker for Python only.)
    """

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"Snooze seconds must be a number, not {type(seconds).__name__}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"Snooze seconds must be a finite number >= 0, got {seconds!r}")
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = seconds

    @property
    def delay_s(self) -> int:
        """``seconds`` rounded up to the whole seconds the queue schedules in."""
        return math.ceil(self.seconds)


class LockHeld(Exception):
    """The named lock is held by another owner."""


class LeadershipLost(Exception):
    """The scheduler lost its leader lock while running."""


class UnknownTaskError(Exception):
    """A job names a task that is not registered in this process."""


# -- jobs: cancel, failed results (honker for Python only) --


class JobCancelled(Exception):
    """Raised inside a task (by ``honker.current_job().raise_if_cancelled()``) to end the
    job as cancelled: it leaves the queue, and its ``TaskResult`` raises ``TaskCancelled``."""


class TaskFailed(Exception):
    """``TaskResult.get()``/``aget()``: the job was dead-lettered.

    ``error`` is its last error (message and traceback), ``attempts`` how many attempts it
    made, ``task_name`` the task it ran (``None`` for a raw payload), ``job_id`` its id.
    """

    def __init__(self, job_id: int, task_name: str | None, attempts: int, error: str | None):
        first = (error or "").splitlines()[0] if error else "no error recorded"
        super().__init__(
            f"task {task_name or '?'} (job {job_id}) failed after {attempts} attempt(s): {first}"
        )
        self.job_id = job_id
        self.task_name = task_name
        self.attempts = attempts
        self.error = error


class TaskCancelled(Exception):
    """``TaskResult.get()``/``aget()``: the job was cancelled (``q.cancel(id)``)."""

    def __init__(self, job_id: int, task_name: str | None = None):
        super().__init__(f"task {task_name or '?'} (job {job_id}) was cancelled")
        self.job_id = job_id
        self.task_name = task_name


# sqlite3 reports an exception raised inside a Python-defined SQL function only as this
# fixed text; the honker_* wrappers record the real reason per thread (see _sqlfunctions).
UDF_FAILED_MESSAGE = "user-defined function raised exception"
_function_errors = threading.local()


def record_function_error(detail: str) -> None:
    """Remember why a honker SQL function failed on this thread."""
    _function_errors.detail = detail


def function_error_detail() -> str | None:
    """The reason recorded by the most recent failing honker SQL function on this thread."""
    detail: str | None = getattr(_function_errors, "detail", None)
    return detail


def translate(exc: BaseException) -> RuntimeError:
    """Turn a ``sqlite3`` error into the ``RuntimeError`` the public API promises."""
    if isinstance(exc, RuntimeError):
        return exc
    message = str(exc) or type(exc).__name__
    if message == UDF_FAILED_MESSAGE:
        detail = function_error_detail()
        if detail is not None:
            _function_errors.detail = None
            return SQLiteError(f"{message}: {detail}")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in message.lower():
        return DatabaseClosed(CLOSED_MESSAGE)
    return SQLiteError(message)
