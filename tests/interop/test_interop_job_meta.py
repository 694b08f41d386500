"""Issue 15, jobs: a file that uses our cancel, progress, last-error and attempt-history
tables still works for the reference: its extension claims, acks and ticks on it, and our
library reads what it left (and prunes the history of the jobs it finished)."""

from __future__ import annotations

import time

from peers import ExtPeer

import honker
from honker import TaskResult
from honker.retention import Retention, prune


def test_reference_claims_acks_and_ticks_on_a_file_with_job_metadata(
    db: honker.Database, ext_peer: ExtPeer
) -> None:
    q = db.queue("meta")
    ops = db.engine.ops
    retried = q.enqueue({"n": 1})
    running = q.enqueue({"n": 2})
    pending = q.enqueue({"n": 3})
    [first] = q.claim_batch("us", 1)
    assert first.id == retried
    now = time.time()
    # our worker's path: a retry with its error and its attempt row
    assert db.engine.write(
        ops.apply_outcomes,
        "us",
        [("retry", retried, 3600, "upstream 503")],
        [(retried, 1, "us", now, now, 0.0, "upstream 503")],
    ) == [True]
    [held] = q.claim_batch("us", 1)
    assert held.id == running
    db.engine.write(ops.progress_save_many, [(running, 0.5, "half")])
    assert q.cancel(running)  # a request waits for our worker
    assert q.cancel(pending)  # cancelled at once
    honker.Scheduler(db).add(name="hourly", queue="meta", schedule="@every 3600s")
    assert q.get_job(retried)["last_error"] == "upstream 503"  # type: ignore[index]

    assert ext_peer("bootstrap") == 1
    assert ext_peer("sql", sql="PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    # the reference claims the retried job once due (ours still holds the other) and acks it
    ext_peer("sql", sql=f"UPDATE _honker_live SET run_at = 0 WHERE id = {retried}", write=True)
    [claimed] = ext_peer("claim", queue="meta", worker="ref", n=10)
    assert (claimed["id"], claimed["attempts"]) == (retried, 2)
    assert ext_peer("ack", id=retried, worker="ref") == 1
    # it also finishes the job we were asked to cancel, once our claim lapsed
    ext_peer("sql", sql="UPDATE _honker_live SET claim_expires_at = 0", write=True)
    [taken] = ext_peer("claim", queue="meta", worker="ref", n=10)
    assert taken["id"] == running
    assert ext_peer("ack", id=running, worker="ref") == 1
    soonest = ext_peer("scheduler_soonest")
    fires = ext_peer("scheduler_tick", now=soonest)
    assert [f["name"] for f in fires] == ["hourly"]

    # our library reads what the reference left
    fired = q.claim_batch("us", 10)
    assert [j.id for j in fired] == [fires[0]["job_id"]]
    assert TaskResult(db, q, pending).status() == "cancelled"
    assert TaskResult(db, q, retried).status() == "done"  # acked elsewhere: gone, no result
    assert [h["outcome"] for h in q.job_attempts(retried)] == ["retried"]
    assert q.progress(running) == {
        "fraction": 0.5,
        "message": "half",
        "updated_at": q.progress(running)["updated_at"],  # type: ignore[index]
    }
    # the history of the jobs the reference finished is pruned like any gone job's
    with db.transaction() as tx:
        tx.execute("UPDATE _honker_job_attempts SET ended_at = ended_at - 90000")
        tx.execute("UPDATE _honker_job_progress SET updated_at = updated_at - 90000")
        tx.execute("UPDATE _honker_job_errors SET at = at - 90000")
        tx.execute("UPDATE _honker_job_cancel SET requested_at = requested_at - 90000")
        tx.execute("UPDATE _honker_job_cancel SET cancelled_at = cancelled_at - 90000")
    assert prune(db.engine, Retention())["history"] == 5
    assert q.job_attempts(retried) == [] and q.progress(running) is None
    assert ext_peer("sql", sql="PRAGMA integrity_check") == [{"integrity_check": "ok"}]
