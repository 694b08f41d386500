"""Prometheus metrics (optional extra ``honker[metrics]``, i.e. ``prometheus_client``).

Two sources, both exposed with ``prometheus_client``'s own exposition:

* :class:`DatabaseCollector` reads the database at every scrape, with a handful of indexed
  queries in one read transaction: queue depth by state, age of the oldest due job,
  recent outcomes from ``_honker_stats``, stream consumer lag and the number of live
  workers. It works from any process that can open the file.
* :class:`WorkerMetrics` is a :class:`~honker._observe.WorkerObserver` that counts what
  this worker process did (outcomes by queue and task) and times its tasks.

Served by ``GET /metrics`` on the dashboard, ``python -m honker metrics DB --port P`` and
``python -m honker worker TARGET --metrics-port P``. Metric names: docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "honker.metrics needs prometheus_client: pip install 'honker[metrics]'",
        name=exc.name,
    ) from exc

from ._observe import WorkerObserver

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ._database import Database
    from .queue import Job

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DatabaseCollector",
    "WorkerMetrics",
    "database_registry",
    "generate_latest",
    "serve_metrics",
]

OUTCOME_WINDOWS = (("1m", 1, 2), ("1h", 3, 4), ("24h", 5, 6))

# Task durations: 5 ms .. 10 min.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape (register it in a CollectorRegistry).

    ``honker_queue_jobs{queue,state}`` (pending, delayed, processing, dead),
    ``honker_queue_oldest_pending_age_seconds{queue}``,
    ``honker_queue_recent_outcomes{queue,outcome,window}`` (done/dead over 1m, 1h, 24h),
    ``honker_stream_consumer_lag{topic,consumer}``,
    ``honker_stream_consumer_offset{topic,consumer}`` and ``honker_live_workers``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One consistent read of the database, as metric families."""
        snap = self.db.engine.read(self.db.engine.ops.metrics_snapshot)
        jobs = GaugeMetricFamily(
            "honker_queue_jobs", "Jobs in the queue by state", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "honker_queue_oldest_pending_age_seconds",
            "Seconds the oldest due pending job has been waiting (0 when none)",
            labels=["queue"],
        )
        queues: set[str] = set()
        for queue, due, delayed, min_run_at, now in snap["pending"]:
            queues.add(queue)
            jobs.add_metric([queue, "pending"], int(due or 0))
            jobs.add_metric([queue, "delayed"], int(delayed or 0))
            age = max(0, now - min_run_at) if due else 0
            oldest.add_metric([queue], age)
        processing: dict[str, int] = dict(snap["processing"])
        dead: dict[str, int] = dict(snap["dead"])
        for queue in sorted(set(processing) | set(dead) | queues):
            if queue not in queues:
                jobs.add_metric([queue, "pending"], 0)
                jobs.add_metric([queue, "delayed"], 0)
                oldest.add_metric([queue], 0)
            jobs.add_metric([queue, "processing"], int(processing.get(queue, 0)))
            jobs.add_metric([queue, "dead"], int(dead.get(queue, 0)))
        yield jobs
        yield oldest

        recent = GaugeMetricFamily(
            "honker_queue_recent_outcomes",
            "Jobs done or dead-lettered within the window (from _honker_stats, all workers)",
            labels=["queue", "outcome", "window"],
        )
        for row in snap["outcomes"]:
            for window, done_col, dead_col in OUTCOME_WINDOWS:
                recent.add_metric([row[0], "done", window], int(row[done_col] or 0))
                recent.add_metric([row[0], "dead", window], int(row[dead_col] or 0))
        yield recent

        lag = GaugeMetricFamily(
            "honker_stream_consumer_lag",
            "Events of the topic after the consumer's saved offset",
            labels=["topic", "consumer"],
        )
        offset = GaugeMetricFamily(
            "honker_stream_consumer_offset",
            "The consumer's saved offset",
            labels=["topic", "consumer"],
        )
        for topic, name, saved, behind in snap["consumers"]:
            lag.add_metric([topic, name], int(behind))
            offset.add_metric([topic, name], int(saved))
        yield lag
        yield offset

        yield GaugeMetricFamily(
            "honker_live_workers",
            "Worker processes that heartbeated within their last three intervals",
            value=int(snap["workers"][0][0]),
        )


def database_registry(db: Database) -> CollectorRegistry:
    """A fresh registry holding a :class:`DatabaseCollector` for ``db``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


class WorkerMetrics(WorkerObserver):
    """This worker process's own counters, as a pool observer.

    ``honker_worker_jobs_total{queue,task,outcome}`` (outcome: done, retried, dead,
    cancelled, lapsed, released; "failed" = retried + dead) and the histogram
    ``honker_worker_task_duration_seconds{queue,task}``. Registered in ``registry``
    (default: a new one, as ``self.registry``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs = Counter(
            "honker_worker_jobs",
            "Jobs this worker process finished, by outcome",
            ["queue", "task", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "honker_worker_task_duration_seconds",
            "Time from handing a job to its task until its outcome was known",
            ["queue", "task"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        """Count the outcome and observe the duration."""
        task = task_name or ""
        self.jobs.labels(job.queue_name, task, outcome).inc()
        if outcome != "released":
            self.duration.labels(job.queue_name, task).observe(duration_s)


def serve_metrics(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0
) -> WSGIServer:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (read it from ``server.server_port``); stop with
    ``server.shutdown()``.
    """
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
