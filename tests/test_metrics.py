"""honker.metrics: a live worker process scraped over HTTP, the metrics CLI, the dashboard
route, and the scrape queries' plans (indexed, no table scans)."""

from __future__ import annotations

import re
import signal
import urllib.request
from pathlib import Path

import pytest
from obs_support import CLI, app_env, cli, eventually, metrics_url, read_url, start_worker
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import honker
from helpers import Child
from honker import _ops
from honker.dashboard import create_app
from honker.metrics import database_registry, generate_latest
from honker.tasks import encode_call

pytestmark = pytest.mark.engines

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample as {(name, sorted labels): value}, via prometheus_client's parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode("utf-8"))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def fill(db: honker.Database) -> None:
    """Queue "obs": one delayed job. Queue "other" (no worker drains it): one dead, one
    processing, one pending. Stream "orders": a consumer two events behind."""
    db.queue("obs").enqueue(encode_call("quick", [1], {}), delay=3600)
    other = db.queue("other")
    for n in range(3):
        other.enqueue({"n": n})
    first = other.claim_one("test-worker")
    assert first is not None and first.fail("dead on purpose")
    assert other.claim_one("test-worker") is not None  # stays processing
    events = db.stream("orders")
    for n in range(3):
        events.publish({"n": n})
    first_offset = db.query('SELECT MIN("offset") AS o FROM _honker_stream')[0]["o"]
    events.save_offset("billing", int(first_offset))


def test_live_worker_process_serves_its_counters_and_the_database_gauges(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    fill(db)
    preamble: list[str] = []
    worker = start_worker(
        db_path,
        "--metrics-port",
        "0",
        "--heartbeat-interval",
        "0.5",
        children=children,
        preamble=preamble,
    )
    url = metrics_url(preamble[0])
    assert url is not None and preamble[0].startswith("honker worker: metrics at"), preamble
    obs = db.queue("obs")
    ok = [obs.enqueue(encode_call("quick", [n], {})) for n in range(2)]
    bad = obs.enqueue(encode_call("boom", [], {}))
    unknown = obs.enqueue(encode_call("no_such_task", [], {}))

    def finished() -> Samples | None:
        samples = scrape(url)
        done = samples.get(
            ("honker_worker_jobs_total", (("outcome", "done"), ("queue", "obs"), ("task", "quick")))
        )
        dead = samples.get(
            ("honker_worker_jobs_total", (("outcome", "dead"), ("queue", "obs"), ("task", "boom")))
        )
        return samples if done == 2 and dead == 1 else None

    samples = eventually(finished, what="the worker's counters")
    assert obs.get_job(ok[0]) is None and obs.get_job(bad) is None
    assert (
        value(samples, "honker_worker_jobs_total", queue="obs", task="no_such_task", outcome="dead")
        == 1
    )
    assert (
        value(samples, "honker_worker_task_duration_seconds_count", queue="obs", task="quick") == 2
    )
    assert (
        value(
            samples,
            "honker_worker_task_duration_seconds_bucket",
            queue="obs",
            task="quick",
            le="+Inf",
        )
        == 2
    )
    # database gauges, same scrape
    assert value(samples, "honker_queue_jobs", queue="obs", state="delayed") == 1
    assert value(samples, "honker_queue_jobs", queue="obs", state="pending") == 0
    assert value(samples, "honker_queue_jobs", queue="obs", state="dead") == 2  # boom, unknown
    assert value(samples, "honker_queue_jobs", queue="other", state="pending") == 1
    assert value(samples, "honker_queue_jobs", queue="other", state="dead") == 1
    assert value(samples, "honker_queue_jobs", queue="other", state="processing") == 1
    assert value(samples, "honker_queue_oldest_pending_age_seconds", queue="other") >= 0
    assert (
        value(samples, "honker_queue_recent_outcomes", queue="obs", outcome="done", window="1m")
        == 2
    )
    assert (
        value(samples, "honker_queue_recent_outcomes", queue="obs", outcome="dead", window="24h")
        == 2
    )
    assert value(samples, "honker_stream_consumer_lag", topic="orders", consumer="billing") == 2
    eventually(lambda: value(scrape(url), "honker_live_workers") == 1, what="live worker gauge")
    assert obs.find_job(unknown)["state"] == "dead"  # type: ignore[index]
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_metrics_cli_serves_database_gauges_until_sigint(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    fill(db)
    child = Child(CLI, "metrics", db_path, "--port", "0", env=app_env(db_path))
    children.append(child)
    url = read_url(child, "honker metrics: serving")
    samples = scrape(url)
    assert value(samples, "honker_queue_jobs", queue="other", state="dead") == 1
    assert value(samples, "honker_queue_jobs", queue="other", state="processing") == 1
    assert value(samples, "honker_live_workers") == 0
    assert not any(name.startswith("honker_worker_") for name, _ in samples)
    child.proc.send_signal(signal.SIGINT)
    assert child.wait() == 0
    assert "honker metrics: stopped" in child.drain()


def test_metrics_cli_bad_input(db_path: str, engine_kind: str) -> None:
    if engine_kind == "sqlite":  # (a URL names no file)
        missing = cli(db_path, "metrics", db_path, "--port", "0")
        assert missing.returncode == 2 and "no database file" in missing.stderr
    honker.open(db_path).close()
    port = cli(db_path, "metrics", db_path, "--port", "70000")
    assert port.returncode == 2 and "invalid port 70000" in port.stderr


def test_dashboard_metrics_route_follows_the_token_rules(db: honker.Database) -> None:
    fill(db)
    app = create_app(db, token="s3cret")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/metrics").status_code == 401
        response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = parse(response.text)
        assert value(samples, "honker_queue_jobs", queue="other", state="dead") == 1
        assert value(samples, "honker_stream_consumer_lag", topic="orders", consumer="billing") == 2


def test_database_collector_exposition_matches_a_direct_read(db: honker.Database) -> None:
    fill(db)
    samples = parse(generate_latest(database_registry(db)).decode("utf-8"))
    stats = db.queue("other").stats()
    assert value(samples, "honker_queue_jobs", queue="other", state="pending") == stats["pending"]
    assert value(samples, "honker_queue_jobs", queue="other", state="dead") == stats["dead"]


BIG_TABLES = ("_honker_live", "_honker_dead", "_honker_stream")


@pytest.mark.sqlite_only("reads SQLite's EXPLAIN QUERY PLAN")
@pytest.mark.parametrize("sql", _ops.METRICS_QUERIES)
def test_scrape_queries_read_big_tables_only_through_indexes(db: honker.Database, sql: str) -> None:
    """Job and event tables are only read through an index (the small tables
    _honker_stats, _honker_stream_consumers and _honker_workers may be scanned)."""
    fill(db)
    plan = [row["detail"] for row in db.query(f"EXPLAIN QUERY PLAN {sql}")]
    for line in plan:
        words = line.split()
        if words[0] in ("SCAN", "SEARCH") and words[1] in BIG_TABLES:
            assert re.search(r"USING (COVERING )?INDEX", line), plan


def test_the_scrape_plans_name_the_indexes(tmp_path: Path) -> None:
    plans = {}
    with honker.open(str(tmp_path / "plans.db")) as db:
        for sql in _ops.METRICS_QUERIES:
            plans[sql] = " | ".join(r["detail"] for r in db.query(f"EXPLAIN QUERY PLAN {sql}"))
    assert "_honker_live_pending_deadline" in plans[_ops.METRICS_PENDING_SQL]
    assert "_honker_live_processing_deadline" in plans[_ops.METRICS_PROCESSING_SQL]
    assert "_honker_dead_queue" in plans[_ops.METRICS_DEAD_SQL]
    assert "_honker_stream_topic" in plans[_ops.METRICS_CONSUMERS_SQL]
