"""Jobs on one file, both directions: what one side enqueues the other claims, acks, retries
and dead-letters; claims, visibility and heartbeats are honoured across implementations.

``peer`` is the reference's loadable extension (``ext``) or its Node binding (``node``);
``db`` is our library on the same file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from peers import ExtPeer, NodePeer

import honker
from honker.tasks import ENVELOPE_KEY


@pytest.fixture(params=["ext", "node"])
def peer(request: pytest.FixtureRequest, db: honker.Database) -> ExtPeer | NodePeer:
    # `db` first: our library creates the file (the extension does not bootstrap on load).
    fixture: ExtPeer | NodePeer = request.getfixturevalue(f"{request.param}_peer")
    return fixture


def dead_rows(db: honker.Database) -> dict[int, tuple[Any, ...]]:
    rows = db.query("SELECT id, queue, attempts, last_error FROM _honker_dead")
    return {r["id"]: (r["queue"], r["attempts"], r["last_error"]) for r in rows}


def test_reference_processes_jobs_we_enqueued(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    q = db.queue("emails")
    low = q.enqueue({"to": "low@example.com", "tags": ["a", "b"]})
    high = q.enqueue("a plain string", priority=9)
    mid = q.enqueue([1, 2.5, None, True], priority=5)
    delayed = q.enqueue({"later": True}, delay=3600)
    expired = q.enqueue({"gone": True}, expires=0)

    first, rest, ack, retry, fail = peer(
        "batch",
        ops=[
            {"op": "claim", "args": {"queue": "emails", "worker": "ref", "n": 2, "visibility": 60}},
            {"op": "claim", "args": {"queue": "emails", "worker": "ref", "n": 10}},
            {"op": "ack", "args": {"id": high, "worker": "ref"}},
            {"op": "retry", "args": {"id": mid, "worker": "ref", "delay": 0, "error": "later"}},
            {"op": "fail", "args": {"id": low, "worker": "ref", "error": "bad address"}},
        ],
    )
    # The claim picks by priority; the reference lists a batch in id order, ours in claim
    # order (the contract leaves the array order open), so compare sets within a batch.
    assert {j["id"] for j in first} == {high, mid} and [j["id"] for j in rest] == [low]
    claimed = {j["id"]: j for j in first + rest}
    payloads = {i: json.loads(j["payload"]) for i, j in claimed.items()}
    assert payloads == {
        high: "a plain string",
        mid: [1, 2.5, None, True],
        low: {"to": "low@example.com", "tags": ["a", "b"]},
    }
    assert {j["worker_id"] for j in claimed.values()} == {"ref"}
    assert {j["attempts"] for j in claimed.values()} == {1}
    assert (ack, retry, fail) == (1, 1, 1)

    assert q.get_job(high) is None
    again = q.get_job(mid)
    assert again is not None and again["state"] == "pending" and again["attempts"] == 1
    assert dead_rows(db)[low] == ("emails", 1, "bad address")
    assert q.get_job(delayed)["state"] == "pending"  # type: ignore[index]
    assert q.get_job(expired) is not None and q.sweep_expired() == 1
    assert dead_rows(db)[expired] == ("emails", 0, "expired")

    job = q.claim_one("us")  # the retried job, second attempt
    assert job is not None and job.id == mid and job.attempts == 2
    assert job.payload == [1, 2.5, None, True] and job.ack()


def test_we_process_jobs_the_reference_enqueued(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    ids = peer(
        "batch",
        ops=[
            {"op": "enqueue", "args": {"queue": "work", "payload": {"n": 1}}},
            {"op": "enqueue", "args": {"queue": "work", "payload": {"n": 2}, "priority": 3}},
            {"op": "enqueue", "args": {"queue": "work", "payload": {"n": 3}, "max_attempts": 2}},
            {"op": "enqueue", "args": {"queue": "work", "payload": '"text"', "delay": 3600}},
        ],
    )
    q = db.queue("work")
    jobs = q.claim_batch("us", 10)
    assert [j.id for j in jobs] == [ids[1], ids[0], ids[2]]  # priority, then id
    assert [j.payload for j in jobs] == [{"n": 2}, {"n": 1}, {"n": 3}]
    assert jobs[2].max_attempts == 2
    assert q.next_claim_at() > 0 and q.get_job(ids[3])["payload"] == '"text"'  # type: ignore[index]
    assert jobs[0].ack()
    assert jobs[1].fail("broken")
    assert jobs[2].retry(delay_s=0, error="try again")

    # The reference picks the retried job up (attempt 2 = its budget) and retries it:
    # over budget, it is dead-lettered with the reference's error text.
    [claimed] = peer("claim", queue="work", worker="ref", n=5)
    assert claimed["id"] == ids[2] and claimed["attempts"] == 2
    assert peer("retry", id=ids[2], worker="ref", delay=0, error="gave up") == 1
    dead = dead_rows(db)
    assert dead[ids[0]] == ("work", 1, "broken") and dead[ids[2]] == ("work", 2, "gave up")
    assert peer("get_job", id=ids[1]) is None  # acked: gone for the reference too
    assert [
        d["state"] for d in db.query("SELECT state FROM _honker_jobs WHERE id = ?", [ids[2]])
    ] == ["dead"]


def test_claims_visibility_and_heartbeats_across_implementations(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    q = db.queue("vis", visibility_timeout_s=300)
    job_id = q.enqueue({"v": 1})
    job = q.claim_one("us")
    assert job is not None
    assert peer("claim", queue="vis", worker="ref") == []  # our claim is respected
    assert peer("heartbeat", id=job_id, worker="ref", extend=600) == 0
    assert peer("ack", id=job_id, worker="ref") == 0
    assert peer("next_claim_at", queue="vis") == q.next_claim_at() == job.claim_expires_at + 1
    with db.transaction() as tx:  # our claim lapses
        tx.execute(
            "UPDATE _honker_live SET claim_expires_at = unixepoch() - 1 WHERE id = ?", [job_id]
        )
    [reclaimed] = peer("claim", queue="vis", worker="ref", visibility=300)
    assert reclaimed["attempts"] == 2
    assert not job.ack() and not job.heartbeat()  # the reference holds it now
    assert peer("heartbeat", id=job_id, worker="ref", extend=900) == 1
    got = q.get_job(job_id)
    assert got is not None and got["worker_id"] == "ref"
    assert got["claim_expires_at"] >= reclaimed["claim_expires_at"] + 500
    assert q.cancel(job_id)  # a cancel request: the reference's worker does not read it
    assert peer("get_job", id=job_id) is not None
    assert q.cancel(job_id, force=True)  # deleted under the reference's worker
    assert peer("get_job", id=job_id) is None


def test_ack_batch_cancel_and_sweep_across_implementations(
    db: honker.Database, peer: ExtPeer | NodePeer
) -> None:
    q = db.queue("b")
    ids = [q.enqueue(i) for i in range(3)]
    claimed = q.claim_batch("w", 3)
    assert [j.id for j in claimed] == ids
    keep = q.enqueue("keep")
    expired = peer("enqueue", queue="b", payload="1", expires=0)
    assert peer("ack_batch", ids=[*ids, keep], worker="w") == 3
    assert peer("sweep_expired", queue="b") == 1
    assert dead_rows(db)[expired] == ("b", 0, "expired")
    assert [j["id"] for j in db.query("SELECT id FROM _honker_live")] == [keep]
    assert peer("cancel", id=keep) == 1 and q.get_job(keep) is None
    # done/dead counters are ours only; the reference's acks are simply not counted
    assert q.stats()["dead"] == 1


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(honker.registry()._by_name)
    yield
    honker.registry()._by_name.clear()
    honker.registry()._by_name.update(saved)


@pytest.mark.usefixtures("clean_registry")
def test_task_envelope_both_ways(db: honker.Database, ext_peer: ExtPeer) -> None:
    q = db.queue("tasks")

    @q.task(name="interop.add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    result = add.apply_async((2,), {"b": 3}, priority=1)
    [job] = ext_peer("claim", queue="tasks", worker="ref")
    envelope = json.loads(job["payload"])
    assert envelope == {ENVELOPE_KEY: {"task": "interop.add", "args": [2], "kwargs": {"b": 3}}}
    # a reference worker ran it: result + ack, in one transaction each
    assert ext_peer("result_save", job_id=job["id"], value=5, ttl=60) == 1
    assert ext_peer("ack", id=job["id"], worker="ref") == 1
    assert result.get(timeout=10) == 5

    # and the other way: a reference producer enqueues the envelope, our worker runs it
    job_id = ext_peer(
        "enqueue",
        queue="tasks",
        payload={ENVELOPE_KEY: {"task": "interop.add", "args": [40, 2], "kwargs": {}}},
    )
    async def work_until_result() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(honker.run_workers(db, "tasks", stop_event=stop))
        try:
            await q.wait_result(job_id, timeout=20)
        finally:
            stop.set()
            await runner

    asyncio.run(work_until_result())
    assert json.loads(ext_peer("result_get", job_id=job_id)) == 42
    assert ext_peer("get_job", id=job_id) is None
