"""Huey-style tasks: ``@queue.task`` turns a function call into an enqueued job.

Calling a decorated function does not run it: the arguments are JSON-encoded into the
envelope ``{"__honker_task__": {"task": name, "args": [...], "kwargs": {...}}}`` (the
on-disk format shared with the reference's workers), enqueued on the task's queue, and a
:class:`TaskResult` is returned. A worker (``python -m honker worker app:db`` or
``db.run_workers()``) looks the name up in the process-wide registry and runs the function.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import UnknownTaskError
from ._json import dumps
from ._retry import backoff_delay

if TYPE_CHECKING:
    from ._database import Database, Transaction
    from .queue import Queue
    from .scheduler import CronSchedule

ENVELOPE_KEY = "__honker_task__"

__all__ = [
    "ENVELOPE_KEY",
    "TaskRegistry",
    "TaskResult",
    "TaskSpec",
    "UnknownTaskError",
    "load_app",
    "periodic_task_decorator",
    "registry",
    "run_workers",
    "task_decorator",
]


@dataclass
class TaskSpec:
    """How a registered task runs: its queue, retry policy, timeout and result storage."""

    name: str
    fn: Callable[..., Any]
    queue_name: str
    retries: int | None = 3
    retry_delay_s: float = 60
    timeout_s: float | None = None
    priority: int = 0
    expires_s: float | None = None
    store_result: bool = True
    result_ttl_s: float = 3600
    backoff: float = 1.0

    def retry_delay(self, attempts: int) -> int:
        """Delay before retrying after the ``attempts``-th failed attempt."""
        return backoff_delay(self.retry_delay_s, self.backoff, attempts)


class TaskRegistry:
    """Task name → :class:`TaskSpec` (one process-wide instance: :func:`registry`)."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskSpec] = {}
        self._lock = threading.Lock()

    def register(self, spec: TaskSpec) -> None:
        """Add ``spec``; a different function under an existing name raises ``ValueError``."""
        with self._lock:
            existing = self._by_name.get(spec.name)
            if existing is not None and not _same_function(existing.fn, spec.fn):
                raise ValueError(
                    f"duplicate task name {spec.name!r}: already registered for "
                    f"{_describe(existing.fn)}, cannot register {_describe(spec.fn)}; "
                    "pass name=... to one of them"
                )
            self._by_name[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        """The spec registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """Registered task names, sorted."""
        return sorted(self._by_name)

    def queues(self) -> set[str]:
        """Names of the queues that have at least one registered task."""
        return {spec.queue_name for spec in self._by_name.values()}

    def specs(self) -> list[TaskSpec]:
        """Every registered spec, sorted by name."""
        return [self._by_name[n] for n in self.names()]

    def __len__(self) -> int:
        return len(self._by_name)


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # The same object, or a module-level function re-created by reloading its module
    # (same module and qualname). Lambdas and nested functions must be the same object.
    if a is b:
        return True
    qualname = getattr(a, "__qualname__", None)
    return (
        isinstance(qualname, str)
        and "<" not in qualname
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and qualname == getattr(b, "__qualname__", None)
    )


def _describe(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


_registry = TaskRegistry()


def registry() -> TaskRegistry:
    """The process-wide task registry shared by every queue and database."""
    return _registry


def default_task_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` (Huey/Celery convention); module ``None`` → ``__main__``."""
    module = getattr(fn, "__module__", None) or "__main__"
    return f"{module}.{getattr(fn, '__qualname__', getattr(fn, '__name__', 'task'))}"


def envelope(name: str, args: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job payload for a task call (key order: task, args, kwargs)."""
    return {ENVELOPE_KEY: {"task": name, "args": list(args), "kwargs": dict(kwargs)}}


def encode_call(name: str, args: Any, kwargs: dict[str, Any]) -> Any:
    """Validate that a call's arguments are JSON; ``TypeError`` naming the task otherwise."""
    payload = envelope(name, args, kwargs)
    try:
        dumps(payload, f"arguments of task {name!r}")
    except ValueError as exc:  # NaN / Infinity
        raise TypeError(str(exc)) from None
    return payload


class TaskResult:
    """Handle on an enqueued task call: ``id``, ``get(timeout)``, ``await aget(timeout)``."""

    def __init__(self, db: Database, queue: Queue, job_id: int) -> None:
        self.db = db
        self.queue = queue
        self._id = int(job_id)

    @property
    def id(self) -> int:
        """The job id."""
        return self._id

    async def aget(self, timeout: float | None = None) -> Any:
        """Wait for the stored result (needs ``store_result=True``); ``TimeoutError``."""
        return await self.queue.wait_result(self._id, timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Blocking :meth:`aget`; must not be called from inside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aget(timeout))
        raise RuntimeError(
            "TaskResult.get() blocks; inside an event loop use `await result.aget()`"
        )

    def __repr__(self) -> str:
        return f"TaskResult(queue={self.queue.name!r}, id={self._id})"


class _TaskWrapper:
    """A decorated task: call it to enqueue, ``call_local`` to run it here and now."""

    def __init__(self, spec: TaskSpec, queue: Queue) -> None:
        self.spec = spec
        self.fn = spec.fn
        self.queue = queue
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        """The registered task name stored in each job's envelope."""
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> TaskResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        *,
        tx: Transaction | None = None,
        delay: float | None = None,
        run_at: float | None = None,
        priority: int | None = None,
    ) -> TaskResult:
        """Enqueue a call with options: ``tx=`` (commit with your writes), ``delay`` /
        ``run_at`` (schedule it), ``priority`` (override the task's)."""
        spec = self.spec
        payload = encode_call(spec.name, args, kwargs or {})
        job_id = self.queue.enqueue(
            payload,
            tx=tx,
            delay=delay,
            run_at=run_at,
            priority=spec.priority if priority is None else priority,
            expires=spec.expires_s,
            max_attempts=spec.retries,
        )
        return TaskResult(self.queue.db, self.queue, job_id)

    def call_local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function directly in this process (no queue)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<task {self.spec.name!r} on queue {self.spec.queue_name!r}>"


def task_decorator(
    queue: Queue,
    name: Any = None,
    *,
    retries: int | None = None,
    retry_delay_s: float = 60,
    timeout_s: float | None = None,
    priority: int = 0,
    expires_s: float | None = None,
    store_result: bool = True,
    result_ttl_s: float = 3600,
    backoff: float = 1.0,
) -> Any:
    """Implementation of ``Queue.task``: returns a decorator (or decorates directly when
    used bare, as ``@queue.task``)."""
    if callable(name):  # used as @queue.task without parentheses
        return task_decorator(queue)(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"task name must be a str, not {type(name).__name__}")
    if backoff <= 0:
        raise ValueError("backoff must be positive")

    def decorate(fn: Callable[..., Any]) -> _TaskWrapper:
        if not callable(fn):
            raise TypeError("@task decorates a function")
        spec = TaskSpec(
            name=name or default_task_name(fn),
            fn=fn,
            queue_name=queue.name,
            retries=queue.max_attempts if retries is None else int(retries),
            retry_delay_s=retry_delay_s,
            timeout_s=timeout_s,
            priority=int(priority),
            expires_s=expires_s,
            store_result=store_result,
            result_ttl_s=result_ttl_s,
            backoff=float(backoff),
        )
        _registry.register(spec)
        return _TaskWrapper(spec, queue)

    return decorate


def periodic_task_decorator(
    queue: Queue,
    schedule: CronSchedule | str,
    *,
    name: str | None = None,
    scheduler_name: str | None = None,
    expires_s: float | None = None,
    priority: int = 0,
    store_result: bool = False,
    result_ttl_s: float = 3600,
) -> Callable[[Callable[..., Any]], _TaskWrapper]:
    """Implementation of ``Queue.periodic_task``: registers the task and upserts a schedule
    (named ``scheduler_name`` or the task name) that enqueues it with no arguments."""
    from .scheduler import Scheduler

    def decorate(fn: Callable[..., Any]) -> _TaskWrapper:
        spec = TaskSpec(
            name=name or default_task_name(fn),
            fn=fn,
            queue_name=queue.name,
            retries=3,
            retry_delay_s=60,
            priority=int(priority),
            expires_s=expires_s,
            store_result=store_result,
            result_ttl_s=result_ttl_s,
        )
        _registry.register(spec)
        Scheduler(queue.db).add(
            name=scheduler_name or spec.name,
            queue=queue.name,
            schedule=schedule,
            payload=envelope(spec.name, [], {}),
            priority=int(priority),
            expires=expires_s,
            max_attempts=3,
        )
        return _TaskWrapper(spec, queue)

    return decorate


def load_app(target: str) -> Any:
    """Import ``"module.path:attr"`` (registering its tasks) and return the attribute."""
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"target must be 'module.path:variable', got {target!r}")
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"target must be 'module.path:variable', got {target!r}")
    module = importlib.import_module(module_name)
    value: Any = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise AttributeError(f"module {module_name!r} has no attribute {attr!r}")
    return value


async def run_workers(
    db: Database,
    queue: str | None = None,
    concurrency: int | None = None,
    registry_: TaskRegistry | None = None,
    stop_event: asyncio.Event | None = None,
    *,
    grace_period_s: float = 30.0,
) -> None:
    """Run registered tasks from ``queue`` (default: every queue with a task) until
    ``stop_event`` is set. See :class:`honker.worker.WorkerPool`."""
    from .worker import WorkerPool

    pool = WorkerPool(
        db,
        queues=None if queue is None else [queue],
        concurrency=concurrency,
        registry=registry_ or _registry,
        grace_period_s=grace_period_s,
    )
    await pool.run(stop_event)
