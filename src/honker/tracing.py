"""OpenTelemetry tracing of jobs (optional extra ``honker[otel]``, i.e. ``opentelemetry-api``).

Off by default. Turn it on with :func:`enable` (before enqueuing and before starting
workers) or by setting ``HONKER_OTEL=1`` in the environment (read when honker is
imported). The application configures the OpenTelemetry SDK and exporter as usual;
without an SDK the API's no-op tracer makes every span free.

* ``Queue.enqueue`` (and so every task call) opens a PRODUCER span
  ``"<queue> publish"`` and stores its W3C trace context in the extra table
  ``_honker_job_trace`` in the same transaction as the job row (so it rolls back with
  it, including inside the caller's ``tx=``).
* The worker continues the trace with a CONSUMER span ``"<queue> process"`` around the
  task, child of the producer span, with ``messaging.system``,
  ``messaging.destination.name``, ``messaging.operation.type``, ``messaging.message.id``,
  ``honker.task.name``, ``honker.job.attempt`` and ``honker.job.outcome``; a failed
  attempt sets the span status to ERROR. Sync tasks run in a thread with the span as the
  current span, so spans they open are its children.
* The worker reads a job's stored context with one primary-key read when the job
  starts (only with tracing on).
* Trace rows of jobs that left the queue (acked, dead-lettered, cancelled) are pruned by
  tracing workers in small batches (500 rows a step, every 100 finished jobs or 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "honker.tracing needs opentelemetry-api: pip install 'honker[otel]'", name=exc.name
    ) from exc

from . import _observe
from ._observe import WorkerObserver

if TYPE_CHECKING:
    from ._database import Transaction
    from .queue import Job, Queue

log = logging.getLogger("honker.tracing")

TRACER_NAME = "honker"
PRUNE_BATCH = 500
PRUNE_EVERY_JOBS = 100
PRUNE_EVERY_S = 30.0


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def is_enabled() -> bool:
    """Whether enqueues and workers are traced."""
    return _observe.enqueue_hook is not None


def enable() -> None:
    """Trace enqueues (producer spans) and every worker pool created from now on."""
    _observe.enqueue_hook = traced_enqueue
    if not any(isinstance(o, TracingObserver) for o in _observe.default_observers):
        _observe.default_observers.append(TracingObserver())


def disable() -> None:
    """Stop tracing new enqueues and new worker pools."""
    _observe.enqueue_hook = None
    _observe.default_observers[:] = [
        o for o in _observe.default_observers if not isinstance(o, TracingObserver)
    ]


def traced_enqueue(queue: Queue, args: tuple[Any, ...], tx: Transaction | None) -> int:
    """``Queue.enqueue`` with tracing on: a producer span, and the job's trace context
    written in the same transaction as the job."""
    attributes = {
        "messaging.system": "honker",
        "messaging.destination.name": queue.name,
        "messaging.operation.type": "send",
    }
    with _tracer().start_as_current_span(
        f"{queue.name} publish", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        text = json.dumps(carrier)

        ops = queue.db.engine.ops

        def write(conn: Any, *enqueue_args: Any) -> int:
            inserted = True
            if len(enqueue_args) > 7:  # with a unique key: maybe an existing job's id
                job_id, inserted = ops.enqueue_unique(conn, *enqueue_args)
            else:
                job_id = ops.enqueue(conn, *enqueue_args)
            if carrier and inserted:
                ops.job_trace_save(conn, job_id, text)
            return int(job_id)

        job_id: int = queue.db.engine.in_tx(tx, write, *args)
        span.set_attribute("messaging.message.id", str(job_id))
        return job_id


class TracingObserver(WorkerObserver):
    """Consumer spans around tasks (added to every pool by :func:`enable`)."""

    def __init__(self) -> None:
        self._spans: dict[tuple[int, str], trace.Span] = {}
        self._finished = 0
        self._pruned_at = time.monotonic()
        self._prune_after = 0
        self._pruning = False

    @contextlib.contextmanager
    def job_context(self, job: Job, task_name: str | None) -> Iterator[None]:
        """Start the consumer span (child of the producer's) and make it current."""
        try:
            stored = job.queue.db.engine.read(job.queue.db.engine.ops.job_trace_get, job.id)
            parent = propagate.extract(json.loads(stored)) if stored else None
        except (RuntimeError, ValueError):
            parent = None
        attributes: dict[str, Any] = {
            "messaging.system": "honker",
            "messaging.destination.name": job.queue_name,
            "messaging.operation.type": "process",
            "messaging.message.id": str(job.id),
            "honker.job.attempt": job.attempts,
        }
        if task_name is not None:
            attributes["honker.task.name"] = task_name
        span = _tracer().start_span(
            f"{job.queue_name} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        self._spans[(job.id, job.worker_id)] = span
        with trace.use_span(span, end_on_exit=False, record_exception=True):
            yield

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        """Record the outcome on the span and end it; now and then prune trace rows."""
        span = self._spans.pop((job.id, job.worker_id), None)
        if span is not None:
            span.set_attribute("honker.job.outcome", outcome)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error.partition("\n")[0]))
            span.end()
        if outcome in ("done", "dead", "cancelled"):
            self._finished += 1
            self._maybe_prune(job)

    def _maybe_prune(self, job: Job) -> None:
        now = time.monotonic()
        due = self._finished >= PRUNE_EVERY_JOBS or now - self._pruned_at >= PRUNE_EVERY_S
        if not due or self._pruning:
            return
        self._finished, self._pruned_at, self._pruning = 0, now, True
        db = job.queue.db

        def prune() -> None:
            try:
                _, self._prune_after = db.engine.write(
                    db.engine.ops.job_trace_prune, self._prune_after, PRUNE_BATCH
                )
            except RuntimeError as exc:
                log.warning("pruning _honker_job_trace failed: %s", exc)
            finally:
                self._pruning = False

        asyncio.get_running_loop().run_in_executor(None, prune)
