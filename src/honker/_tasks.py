"""Compatibility path: the reference keeps tasks in ``honker._tasks``."""

from ._errors import UnknownTaskError
from .tasks import (
    TaskRegistry,
    TaskResult,
    TaskSpec,
    load_app,
    periodic_task_decorator,
    registry,
    run_workers,
    task_decorator,
)

__all__ = [
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
