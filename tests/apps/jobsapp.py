"""Tasks for the cancel/progress/failed-result tests; the database path is $HONKER_TEST_DB.

Each task writes what it saw to files under $HONKER_TEST_DIR, so the test (another
process) can tell how the task ended.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import honker

db = honker.open(os.environ["HONKER_TEST_DB"])
jobs = db.queue("jobs", visibility_timeout_s=30)
OUT = Path(os.environ.get("HONKER_TEST_DIR", "."))


def mark(name: str, text: str) -> None:
    (OUT / name).write_text(text)


@jobs.task(name="wait_async")
async def wait_async(tag: str) -> str:
    honker.current_job().set_progress(0.25, f"{tag} started")
    mark(f"{tag}.started", "yes")
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark(f"{tag}.cancelled", "CancelledError")
        raise
    return "finished"


@jobs.task(name="wait_sync")
def wait_sync(tag: str) -> str:
    job = honker.current_job()
    job.set_progress(0.5, f"{tag} halfway")
    mark(f"{tag}.started", "yes")
    job.wait_cancelled(120)
    mark(f"{tag}.cancelled", f"cancel_requested={job.cancel_requested}")
    job.raise_if_cancelled()
    return "finished"


@jobs.task(name="boom", retries=2, retry_delay_s=0)
def boom(text: str) -> None:
    raise ValueError(f"boom: {text}")


@jobs.task(name="too_slow", retries=2, retry_delay_s=600, timeout_s=0.2)
async def too_slow() -> None:
    await asyncio.sleep(30)
