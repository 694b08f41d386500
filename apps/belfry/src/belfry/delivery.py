"""Delivery workers: claim ``belfry`` jobs, publish to ntfy, record every attempt.

The workers are a :class:`honker.worker.WorkerPool` (claim loop woken by commits and due
times, ``concurrency`` jobs in flight, graceful shutdown that hands unfinished jobs back)
whose :meth:`~DeliveryPool.dispatch` is belfry's own. Delivery jobs are plain honker jobs
rather than ``@queue.task`` functions because the outcome of an attempt needs the job
itself: a task handler cannot dead-letter its job at once, and ntfy's 400/401/403/413
answers must not be retried. So, per attempt:

* 2xx: the job is acked, the attempt recorded and a one-off reminder marked ``done``, all
  in one transaction (``job.ack(tx=...)``).
* 429, 5xx, timeouts, connection errors: ``job.retry(delay)`` with ``delay`` = the
  server's ``Retry-After`` (rounded up to honker's whole seconds) or the backoff
  ``retry_delay * 2^(attempt-1)`` capped at ``retry_max_delay``; once the job's attempt
  budget is spent it is dead-lettered instead.
* 400, 401, 403, 413 (any other 4xx, a message over 4,096 bytes): ``job.fail(error)``
  straight away; the job sits in honker's ``_honker_dead`` with the server's error as
  ``last_error`` and ``belfry retry`` can requeue it after the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any, Literal

import honker
from honker.worker import Heartbeat, WorkerPool, backoff_delay

from .config import Settings
from .ntfy import Notification, NtfyConfig, NtfyPublisher, PublishResult
from .store import QUEUE, Belfry, schedule_name

log = logging.getLogger("belfry.delivery")


def ntfy_config(settings: Settings) -> NtfyConfig:
    """The publisher configuration of ``settings``."""
    form: Literal["headers", "json"] = "json" if settings.ntfy_format == "json" else "headers"
    return NtfyConfig(
        base_url=settings.ntfy_url,
        token=settings.ntfy_token,
        user=settings.ntfy_user,
        password=settings.ntfy_password,
        form=form,
        timeout_s=settings.http_timeout_s,
    )


def retry_delay(settings: Settings, attempt: int) -> int:
    """Seconds before retrying after failed attempt number ``attempt`` (1-based): honker's
    backoff rule doubling ``retry_delay_s``, capped at ``retry_max_delay_s``."""
    delay = backoff_delay(settings.retry_delay_s, 2.0, attempt)
    return min(delay, math.ceil(settings.retry_max_delay_s))


class Deliverer:
    """Runs one delivery job: checks it against its reminder, publishes, records."""

    def __init__(self, belfry: Belfry, publisher: NtfyPublisher) -> None:
        self.belfry = belfry
        self.db = belfry.db
        self.settings = belfry.settings
        self.publisher = publisher
        self.sql = belfry.sql

    async def run(self, job: honker.Job) -> None:
        """Handle one claimed job to its end (ack, retry or dead letter)."""
        try:
            payload = job.payload
            reminder_id = int(payload["reminder_id"])
            trigger = str(payload.get("trigger", "schedule"))
        except (ValueError, TypeError, KeyError) as exc:
            job.fail(f"not a belfry delivery job: {exc!r}")
            return
        reminder = self.belfry.row(reminder_id)
        skip = _skip_reason(reminder, job.id, trigger)
        if skip is not None:
            if reminder is not None and skip == "paused":
                self._record_skip(job, reminder_id, trigger, "reminder is paused")
            else:
                with self.db.transaction() as tx:
                    job.ack(tx=tx)
                    if reminder is None and trigger == "schedule":
                        # A schedule without its reminder (only a file written before
                        # deletes were one transaction has one): stop it firing.
                        self.belfry.scheduler.remove(schedule_name(reminder_id), tx=tx)
            log.info("job %s for reminder %s skipped: %s", job.id, reminder_id, skip)
            return
        assert reminder is not None
        attempt_id = self._begin(job, reminder_id, trigger)
        note = Notification(
            topic=reminder["topic"],
            message=reminder["message"],
            title=reminder["title"],
            tags=_tags(reminder["tags"]),
            priority=int(reminder["priority"]),
            click=reminder["click"],
        )
        heartbeat = Heartbeat(job)
        try:
            result = await self.publisher.publish(note)
        except asyncio.CancelledError:
            self._finish(attempt_id, "interrupted", None, "worker stopped during delivery")
            raise
        finally:
            heartbeat.cancel()
        if result.outcome == "delivered":
            self._delivered(job, reminder, trigger, attempt_id, result)
        elif result.outcome == "retry" and job.attempts < job.max_attempts:
            self._retry(job, reminder_id, attempt_id, result)
        else:
            self._dead(job, reminder, trigger, attempt_id, result)

    # -- outcomes ------------------------------------------------------------------------
    def _begin(self, job: honker.Job, reminder_id: int, trigger: str) -> int:
        now = time.time()
        with self.db.transaction() as tx:
            tx.execute(
                self.sql(
                    "UPDATE belfry_deliveries SET status = 'interrupted', finished_at = ?, "
                    "error = COALESCE(error, 'worker stopped during delivery (crash or kill); "
                    "retried') WHERE job_id = ? AND status = 'sending'"
                ),
                [now, job.id],
            )
            rows = tx.query(
                self.sql(
                    "INSERT INTO belfry_deliveries (reminder_id, job_id, attempt, trigger, status, "
                    "started_at) VALUES (?, ?, ?, ?, 'sending', ?) RETURNING id"
                ),
                [reminder_id, job.id, job.attempts, trigger, now],
            )
            self.belfry.prune_history(tx, reminder_id)
        return int(rows[0]["id"])

    def _finish(
        self,
        attempt_id: int,
        status: str,
        result: PublishResult | None,
        error: str | None = None,
        retry_at: int | None = None,
        tx: honker.Transaction | None = None,
    ) -> None:
        sql = self.sql(
            "UPDATE belfry_deliveries SET status = ?, http_status = ?, error = ?, ntfy_id = ?, "
            "finished_at = ?, retry_at = ? WHERE id = ?"
        )
        params = [
            status,
            None if result is None else result.http_status,
            error if error is not None else (None if result is None else result.error),
            None if result is None else result.ntfy_id,
            time.time(),
            retry_at,
            attempt_id,
        ]
        if tx is not None:
            tx.execute(sql, params)
            return
        with self.db.transaction() as own:
            own.execute(sql, params)

    def _settle(
        self,
        tx: honker.Transaction,
        job: honker.Job,
        reminder: dict[str, Any],
        trigger: str,
        state: str,
    ) -> None:
        """A one-off reminder ends in ``state``; a snooze delivery clears the snooze."""
        if trigger == "once":
            tx.execute(
                self.sql(
                    "UPDATE belfry_reminders SET state = ?, updated_at = ? WHERE id = ? "
                    "AND job_id = ?"
                ),
                [state, time.time(), reminder["id"], job.id],
            )
        elif trigger == "snooze":
            tx.execute(
                self.sql(
                    "UPDATE belfry_reminders SET snoozed_until = NULL WHERE id = ? "
                    "AND snooze_job_id = ?"
                ),
                [reminder["id"], job.id],
            )

    def _delivered(
        self,
        job: honker.Job,
        reminder: dict[str, Any],
        trigger: str,
        attempt_id: int,
        result: PublishResult,
    ) -> None:
        with self.db.transaction() as tx:
            if not job.ack(tx=tx):
                log.warning("job %s: claim had lapsed before the ack (delivered anyway)", job.id)
            self._finish(attempt_id, "delivered", result, tx=tx)
            tx.execute(
                self.sql(
                    "UPDATE belfry_reminders SET delivered_count = delivered_count + 1 WHERE id = ?"
                ),
                [reminder["id"]],
            )
            self._settle(tx, job, reminder, trigger, "done")
        log.info(
            "reminder %s delivered to %s (job %s, attempt %s, ntfy id %s)",
            reminder["id"],
            reminder["topic"],
            job.id,
            job.attempts,
            result.ntfy_id,
        )

    def _retry(
        self, job: honker.Job, reminder_id: int, attempt_id: int, result: PublishResult
    ) -> None:
        if result.retry_after_s is not None:
            # honker's clock has whole seconds: +1 guarantees at least Retry-After.
            delay = math.ceil(result.retry_after_s) + 1
        else:
            delay = retry_delay(self.settings, job.attempts)
        retry_at = int(time.time()) + delay
        with self.db.transaction() as tx:  # the attempt record and the retry commit together
            self._finish(attempt_id, "retrying", result, retry_at=retry_at, tx=tx)
            job.retry(delay, result.error or "retry", tx=tx)
        log.warning(
            "reminder %s: attempt %s failed (%s); retrying in %ss",
            reminder_id,
            job.attempts,
            result.error,
            delay,
        )

    def _dead(
        self,
        job: honker.Job,
        reminder: dict[str, Any],
        trigger: str,
        attempt_id: int,
        result: PublishResult,
    ) -> None:
        error = result.error or "delivery failed"
        if result.outcome == "retry":
            error = f"gave up after {job.attempts} attempts: {error}"
        with self.db.transaction() as tx:  # record, dead letter and reminder state at once
            self._finish(attempt_id, "dead", result, error=error, tx=tx)
            job.fail(error, tx=tx)
            self._settle(tx, job, reminder, trigger, "failed")
        log.error("reminder %s: delivery dead-lettered: %s", reminder["id"], error)

    def _record_skip(self, job: honker.Job, reminder_id: int, trigger: str, why: str) -> None:
        now = time.time()
        with self.db.transaction() as tx:
            job.ack(tx=tx)
            tx.execute(
                self.sql(
                    "INSERT INTO belfry_deliveries (reminder_id, job_id, attempt, trigger, status, "
                    "error, started_at, finished_at) VALUES (?, ?, ?, ?, 'skipped', ?, ?, ?)"
                ),
                [reminder_id, job.id, job.attempts, trigger, why, now, now],
            )
            self.belfry.prune_history(tx, reminder_id)


def _skip_reason(reminder: dict[str, Any] | None, job_id: int, trigger: str) -> str | None:
    """Why a job must not be delivered (``None``: deliver it)."""
    if reminder is None:
        return "reminder deleted"
    if trigger == "manual":
        return None
    if trigger == "once" and (reminder["kind"] != "once" or reminder["job_id"] != job_id):
        return "superseded (rescheduled, paused or edited)"
    if trigger == "snooze" and reminder["snooze_job_id"] != job_id:
        return "superseded by a later snooze"
    if trigger == "schedule" and reminder["kind"] == "once":
        return "superseded (no longer recurring)"
    if reminder["state"] == "paused":
        return "paused"
    return None


def _tags(raw: Any) -> list[str]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return [str(t) for t in value] if isinstance(value, list) else []


class DeliveryPool(WorkerPool):
    """honker's worker pool on queue ``belfry``, dispatching to a :class:`Deliverer`."""

    def __init__(self, belfry: Belfry, publisher: NtfyPublisher, grace_period_s: float) -> None:
        super().__init__(
            belfry.db,
            queues=[QUEUE],
            concurrency=belfry.settings.concurrency,
            grace_period_s=grace_period_s,
        )
        self.deliverer = Deliverer(belfry, publisher)

    async def dispatch(self, job: honker.Job) -> None:
        """Deliver one job (replaces honker's task-name dispatch)."""
        try:
            await self.deliverer.run(job)
        except Exception:
            log.exception("job %s: unexpected error; leaving it to be retried", job.id)
            with contextlib.suppress(RuntimeError):
                job.retry(retry_delay(self.deliverer.settings, job.attempts), "internal error")


async def run_workers(belfry: Belfry, stop: asyncio.Event, grace_period_s: float = 10.0) -> None:
    """Deliver reminders until ``stop`` is set."""
    publisher = NtfyPublisher(ntfy_config(belfry.settings))
    try:
        await DeliveryPool(belfry, publisher, grace_period_s).run(stop)
    finally:
        await publisher.aclose()
