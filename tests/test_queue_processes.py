"""Queues across real OS processes: draining, crash recovery, disk full."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import honker
from helpers import DRAIN_WORKER, Child

pytestmark = pytest.mark.engines


def test_four_processes_drain_10000_jobs_exactly_once(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    q = db.queue("work")
    backend = "polling" if db.engine.kind == "sqlite" else ""  # PostgreSQL: LISTEN
    kids = [Child(DRAIN_WORKER, db_path, backend, f"w{i}") for i in range(4)]
    children.extend(kids)
    for kid in kids:
        kid.expect("READY")
    for start in range(0, 10_000, 100):
        with db.transaction() as tx:
            for i in range(start, start + 100):
                q.enqueue(i, tx=tx)
    with db.transaction() as tx:
        for _ in kids:
            q.enqueue("stop", tx=tx, priority=-1)  # after every real job
    results = [json.loads(kid.readline(timeout=120)) for kid in kids]
    counts = Counter(x for r in results for x in r)
    assert sorted(counts) == list(range(10_000))
    assert set(counts.values()) == {1}
    assert all(len(r) > 0 for r in results), [len(r) for r in results]  # all took part
    assert db.query("SELECT COUNT(*) AS n FROM _honker_live") == [{"n": 0}]
    assert db.query("SELECT COUNT(*) AS n FROM _honker_dead") == [{"n": 0}]


CRASHING_WORKER = """
import sys, time
import honker
db = honker.open(sys.argv[1])
q = db.queue("work", visibility_timeout_s=2)
job = q.claim_one("doomed")
print(f"CLAIMED {job.id}", flush=True)
time.sleep(60)  # "working" when SIGKILL arrives
"""

RESCUE_WORKER = """
import asyncio, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    q = db.queue("work", visibility_timeout_s=2)
    async for job in q.claim("rescuer", idle_poll_s=None):
        print(f"GOT {job.id} {job.attempts}", flush=True)
        print(f"ACK {job.ack()}", flush=True)
        break

asyncio.run(main())
"""


def test_sigkill_mid_job_is_reclaimed_after_visibility_timeout(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    q = db.queue("work", visibility_timeout_s=2)
    job_id = q.enqueue({"important": True})
    doomed = Child(CRASHING_WORKER, db_path)
    children.append(doomed)
    assert doomed.readline() == f"CLAIMED {job_id}"
    rescuer = Child(RESCUE_WORKER, db_path)
    children.append(rescuer)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    killed_at = time.time()
    assert rescuer.readline(timeout=20) == f"GOT {job_id} 2"
    assert rescuer.readline() == "ACK True"
    assert time.time() - killed_at < 10
    assert q.get_job(job_id) is None
    assert db.query("SELECT COUNT(*) AS n FROM _honker_dead") == [{"n": 0}]


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    rc = subprocess.call(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], stderr=subprocess.DEVNULL
    )
    if rc != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    yield mnt
    subprocess.call(["umount", "-l", str(mnt)])


def test_disk_full_is_a_clear_error_and_loses_nothing(small_tmpfs: Path) -> None:
    path = str(small_tmpfs / "app.db")
    db = honker.open(path)
    q = db.queue("q")
    accepted = []
    blob = "x" * 2000
    with pytest.raises(RuntimeError, match="database or disk is full"):
        for i in range(10_000):
            accepted.append(q.enqueue({"i": i, "pad": blob}))
    assert len(accepted) > 10
    assert not db.engine.holds_writer()
    # A transaction that also fails leaves the database consistent.
    with pytest.raises(RuntimeError, match="full"), db.transaction() as tx:
        for _ in range(100):
            q.enqueue({"pad": blob * 5}, tx=tx)
    # Make room, then every id enqueue returned is still there and claimable.
    subprocess.check_call(["mount", "-o", "remount,size=16m", str(small_tmpfs)])
    claimed = []
    while True:
        jobs = q.claim_batch("w", 100)
        if not jobs:
            break
        claimed.extend(j.id for j in jobs)
        assert q.ack_batch([j.id for j in jobs], "w") == len(jobs)
    assert claimed == accepted
    db.close()
    check = honker.open(path)
    assert check.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    check.close()
