"""Long chaos runs, excluded from the default suite: `make soak` (pytest -m slow)."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

import honker
from helpers import Child

pytestmark = pytest.mark.slow

CHAOS_WORKER = """
import asyncio, random, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    q = db.queue("chaos", visibility_timeout_s=2, max_attempts=1000)
    rng = random.Random()
    async for job in q.claim(sys.argv[2], idle_poll_s=0.5):
        if rng.random() < 0.01:
            await asyncio.sleep(0.05)  # a slow job now and then: killed mid-work more often
        job.ack()

asyncio.run(main())
"""


def test_workers_sigkilled_at_random_lose_no_job(db_path: str, children: list[Child]) -> None:
    db = honker.open(db_path)
    q = db.queue("chaos", visibility_timeout_s=2, max_attempts=1000)
    total = 30_000
    for start in range(0, total, 500):
        with db.transaction() as tx:
            for i in range(start, start + 500):
                q.enqueue(i, tx=tx)
    rng = random.Random(1234)
    workers = [Child(CHAOS_WORKER, db_path, f"w{i}") for i in range(4)]
    children.extend(workers)
    kills = 0
    deadline = time.monotonic() + 240
    while db.query("SELECT COUNT(*) AS n FROM _honker_live")[0]["n"] > 0:
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(rng.uniform(0.2, 1.0))
        victim = rng.randrange(len(workers))
        os.kill(workers[victim].pid, signal.SIGKILL)
        workers[victim].wait()
        kills += 1
        workers[victim] = Child(CHAOS_WORKER, db_path, f"w{victim}-{kills}")
        children.append(workers[victim])
    assert kills >= 5
    assert db.query("SELECT COUNT(*) AS n FROM _honker_dead") == [{"n": 0}]
    done = db.queue("chaos").stats()
    assert done["pending"] == 0 and done["processing"] == 0
    acked = db.query("SELECT SUM(done) AS n FROM _honker_stats WHERE queue = 'chaos'")[0]["n"]
    assert acked == total  # every job acked exactly once (an ack deletes: no double ack)
    db.close()
