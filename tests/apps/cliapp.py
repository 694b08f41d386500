"""Tasks with varied retry settings and a schedule, for the CLI tests ($HONKER_TEST_DB)."""

from __future__ import annotations

import os

import honker

db = honker.open(os.environ["HONKER_TEST_DB"])
mail = db.queue("mail")
reports = db.queue("reports")


@mail.task(name="send", retries=5, retry_delay_s=10, backoff=2.0, timeout_s=45)
def send(to: str) -> str:
    return f"sent to {to}"


@mail.task(name="flaky", retries=1)
def flaky() -> None:
    raise RuntimeError("mail server said no")


@reports.periodic_task(honker.every_s(3600), name="hourly")
def hourly() -> str:
    return "report"
