"""The one retry-backoff rule shared by tasks, the worker, the outbox and belfry."""

from __future__ import annotations


def backoff_delay(base_s: float, factor: float, attempts: int) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt (attempts counted from 1).

    ``int(base_s * factor ** (attempts - 1))``: ``factor`` 1.0 is a constant delay, 2.0
    doubles it on every attempt.
    """
    return int(base_s * factor ** max(0, attempts - 1))
