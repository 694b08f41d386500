"""Transactional outbox: deliver side effects to external systems after your commit.

``outbox.enqueue(payload, tx=tx)`` writes a job on the queue ``_outbox:<name>`` inside your
transaction; ``run_worker`` calls ``delivery(payload)`` for each committed job, acks on
success and retries with exponential backoff (``base_backoff_s * 2**(attempt-1)``) until
the attempt budget is spent, when the job lands in ``_honker_dead`` with the error kept.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._retry import backoff_delay
from ._validate import check_str
from .queue import Job, Queue

log = logging.getLogger("honker.outbox")

if TYPE_CHECKING:
    from ._database import Database, Transaction

DEFAULT_OUTBOX_MAX_ATTEMPTS = 5
DEFAULT_OUTBOX_BASE_BACKOFF_S = 5
DEFAULT_OUTBOX_VISIBILITY_TIMEOUT_S = 60


class Outbox:
    """Delivers payloads with ``delivery`` (sync or async), retrying with backoff."""

    def __init__(
        self,
        db: Database,
        name: str,
        delivery: Callable[[Any], Any],
        max_attempts: int = DEFAULT_OUTBOX_MAX_ATTEMPTS,
        base_backoff_s: int = DEFAULT_OUTBOX_BASE_BACKOFF_S,
        visibility_timeout_s: int = DEFAULT_OUTBOX_VISIBILITY_TIMEOUT_S,
    ) -> None:
        if not callable(delivery):
            raise TypeError(f"delivery must be callable, got {type(delivery).__name__}")
        check_str(name, "outbox name")
        self.db = db
        self.name = name
        self.delivery = delivery
        self.max_attempts = int(max_attempts)
        self.base_backoff_s = int(base_backoff_s)
        self.visibility_timeout_s = int(visibility_timeout_s)
        self._queue = db.queue(
            "_outbox:" + name,
            visibility_timeout_s=self.visibility_timeout_s,
            max_attempts=self.max_attempts,
        )

    @property
    def queue(self) -> Queue:
        """The backing queue, named ``_outbox:<name>``."""
        return self._queue

    def enqueue(
        self,
        payload: Any,
        tx: Transaction | None = None,
        priority: int = 0,
        delay: float | None = None,
        run_at: float | None = None,
        expires: float | None = None,
    ) -> None:
        """Queue one delivery; with ``tx=`` it commits or rolls back with your writes."""
        self._queue.enqueue(
            payload, tx=tx, priority=priority, delay=delay, run_at=run_at, expires=expires
        )

    def backoff_s(self, attempts: int) -> int:
        """Retry delay after the ``attempts``-th failed attempt."""
        return backoff_delay(self.base_backoff_s, 2.0, attempts)

    async def deliver(self, job: Job) -> bool:
        """Run ``delivery`` for one claimed job; ack on success, else retry or dead-letter.

        Returns ``True`` when the delivery succeeded.
        """
        engine = self.db.engine
        try:
            if inspect.iscoroutinefunction(self.delivery):
                await self.delivery(job.payload)
            else:
                result = await asyncio.to_thread(self.delivery, job.payload)
                if inspect.isawaitable(result):
                    await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{exc}\n{traceback.format_exc()}"
            delay = self.backoff_s(job.attempts)
            await engine.arun(functools.partial(job.retry, delay_s=delay, error=error))
            log.warning(
                "outbox %s job %s attempt %d failed: %s", self.name, job.id, job.attempts, exc
            )
            return False
        await engine.arun(job.ack)
        return True

    async def run_worker(self, worker_id: str) -> None:
        """Deliver forever (stop by cancelling the task running this coroutine).

        Synchronous delivery functions run in a worker thread so they never block the
        event loop; coroutine functions are awaited.
        """
        async for job in self._queue.claim(worker_id):
            await self.deliver(job)

    def __repr__(self) -> str:
        return f"Outbox({self.name!r}, max_attempts={self.max_attempts})"
