"""honker.tracing: a producer span in one process, its consumer span in a worker process
(OpenTelemetry SDK with in-memory exporters writing spans to files), the trace context
written in the enqueue's own transaction, and the pruning of trace rows."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from obs_support import app_env, eventually, start_worker

import honker
from helpers import Child

pytestmark = pytest.mark.engines

PRODUCER = """
import json
from apps import obsapp
from honker import tracing
assert tracing.is_enabled()  # by HONKER_OTEL=1
result = obsapp.quick(21)
print(json.dumps({"job": result.id}))
"""

ROLLBACK = """
import json
from apps import obsapp
from honker import tracing
tracing.enable()
q = obsapp.obs
try:
    with obsapp.db.transaction() as tx:
        q.enqueue({"x": 1}, tx=tx)
        raise KeyError("roll back")
except KeyError:
    pass
def count(table):
    return obsapp.db.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
after_rollback = [count("_honker_live"), count("_honker_job_trace")]
with obsapp.db.transaction() as tx:
    kept = q.enqueue({"x": 2}, tx=tx)
rows = obsapp.db.query("SELECT job_id, carrier FROM _honker_job_trace")
tracing.disable()
plain = q.enqueue({"x": 3})
print(json.dumps({"after_rollback": after_rollback, "kept": kept, "rows": rows,
                  "after_disable": count("_honker_job_trace"), "plain": plain}))
"""


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_consumer_span_in_the_worker_continues_the_producer_span(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    produced, consumed = tmp_path / "producer.jsonl", tmp_path / "worker.jsonl"
    producer = Child(
        PRODUCER, env=app_env(db_path, HONKER_OTEL="1", HONKER_TEST_SPANS=str(produced))
    )
    children.append(producer)
    job_id = json.loads(producer.readline())["job"]
    assert producer.wait() == 0, producer.stderr
    stored = db.query("SELECT job_id, carrier FROM _honker_job_trace")
    assert [r["job_id"] for r in stored] == [job_id]
    assert "traceparent" in json.loads(stored[0]["carrier"])

    worker = start_worker(
        db_path,
        "--otel",
        "--no-register",
        env=app_env(db_path, HONKER_TEST_SPANS=str(consumed)),
        children=children,
    )
    queue = db.queue("obs")
    assert eventually(lambda: queue.get_result(job_id)[0], what="the job's result")
    assert queue.get_result(job_id) == (True, 42)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.stderr

    [send] = spans(produced)
    assert send["kind"] == "PRODUCER" and send["name"] == "obs publish"
    assert send["attributes"]["messaging.message.id"] == str(job_id)
    assert send["attributes"]["messaging.destination.name"] == "obs"
    by_name = {s["name"]: s for s in spans(consumed)}
    process = by_name["obs process"]
    assert process["kind"] == "CONSUMER"
    assert process["trace_id"] == send["trace_id"]
    assert process["parent_id"] == send["span_id"]
    assert process["attributes"] == {
        "messaging.system": "honker",
        "messaging.destination.name": "obs",
        "messaging.operation.type": "process",
        "messaging.message.id": str(job_id),
        "honker.job.attempt": 1,
        "honker.task.name": "quick",
        "honker.job.outcome": "done",
    }
    assert process["status"] == "UNSET"
    inner = by_name["inside quick"]  # opened by the sync task in its worker thread
    assert inner["parent_id"] == process["span_id"]
    assert inner["trace_id"] == send["trace_id"]


def test_failed_attempt_marks_the_consumer_span_as_error(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    consumed = tmp_path / "worker.jsonl"
    env = app_env(db_path, HONKER_OTEL="1", HONKER_TEST_SPANS=str(consumed))
    worker = start_worker(db_path, "--no-register", env=env, children=children)
    from honker.tasks import encode_call

    job_id = db.queue("obs").enqueue(encode_call("boom", [], {}))  # untraced producer
    assert eventually(
        lambda: (db.queue("obs").find_job(job_id) or {}).get("state") == "dead",
        what="the job dead-lettered",
    )
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.stderr
    [process] = [s for s in spans(consumed) if s["name"] == "obs process"]
    assert process["parent_id"] is None  # no stored context: a new trace
    assert process["status"] == "ERROR"
    assert process["attributes"]["honker.job.outcome"] == "dead"
    assert process["attributes"]["honker.task.name"] == "boom"


def test_trace_context_is_written_in_the_enqueue_transaction(
    db: honker.Database, db_path: str, tmp_path: Path
) -> None:
    child = Child(ROLLBACK, env=app_env(db_path, HONKER_TEST_SPANS=str(tmp_path / "s.jsonl")))
    out = json.loads(child.readline())
    assert child.wait() == 0, child.stderr
    assert out["after_rollback"] == [0, 0]
    assert [r["job_id"] for r in out["rows"]] == [out["kept"]]
    assert "traceparent" in json.loads(out["rows"][0]["carrier"])
    assert out["after_disable"] == 1  # the untraced enqueue wrote no context


def test_prune_walks_in_bounded_steps_and_keeps_live_jobs(db: honker.Database) -> None:
    q = db.queue("obs")
    live = [q.enqueue({"n": n}) for n in range(5)]
    for job_id in range(1000, 1012):  # jobs no longer in _honker_live (acked, dead...)
        db.engine.write(db.engine.ops.job_trace_save, job_id, "{}")
    for job_id in live:
        db.engine.write(db.engine.ops.job_trace_save, job_id, "{}")
    assert db.engine.write(db.engine.ops.job_trace_prune, 0, 10) == (
        5,
        1004,
    )  # 5 live rows + 5 gone
    assert db.engine.write(db.engine.ops.job_trace_prune, 1004, 10) == (
        7,
        0,
    )  # the rest; wraps around
    left = [r["job_id"] for r in db.query("SELECT job_id FROM _honker_job_trace ORDER BY 1")]
    assert left == live


def test_tracing_is_off_by_default(db: honker.Database) -> None:
    from honker import _observe, tracing

    assert not tracing.is_enabled() and _observe.enqueue_hook is None
    db.queue("obs").enqueue({"x": 1})
    assert db.query("SELECT COUNT(*) AS n FROM _honker_job_trace") == [{"n": 0}]
