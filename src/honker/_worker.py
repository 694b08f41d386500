"""Compatibility path: the reference keeps ``run_task`` in ``honker._worker``."""

from .worker import _compute_delay, _retry_or_fail, run_task

__all__ = ["_compute_delay", "_retry_or_fail", "run_task"]
