"""A task module for CLI/worker tests; the database path comes from $HONKER_TEST_DB."""

from __future__ import annotations

import asyncio
import os
import time

import honker

db = honker.open(os.environ["HONKER_TEST_DB"])
emails = db.queue("emails", visibility_timeout_s=2)
slowq = db.queue("slow")


@emails.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@emails.task(name="greet")
async def greet(name: str, punctuation: str = "!") -> str:
    await asyncio.sleep(0)
    return f"hello, {name}{punctuation}"


@slowq.task(name="slow", timeout_s=60)
def slow(seconds: float, marker: str) -> str:
    time.sleep(seconds)
    with open(marker, "w") as f:
        f.write("finished")
    return "done"


@emails.task(name="long", timeout_s=30)
async def long(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "survived"
