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
import hashlib
import importlib
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypedDict, TypeVar, overload

from ._errors import UnknownTaskError
from ._json import dumps
from ._retry import backoff_delay
from ._validate import check_str, check_unique

if TYPE_CHECKING:
    from ._database import Database, Transaction
    from .queue import Queue
    from .scheduler import CronSchedule

ENVELOPE_KEY = "__honker_task__"

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
L_co = TypeVar("L_co", covariant=True)
if TYPE_CHECKING:  # a default (PEP 696) for type checkers: a bare TaskResult is TaskResult[Any]
    from typing_extensions import TypeVar as _TypeVarWithDefault

    T_co = _TypeVarWithDefault("T_co", covariant=True, default=Any)
else:
    T_co = TypeVar("T_co", covariant=True)

__all__ = [
    "ENVELOPE_KEY",
    "AsyncTask",
    "PeriodicTaskOptions",
    "Task",
    "TaskDecorator",
    "TaskOptions",
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
    unique: Callable[..., str | None] | bool | None = None
    unique_for_s: float | None = None

    def unique_key(self, args: Any, kwargs: Mapping[str, Any]) -> str | None:
        """The unique key of a call (``None``: not unique): see ``@queue.task(unique=...)``."""
        unique = self.unique
        if unique is None or unique is False:
            return None
        if unique is True:
            canonical = json.dumps(
                envelope(self.name, args, kwargs), sort_keys=True, separators=(",", ":")
            )
            return f"{self.name}:{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = unique(*args, **kwargs)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"unique key function of task {self.name!r} must return a str or None, "
                f"not {type(key).__name__}"
            )
        return key

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


def envelope(name: str, args: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The job payload for a task call (key order: task, args, kwargs)."""
    return {ENVELOPE_KEY: {"task": name, "args": list(args), "kwargs": dict(kwargs)}}


def encode_call(name: str, args: Any, kwargs: Mapping[str, Any]) -> Any:
    """Validate that a call's arguments are JSON; ``TypeError`` naming the task otherwise."""
    payload = envelope(name, args, kwargs)
    try:
        dumps(payload, f"arguments of task {name!r}")
    except ValueError as exc:  # NaN / Infinity
        raise TypeError(str(exc)) from None
    return payload


class TaskResult(Generic[T_co]):
    """Handle on an enqueued task call: ``id``, ``get(timeout)``, ``await aget(timeout)``.

    Generic in the task's result type: a task on ``def f(...) -> Receipt`` (or ``async def``)
    returns ``TaskResult[Receipt]``, whose ``get()`` is typed ``Receipt``. Built by hand
    (``TaskResult(db, queue, job_id)``), it is ``TaskResult[Any]``. The value read back is
    the JSON round trip of what the task returned, so give tasks JSON-shaped return types
    (``dict``, ``list``, a ``TypedDict``, ``str``, numbers...) for the type to hold.
    """

    def __init__(self, db: Database, queue: Queue, job_id: int) -> None:
        self.db = db
        self.queue = queue
        self._id = int(job_id)

    @property
    def id(self) -> int:
        """The job id."""
        return self._id

    async def aget(self, timeout: float | None = None) -> T_co:
        """Wait for the stored result (needs ``store_result=True``).

        Raises ``honker.TaskFailed`` as soon as the job is dead-lettered (with ``error``,
        ``attempts`` and ``task_name``), ``honker.TaskCancelled`` once it was cancelled and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        from .results import wait_task_result

        value: T_co = await wait_task_result(self.db.engine, self._id, timeout)
        return value

    def status(self) -> str:
        """``"pending"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.

        ``"done"`` also covers a job that finished without storing a result (or whose
        result expired).
        """
        from .results import job_status

        return job_status(self.db.engine, self._id)

    def progress(self) -> dict[str, Any] | None:
        """The last progress the task reported (``fraction``, ``message``, ``updated_at``)
        with ``honker.current_job().set_progress()``, or ``None``."""
        return self.queue.progress(self._id)

    def get(self, timeout: float | None = None) -> T_co:
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


class _TaskWrapper(Generic[P, R_co, L_co]):
    """A decorated task: call it to enqueue, ``call_local`` to run it here and now.

    Type parameters: ``P`` the function's parameters, ``R_co`` the result a worker stores
    (``TaskResult[R_co]``), ``L_co`` what ``call_local`` returns: ``R_co`` for a plain
    function, the coroutine for an ``async def``. Annotate with the aliases
    :data:`Task` (``Task[P, R]``) and :data:`AsyncTask`.
    """

    def __init__(self, spec: TaskSpec, queue: Queue) -> None:
        self.spec = spec
        self.fn: Callable[P, L_co] = spec.fn
        self.queue = queue
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        """The registered task name stored in each job's envelope."""
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult[R_co]:
        """Enqueue a call (the arguments must be JSON); see :meth:`apply_async`."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        tx: Transaction | None = None,
        delay: float | None = None,
        run_at: float | None = None,
        priority: int | None = None,
    ) -> TaskResult[R_co]:
        """Enqueue a call with options: ``tx=`` (commit with your writes), ``delay`` /
        ``run_at`` (schedule it), ``priority`` (override the task's).

        ``args`` and ``kwargs`` are not checked against the function's signature by a type
        checker (a ``ParamSpec`` cannot type a tuple and a dict passed as values); call the
        task directly for that, or check them at runtime with ``call_local``'s signature.
        """
        spec = self.spec
        payload = encode_call(spec.name, args, kwargs or {})
        key = spec.unique_key(args, kwargs or {})
        job_id = self.queue.enqueue(
            payload,
            tx=tx,
            delay=delay,
            run_at=run_at,
            priority=spec.priority if priority is None else priority,
            expires=spec.expires_s,
            max_attempts=spec.retries,
            unique_key=key,
            unique_for_s=None if key is None else spec.unique_for_s,
        )
        result: TaskResult[R_co] = TaskResult(self.queue.db, self.queue, job_id)
        return result

    def call_local(self, *args: P.args, **kwargs: P.kwargs) -> L_co:
        """Run the function directly in this process (no queue); for an ``async def``
        this returns its coroutine, to await."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<task {self.spec.name!r} on queue {self.spec.queue_name!r}>"


Task = _TaskWrapper[P, R, R]
"""``Task[P, R]``: the task made from a plain ``def f(*P) -> R`` (``call_local`` → ``R``)."""

AsyncTask = _TaskWrapper[P, R, Coroutine[Any, Any, R]]
"""``AsyncTask[P, R]``: the task made from ``async def f(*P) -> R`` (``TaskResult[R]``;
``call_local`` returns the coroutine)."""


class TaskOptions(TypedDict, total=False):
    """Keyword options of ``Queue.task`` / ``Database.task`` (see :func:`task_decorator`)."""

    retries: int | None
    retry_delay_s: float
    timeout_s: float | None
    priority: int
    expires_s: float | None
    store_result: bool
    result_ttl_s: float
    backoff: float
    unique: Callable[..., str | None] | bool | None
    unique_for_s: float | None


class PeriodicTaskOptions(TypedDict, total=False):
    """Keyword options of ``Queue.periodic_task`` / ``Database.periodic_task``."""

    name: str | None
    scheduler_name: str | None
    expires_s: float | None
    priority: int
    store_result: bool
    result_ttl_s: float


class TaskDecorator(Protocol):
    """What ``@queue.task(...)`` and ``@queue.periodic_task(...)`` return: a decorator that
    keeps the function's parameters and result type (an ``async def`` → ``AsyncTask``).

    Only an ``async def`` is awaited by the worker, and a type checker cannot tell it from a
    plain ``def`` annotated to return a coroutine: such a function is typed as async too.
    """

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> _TaskWrapper[P, R, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> _TaskWrapper[P, R, R]: ...


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
    unique: Callable[..., str | None] | bool | None = None,
    unique_for_s: float | None = None,
) -> Any:
    """Implementation of ``Queue.task``: returns a decorator (or decorates directly when
    used bare, as ``@queue.task``). ``Queue.task`` carries the precise types."""
    if callable(name):  # used as @queue.task without parentheses
        return task_decorator(queue)(name)
    check_str(name, "task name", optional=True)
    if backoff <= 0:
        raise ValueError("backoff must be positive")
    if unique is not None and not isinstance(unique, bool) and not callable(unique):
        raise TypeError(
            "unique must be True, False, None or a key function of the call's arguments, "
            f"not {type(unique).__name__}"
        )
    if unique_for_s is not None:
        if not unique:
            raise ValueError("unique_for_s needs unique=")
        check_unique("-", unique_for_s)

    def decorate(fn: Callable[..., Any]) -> _TaskWrapper[Any, Any, Any]:
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
            unique=unique,
            unique_for_s=unique_for_s,
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
) -> TaskDecorator:
    """Implementation of ``Queue.periodic_task``: registers the task and upserts a schedule
    (named ``scheduler_name`` or the task name) that enqueues it with no arguments."""
    from .scheduler import Scheduler

    def decorate(fn: Callable[..., Any]) -> _TaskWrapper[Any, Any, Any]:
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
