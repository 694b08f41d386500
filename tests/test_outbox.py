"""Outbox: delivery after commit, exponential backoff, dead letter with the error kept."""

from __future__ import annotations

import asyncio
import time

import pytest

import honker
from helpers import sql_for

pytestmark = pytest.mark.engines


def make_due(db: honker.Database) -> None:
    db.engine.write(
        lambda c: c.execute(sql_for(db, "UPDATE _honker_live SET run_at = unixepoch()"))
    )


async def test_failing_twice_then_succeeding_backs_off(db: honker.Database) -> None:
    calls: list[object] = []

    def deliver(payload: object) -> None:
        calls.append(payload)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")

    box = db.outbox("webhooks", deliver, base_backoff_s=10)
    assert box.queue.name == "_outbox:webhooks"
    box.enqueue({"event": "paid"})
    delays = []
    for _ in range(3):
        job = box.queue.claim_one("w")
        assert job is not None
        ok = await box.deliver(job)
        row = box.queue.get_job(job.id)
        if row is not None:
            delays.append(row["run_at"] - int(time.time()))
            make_due(db)
    assert ok is True
    assert calls == [{"event": "paid"}] * 3
    assert len(delays) == 2 and 9 <= delays[0] <= 10 and 19 <= delays[1] <= 20
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]


async def test_always_failing_ends_dead_with_its_error(db: honker.Database) -> None:
    async def deliver(payload: object) -> None:
        raise RuntimeError("endpoint says 500")

    box = db.outbox("hooks", deliver, max_attempts=2, base_backoff_s=0)
    box.enqueue("x")
    worker = asyncio.create_task(box.run_worker("w"))
    deadline = time.monotonic() + 10
    while not db.query("SELECT 1 FROM _honker_dead") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    (dead,) = db.query("SELECT queue, attempts, last_error FROM _honker_dead")
    assert dead["queue"] == "_outbox:hooks" and dead["attempts"] == 2
    assert dead["last_error"].startswith("endpoint says 500\n")
    assert "Traceback" in dead["last_error"]


async def test_outbox_enqueue_is_transactional(db: honker.Database) -> None:
    delivered: list[object] = []
    box = db.outbox("mail", delivered.append)
    with pytest.raises(ValueError), db.transaction() as tx:
        box.enqueue("rolled back", tx=tx)
        raise ValueError
    with db.transaction() as tx:
        box.enqueue("committed", tx=tx)
    worker = asyncio.create_task(box.run_worker("w"))
    deadline = time.monotonic() + 5
    while not delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert delivered == ["committed"]


def test_outbox_memoization_and_validation(db: honker.Database) -> None:
    def deliver(_: object) -> None:
        return None

    with pytest.raises(TypeError):
        db.outbox("x", "not callable")  # type: ignore[arg-type]
    box = db.outbox("x", deliver)
    assert db.outbox("x", deliver) is box
    with pytest.raises(ValueError, match="already opened"):
        db.outbox("x", lambda _: None)
    with pytest.raises(ValueError, match="already opened"):
        db.outbox("x", deliver, max_attempts=9)
    with pytest.raises(TypeError):
        db.outbox("x", 5)  # type: ignore[arg-type]
    with db.transaction(), pytest.raises(RuntimeError, match="cannot construct Queue"):
        db.outbox("fresh", deliver)
