"""Result storage: a job's return value, keyed by job id, with an optional TTL.

Workers save a result after a task succeeds; callers read it with ``get_result`` or wait for
it with ``wait_result``, which subscribes to database updates *before* its first check so a
result committed in between is never missed.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

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
    sub = engine.subscribe()
    try:
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            found, value = _decode(await engine.aread(engine.ops.result_get, job_id))
            if found:
                return value
            wait = FALLBACK_RECHECK_S
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"wait_result({job_id}) timed out")
                wait = min(wait, remaining)
            await sub.wait(wait)
    finally:
        sub.close()


def sweep_results(engine: Engine) -> int:
    """Delete every expired result; returns the count."""
    return int(engine.write(engine.ops.result_sweep))
