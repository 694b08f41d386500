"""Result storage: a job's return value, keyed by job id, with an optional TTL.

Workers save a result after a task succeeds; callers read it with ``get_result`` or wait for
it with ``wait_result``, which subscribes to database updates *before* its first check so a
result committed in between is never missed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._errors import TaskCancelled, TaskFailed
from ._json import dumps
from ._validate import check_id

if TYPE_CHECKING:
    from ._database import Transaction
    from ._engine import Engine

FALLBACK_RECHECK_S = 15.0


def save_result(
    engine: Engine,
    job_id: int,
    value: Any,
    ttl: float | None = None,
    tx: Transaction | None = None,
) -> None:
    """Upsert ``value`` (JSON) for ``job_id``; ``ttl`` seconds, ``None``/≤0 = never expires."""
    text = dumps(value, "result")
    ttl_s = 0 if ttl is None else int(ttl)
    engine.in_tx(tx, engine.ops.result_save, check_id(job_id), text, ttl_s)


def get_result(engine: Engine, job_id: int) -> tuple[bool, Any]:
    """``(True, value)`` if a live result is stored (value may be None), else ``(False, None)``."""
    return _decode(engine.read(engine.ops.result_get, check_id(job_id)))


def _decode(text: str | None) -> tuple[bool, Any]:
    if text is None:
        return (False, None)
    return (True, json.loads(text))


async def wait_result(engine: Engine, job_id: int, timeout: float | None = None) -> Any:
    """Wait until ``job_id`` has a stored result and return it.

    Raises ``TimeoutError`` (``asyncio.TimeoutError``) after ``timeout`` seconds.
    """
    job_id = check_id(job_id)

    async def look() -> tuple[bool, Any]:
        return _decode(await engine.aread(engine.ops.result_get, job_id))

    return await _wait_until(engine, look, timeout, f"wait_result({job_id}) timed out")


async def _wait_until(
    engine: Engine,
    look: Callable[[], Awaitable[tuple[bool, Any]]],
    timeout: float | None,
    timeout_message: str,
) -> Any:
    """Call ``look()`` after subscribing and after every wake until it finds a value.

    Subscribing first means a commit landing between two looks is never missed; a look
    every ``FALLBACK_RECHECK_S`` bounds any missed wake. ``TimeoutError`` after
    ``timeout`` seconds.
    """
    sub = engine.subscribe()
    try:
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            found, value = await look()
            if found:
                return value
            wait = FALLBACK_RECHECK_S
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(timeout_message)
                wait = min(wait, remaining)
            await sub.wait(wait)
    finally:
        sub.close()


# -- TaskResult: failed and cancelled jobs surface as errors (i15-jobs) ----------------

JOB_STATUSES = ("pending", "running", "done", "failed", "cancelled")


def _envelope_task(payload: str | None) -> str | None:
    """The task name in a job payload's envelope, or None."""
    from .tasks import ENVELOPE_KEY

    try:
        data = json.loads(payload) if payload is not None else None
    except ValueError:
        return None
    envelope = data.get(ENVELOPE_KEY) if isinstance(data, dict) else None
    name = envelope.get("task") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def job_status(engine: Engine, job_id: int) -> str:
    """``pending``, ``running``, ``done``, ``failed`` or ``cancelled`` (one read).

    ``done`` also covers a job that finished without a stored result (or whose result
    expired) and an id that is not known at all.
    """
    kind, _ = engine.read(engine.ops.job_outcome, check_id(job_id))
    return "done" if kind == "gone" else str(kind)


def _settle(job_id: int, kind: str, data: Any) -> tuple[bool, Any]:
    """``(True, value)`` for a stored result; raise for failed or cancelled; else waiting."""
    if kind == "done":
        return True, json.loads(data)
    if kind == "failed":
        attempts, error, payload = data
        raise TaskFailed(job_id, _envelope_task(payload), attempts, error)
    if kind == "cancelled":
        raise TaskCancelled(job_id)
    return False, None


async def wait_task_result(engine: Engine, job_id: int, timeout: float | None = None) -> Any:
    """:func:`wait_result` for a task: raises ``TaskFailed`` as soon as the job is
    dead-lettered and ``TaskCancelled`` once it was cancelled (else ``TimeoutError``)."""
    job_id = check_id(job_id)

    async def look() -> tuple[bool, Any]:
        kind, data = await engine.aread(engine.ops.job_outcome, job_id)
        return _settle(job_id, kind, data)

    return await _wait_until(
        engine, look, timeout, f"result of job {job_id} not ready after {timeout}s"
    )


def sweep_results(engine: Engine) -> int:
    """Delete every expired result; returns the count."""
    return int(engine.write(engine.ops.result_sweep))
