"""Reminders on a real database file: honker jobs and schedules behind each operation, and
one delivery attempt at a time against a fake ntfy server (retry, dead letter, skips)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import honker
from belfry.config import Settings
from belfry.delivery import Deliverer, ntfy_config, retry_delay
from belfry.errors import Conflict, InvalidInput, NotFound
from belfry.fake_ntfy import Access, FakeNtfy, FakeNtfyServer, Fault
from belfry.ntfy import NtfyPublisher
from belfry.store import QUEUE, Belfry, schedule_name
from honker import cron

pytestmark = pytest.mark.engines


@pytest.fixture
def server() -> Iterator[FakeNtfyServer]:
    fake = FakeNtfy(
        tokens={"tk_good": "me"}, default_access="deny-all", access=[Access("me", "*", True, True)]
    )
    with FakeNtfyServer(fake) as running:
        yield running


@pytest.fixture
def belfry(db_path: str, server: FakeNtfyServer) -> Iterator[Belfry]:
    settings = Settings(
        db=db_path,
        topic="tests",
        tz="Europe/Paris",
        ntfy_url=server.url,
        ntfy_token="tk_good",
        retry_delay_s=1,
        max_attempts=3,
        http_timeout_s=2,
        visibility_timeout_s=30,
    ).validated()
    instance = Belfry.open(settings)
    yield instance
    instance.close()


@pytest.fixture
async def deliverer(belfry: Belfry) -> AsyncIterator[Deliverer]:
    publisher = NtfyPublisher(ntfy_config(belfry.settings))
    yield Deliverer(belfry, publisher)
    await publisher.aclose()


def claim(belfry: Belfry, timeout: float = 3.0) -> honker.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = belfry.queue.claim_one("test-worker")
        if job is not None:
            return job
        assert time.monotonic() < deadline, "no job became claimable"
        time.sleep(0.05)


def history(belfry: Belfry, reminder_id: int) -> list[tuple[Any, ...]]:
    return [
        (d["attempt"], d["trigger"], d["status"], d["http_status"])
        for d in reversed(belfry.deliveries(reminder_id))
    ]


def test_one_off_is_a_delayed_job_written_with_the_reminder(belfry: Belfry) -> None:
    r = belfry.add({"message": "tea", "in": "10m", "tags": "a,b", "priority": "high"})
    assert (r["kind"], r["state"], r["tags"], r["priority"], r["topic"]) == (
        "once", "active", ["a", "b"], 4, "tests")
    row = belfry.row(r["id"])
    assert row is not None
    job = belfry.queue.find_job(row["job_id"])
    assert job is not None and job["state"] == "delayed" and job["run_at"] == row["due_at"]
    assert job["priority"] == 4  # urgent reminders are claimed first
    assert abs(row["due_at"] - (time.time() + 600)) < 2
    assert r["next_at"] == r["due_at"] and r["next_at"].endswith(("+01:00", "+02:00"))
    assert [x["id"] for x in belfry.list_reminders()] == [r["id"]]
    assert belfry.list_reminders("paused") == []


def test_recurring_reminders_are_honker_schedules_in_their_zone(belfry: Belfry) -> None:
    r = belfry.add({"message": "stand-up", "cron": "0 9 * * 1-5", "tz": "Asia/Tokyo"})
    sched = belfry.scheduler.get(schedule_name(r["id"]))
    assert sched is not None
    assert (sched["queue"], sched["cron_expr"], sched["tz"]) == (QUEUE, "0 9 * * 1-5",
                                                                 "Asia/Tokyo")
    expected = cron.next_after_unix("0 9 * * 1-5", int(time.time()), ZoneInfo("Asia/Tokyo"))
    assert sched["next_fire_at"] == expected
    assert r["next_at"] is not None and r["next_at"].endswith("T09:00:00+09:00")
    every = belfry.add({"message": "stretch", "every": "1h", "tz": "UTC"})
    assert belfry.scheduler.get(schedule_name(every["id"]))["cron_expr"] == "@every 3600s"
    assert every["schedule"] == "every 1h"
    # A tick of the schedule enqueues a delivery job naming the reminder.
    # (The Tokyo schedule may fire in the same hour too, depending on the time of day.)
    fired = belfry.scheduler.tick(int(time.time()) + 3601)
    hourly = [f for f in fired if f["name"] == schedule_name(every["id"])]
    assert len(hourly) == 1
    assert {f["name"] for f in fired} <= {schedule_name(every["id"]), schedule_name(r["id"])}
    job = belfry.queue.get_job(hourly[0]["job_id"])
    assert job is not None
    assert json.loads(job["payload"]) == {"reminder_id": every["id"], "trigger": "schedule"}


def test_invalid_input_is_refused_before_anything_is_written(belfry: Belfry) -> None:
    for data, hint in [
        ({"message": "x"}, "exactly one of at, in, cron, every"),
        ({"message": "x", "every": "1h", "priority": 7}, "priority"),
        ({"message": "x", "every": "1h", "tz": "Nowhere/Land"}, "unknown time zone"),
        ({"message": "x" * 5000, "every": "1h"}, "5000 bytes"),
        ({"message": "x", "every": "1h", "colour": "red"}, "unknown field"),
        ({"message": "x", "at": "2020-01-01T00:00"}, "in the past"),
    ]:
        with pytest.raises(InvalidInput, match=hint):
            belfry.add(data)
    assert belfry.list_reminders() == []
    assert belfry.scheduler.list() == []
    with pytest.raises(NotFound):
        belfry.get(42)


def test_pause_and_resume_skip_missed_occurrences(belfry: Belfry) -> None:
    r = belfry.add({"message": "stretch", "every": "10s"})
    name = schedule_name(r["id"])
    assert belfry.pause(r["id"])["state"] == "paused"
    assert belfry.scheduler.get(name)["enabled"] is False
    assert belfry.scheduler.tick(int(time.time()) + 600) == []  # nothing fires while paused
    assert belfry.pause(r["id"])["state"] == "paused"  # idempotent
    resumed = belfry.resume(r["id"])
    assert resumed["state"] == "active"
    sched = belfry.scheduler.get(name)
    # Restarted from now: the boundaries that fell while paused are not caught up.
    assert sched["enabled"] is True and sched["next_fire_at"] > time.time()
    assert len(belfry.scheduler.tick(int(time.time()) + 10)) == 1

    once = belfry.add({"message": "tea", "in": "1h"})
    job_id = belfry.row(once["id"])["job_id"]
    belfry.pause(once["id"])
    assert belfry.queue.find_job(job_id) is None  # the pending delivery is cancelled
    back = belfry.resume(once["id"])
    new_job = belfry.queue.find_job(belfry.row(once["id"])["job_id"])
    assert back["state"] == "active" and new_job is not None
    assert new_job["run_at"] == belfry.row(once["id"])["due_at"]


def test_snooze(belfry: Belfry) -> None:
    once = belfry.add({"message": "tea", "in": "1m"})
    old_job = belfry.row(once["id"])["job_id"]
    snoozed = belfry.snooze(once["id"], for_="1h")
    row = belfry.row(once["id"])
    assert abs(row["due_at"] - (time.time() + 3600)) < 2
    assert belfry.queue.find_job(old_job) is None and row["job_id"] != old_job
    assert snoozed["next_at"] == snoozed["due_at"]

    rec = belfry.add({"message": "stretch", "every": "1d"})
    before = belfry.scheduler.get(schedule_name(rec["id"]))["next_fire_at"]
    out = belfry.snooze(rec["id"], for_="10m")
    row = belfry.row(rec["id"])
    assert row["snoozed_until"] is not None and abs(row["snoozed_until"] - time.time() - 600) < 2
    assert out["next_at"] == out["snoozed_until"]  # sooner than the next occurrence
    assert belfry.scheduler.get(schedule_name(rec["id"]))["next_fire_at"] == before
    assert belfry.queue.find_job(row["snooze_job_id"])["state"] == "delayed"
    later = belfry.snooze(rec["id"], until="23:59")
    assert belfry.queue.find_job(row["snooze_job_id"]) is None  # replaced
    assert later["snoozed_until"] is not None
    belfry.pause(rec["id"])
    with pytest.raises(Conflict, match="paused"):
        belfry.snooze(rec["id"], for_="1m")
    with pytest.raises(InvalidInput, match="exactly one"):
        belfry.snooze(rec["id"])


def test_edit_switches_between_jobs_and_schedules(belfry: Belfry) -> None:
    r = belfry.add({"message": "tea", "in": "1h", "title": "T", "click": "https://a.b"})
    old_job = belfry.row(r["id"])["job_id"]
    edited = belfry.edit(r["id"], {"message": "green tea", "title": None, "click": None,
                                   "cron": "30 7 * * *"})
    assert (edited["message"], edited["title"], edited["click"], edited["kind"]) == (
        "green tea", None, None, "cron")
    assert belfry.queue.find_job(old_job) is None
    assert belfry.scheduler.get(schedule_name(r["id"]))["tz"] == "Europe/Paris"
    moved = belfry.edit(r["id"], {"tz": "America/New_York"})
    assert belfry.scheduler.get(schedule_name(r["id"]))["tz"] == "America/New_York"
    assert moved["next_at"].endswith(("T07:30:00-05:00", "T07:30:00-04:00"))
    back = belfry.edit(r["id"], {"at": "2099-01-01T08:00"})
    assert back["kind"] == "once" and belfry.scheduler.get(schedule_name(r["id"])) is None
    assert belfry.queue.find_job(belfry.row(r["id"])["job_id"])["state"] == "delayed"
    with pytest.raises(InvalidInput, match="exactly one"):
        belfry.edit(r["id"], {"at": "2099-01-01T08:00", "every": "1h"})


def test_delete_removes_everything(belfry: Belfry) -> None:
    once = belfry.add({"message": "tea", "in": "1h"})
    rec = belfry.add({"message": "stretch", "every": "1h"})
    job_id = belfry.row(once["id"])["job_id"]
    belfry.delete(once["id"])
    belfry.delete(rec["id"])
    assert belfry.queue.find_job(job_id) is None
    assert belfry.scheduler.list() == [] and belfry.list_reminders() == []
    with pytest.raises(NotFound):
        belfry.delete(once["id"])


class Boom(Exception):
    """Raised by a honker call the test breaks."""


def snapshot(belfry: Belfry) -> tuple[Any, ...]:
    """Everything a reminder change writes: reminders, attempts, schedules and jobs."""
    return (
        belfry.db.query("SELECT * FROM belfry_reminders ORDER BY id"),
        belfry.db.query("SELECT * FROM belfry_deliveries ORDER BY id"),
        belfry.scheduler.list(),
        belfry.queue.list_jobs(limit=1000),
    )


def _dead_one_off(belfry: Belfry) -> int:
    """A one-off reminder whose delivery was dead-lettered (as the deliverer leaves it)."""
    r = belfry.add({"message": "tea", "in": "0s"})
    job = claim(belfry)
    now = time.time()
    with belfry.db.transaction() as tx:
        job.fail("401 unauthorized", tx=tx)
        tx.execute(
            belfry.sql(
                "INSERT INTO belfry_deliveries (reminder_id, job_id, attempt, trigger, status, "
                "started_at, finished_at) VALUES (?, ?, 1, 'once', 'dead', ?, ?)"
            ),
            [r["id"], job.id, now, now],
        )
        failed = "UPDATE belfry_reminders SET state = 'failed' WHERE id = ?"
        tx.execute(belfry.sql(failed), [r["id"]])
    return int(r["id"])


def _snoozed(belfry: Belfry) -> int:
    r = belfry.add({"message": "stretch", "every": "1d"})
    belfry.snooze(r["id"], for_="10m")
    return int(r["id"])


# (set-up, the change, the honker call that fails; it runs after the reminder's own write
# and, where the change has one, after another honker write of the same change.)
BROKEN_CHANGES: dict[str, tuple[Callable[[Belfry], Any], Callable[[Belfry, Any], Any], str]] = {
    "add recurring": (lambda b: None, lambda b, _: b.add({"message": "m", "every": "1h"}),
                      "scheduler.add"),
    "add once": (lambda b: None, lambda b, _: b.add({"message": "m", "in": "1h"}),
                 "queue.enqueue"),
    "edit once to cron": (lambda b: b.add({"message": "m", "in": "1h"})["id"],
                          lambda b, i: b.edit(i, {"cron": "0 9 * * *"}), "queue.cancel"),
    "edit cron to once": (lambda b: b.add({"message": "m", "cron": "0 9 * * *"})["id"],
                          lambda b, i: b.edit(i, {"in": "2h"}), "scheduler.remove"),
    "edit priority": (lambda b: b.add({"message": "m", "every": "1h"})["id"],
                      lambda b, i: b.edit(i, {"message": "n", "priority": 5}),
                      "scheduler.update"),
    "pause recurring": (lambda b: b.add({"message": "m", "every": "1h"})["id"],
                        lambda b, i: b.pause(i), "scheduler.pause"),
    "pause once": (lambda b: b.add({"message": "m", "in": "1h"})["id"],
                   lambda b, i: b.pause(i), "queue.cancel"),
    "resume recurring": (lambda b: b.pause(b.add({"message": "m", "every": "1h"})["id"])["id"],
                         lambda b, i: b.resume(i), "scheduler.resume"),
    "resume once": (lambda b: b.pause(b.add({"message": "m", "in": "1h"})["id"])["id"],
                    lambda b, i: b.resume(i), "queue.enqueue"),
    "snooze again": (_snoozed, lambda b, i: b.snooze(i, for_="1h"), "queue.cancel"),
    "send now": (lambda b: b.add({"message": "m", "every": "1h"})["id"],
                 lambda b, i: b.send_now(i), "queue.enqueue"),
    "retry dead": (_dead_one_off, lambda b, i: b.retry_dead(i), "queue.retry_dead"),
    "delete": (_snoozed, lambda b, i: b.delete(i), "queue.discard_dead"),
}


@pytest.mark.parametrize("change", list(BROKEN_CHANGES))
def test_a_change_that_fails_midway_leaves_nothing_behind(
    belfry: Belfry, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    setup, run, broken = BROKEN_CHANGES[change]
    arg = setup(belfry)
    before = snapshot(belfry)
    owner_name, method = broken.split(".")
    owner = getattr(belfry, owner_name)
    calls: list[Any] = []

    def boom(*args: Any, tx: honker.Transaction | None = None, **kwargs: Any) -> Any:
        calls.append(tx)
        raise Boom(f"{broken} failed")

    monkeypatch.setattr(owner, method, boom)
    with pytest.raises(Boom):
        run(belfry, arg)
    assert calls and calls[0] is not None, f"{broken} was not called inside the transaction"
    monkeypatch.undo()
    assert snapshot(belfry) == before
    run(belfry, arg)  # unbroken, the same change goes through
    assert snapshot(belfry) != before


async def test_delivery_success_acks_and_records(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    r = belfry.add({"message": "tea", "in": "0s", "title": "Kettle", "tags": ["tea"]})
    await deliverer.run(claim(belfry))
    [message] = server.fake.messages("tests")
    assert (message["message"], message["title"], message["tags"]) == ("tea", "Kettle", ["tea"])
    assert history(belfry, r["id"]) == [(1, "once", "delivered", 200)]
    shown = belfry.get(r["id"])
    assert shown["state"] == "done" and shown["delivered_count"] == 1
    assert shown["last_delivery"]["ntfy_id"] == message["id"]
    assert belfry.queue.stats()["pending"] == 0


async def test_429_is_retried_after_retry_after(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    server.fake.inject_fault(Fault(status=429, retry_after="1"))
    r = belfry.add({"message": "tea", "in": "0s"})
    job = claim(belfry)
    await deliverer.run(job)
    live = belfry.queue.find_job(job.id)
    assert live is not None and live["state"] == "delayed"
    assert live["run_at"] - time.time() >= 1  # at least Retry-After
    assert history(belfry, r["id"]) == [(1, "once", "retrying", 429)]
    assert "limit reached" in belfry.get(r["id"])["last_error"]
    await deliverer.run(claim(belfry, timeout=5))
    assert history(belfry, r["id"]) == [(1, "once", "retrying", 429), (2, "once", "delivered",
                                                                          200)]
    assert len(server.fake.messages("tests")) == 1


async def test_5xx_backs_off_then_gives_up(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    assert [retry_delay(belfry.settings, n) for n in (1, 2, 3)] == [1, 2, 4]
    server.fake.inject_fault(Fault(status=500, count=3))
    r = belfry.add({"message": "tea", "in": "0s"})
    for _ in range(3):
        await deliverer.run(claim(belfry, timeout=6))
    assert [h[2:] for h in history(belfry, r["id"])] == [
        ("retrying", 500), ("retrying", 500), ("dead", 500)]
    shown = belfry.get(r["id"])
    assert shown["state"] == "failed"
    assert shown["last_error"].startswith("gave up after 3 attempts: HTTP 500")
    dead = belfry.queue.find_job(belfry.row(r["id"])["job_id"])
    assert dead is not None and dead["state"] == "dead"
    assert dead["last_error"].startswith("gave up after 3 attempts")


async def test_401_is_dead_lettered_at_once_and_can_be_retried(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    r = belfry.add({"message": "rent", "in": "0s"})
    good = deliverer.publisher
    deliverer.publisher = NtfyPublisher(ntfy_config(belfry.settings.replace(ntfy_token="bad")))
    try:
        await deliverer.run(claim(belfry))
    finally:
        await deliverer.publisher.aclose()
        deliverer.publisher = good
    shown = belfry.get(r["id"])
    assert shown["state"] == "failed"
    assert history(belfry, r["id"]) == [(1, "once", "dead", 401)]
    assert "HTTP 401 Unauthorized: unauthorized (ntfy error 40101" in shown["last_error"]
    dead = belfry.queue.find_job(belfry.row(r["id"])["job_id"])
    assert dead is not None and dead["state"] == "dead" and "40101" in dead["last_error"]
    assert len(server.fake.requests()) == 1  # no retries
    assert belfry.retry_dead(r["id"])["state"] == "active"
    await deliverer.run(claim(belfry))
    assert belfry.get(r["id"])["state"] == "done"
    with pytest.raises(Conflict, match="no dead-lettered delivery"):
        belfry.retry_dead(r["id"])


async def test_oversized_message_is_never_sent(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    r = belfry.add({"message": "tea", "in": "0s"})
    with belfry.db.transaction() as tx:  # e.g. written by an older version or by hand
        tx.execute(
            belfry.sql("UPDATE belfry_reminders SET message = ? WHERE id = ?"),
            ["x" * 5000, r["id"]],
        )
    await deliverer.run(claim(belfry))
    assert history(belfry, r["id"]) == [(1, "once", "dead", None)]
    assert "5000 bytes" in belfry.get(r["id"])["last_error"]
    assert server.fake.requests() == []


async def test_stale_and_paused_jobs_are_not_sent(
    belfry: Belfry, deliverer: Deliverer, server: FakeNtfyServer
) -> None:
    once = belfry.add({"message": "tea", "in": "0s"})
    stale = claim(belfry)
    belfry.snooze(once["id"], for_="1h")  # supersedes the claimed job
    await deliverer.run(stale)
    rec = belfry.add({"message": "stretch", "every": "1h"})
    belfry.scheduler.tick(int(time.time()) + 3601)
    job = claim(belfry)
    belfry.pause(rec["id"])
    await deliverer.run(job)
    assert history(belfry, rec["id"]) == [(1, "schedule", "skipped", None)]
    gone = belfry.add({"message": "gone", "in": "0s"})
    job = claim(belfry)
    belfry.delete(gone["id"])
    await deliverer.run(job)
    belfry.scheduler.add(name=schedule_name(77), queue=QUEUE, schedule="@every 5s",
                         payload={"reminder_id": 77, "trigger": "schedule"})
    belfry.scheduler.tick(int(time.time()) + 5)
    await deliverer.run(claim(belfry))  # an orphan schedule's job: dropped, schedule removed
    assert belfry.scheduler.get(schedule_name(77)) is None
    assert server.fake.requests() == []
    assert belfry.queue.stats()["processing"] == 0


async def test_an_attempt_cut_short_is_marked_interrupted(
    belfry: Belfry, deliverer: Deliverer
) -> None:
    r = belfry.add({"message": "tea", "in": "0s"})
    job = claim(belfry)
    with belfry.db.transaction() as tx:  # what a killed worker leaves behind
        tx.execute(
            belfry.sql(
                "INSERT INTO belfry_deliveries (reminder_id, job_id, attempt, trigger, status, "
                "started_at) VALUES (?, ?, 1, 'once', 'sending', ?)"
            ),
            [r["id"], job.id, time.time()],
        )
    await deliverer.run(job)
    assert [h[2] for h in history(belfry, r["id"])] == ["interrupted", "delivered"]


async def test_history_is_pruned_but_the_count_is_kept(
    belfry: Belfry, deliverer: Deliverer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("belfry.store.HISTORY_KEEP", 2)
    r = belfry.add({"message": "tea", "every": "1h"})
    for _ in range(3):
        belfry.send_now(r["id"])
        await deliverer.run(claim(belfry))
    assert [h[2] for h in history(belfry, r["id"])] == ["delivered", "delivered"]
    assert belfry.get(r["id"])["delivered_count"] == 3


def test_concurrent_changes_to_one_reminder_do_not_interleave(belfry: Belfry) -> None:
    """Each change reads the reminder inside its transaction with the row locked (SQLite:
    the file's write lock; PostgreSQL: ``FOR UPDATE``), so of many snoozes racing on one
    one-off, each cancels the job the previous one armed: one live job is left."""
    import threading

    r = belfry.add({"message": "tea", "in": "1h"})
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def snooze(minutes: int) -> None:
        barrier.wait()
        try:
            belfry.snooze(r["id"], for_=f"{minutes}m")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=snooze, args=(10 + i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    live = [j for j in belfry.queue.list_jobs(limit=100) if j["state"] in ("pending", "delayed")]
    assert [j["id"] for j in live] == [belfry.row(r["id"])["job_id"]]


def test_tables_use_each_engines_types(belfry: Belfry, engine_kind: str) -> None:
    if engine_kind == "postgres":
        rows = belfry.db.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'belfry_reminders'"
        )
    else:
        rows = belfry.db.query(
            "SELECT name AS column_name, type AS data_type FROM pragma_table_info(?)",
            ["belfry_reminders"],
        )
    types = {row["column_name"]: row["data_type"].lower() for row in rows}
    expected = {
        "sqlite": {"id": "integer", "job_id": "integer", "created_at": "real"},
        "postgres": {"id": "bigint", "job_id": "bigint", "created_at": "double precision"},
    }[engine_kind]
    assert {name: types[name] for name in expected} == expected
    # Times keep their precision (a 4-byte float, PostgreSQL's REAL, is off by up to 64 s).
    before = time.time()
    r = belfry.add({"message": "tea", "in": "1h"})
    assert before <= belfry.row(r["id"])["created_at"] <= time.time()


def test_dialect_placeholders() -> None:
    from belfry._sql import Dialect

    pg, lite = Dialect("postgres"), Dialect("sqlite")
    statement = "UPDATE t SET a = ?, b = 'why?' WHERE id = ?"
    assert lite.sql(statement) == statement
    assert pg.sql(statement) == "UPDATE t SET a = %s, b = 'why?' WHERE id = %s"
    with pytest.raises(ValueError, match="must not contain '%'"):
        pg.sql("SELECT '100%'")
    with pytest.raises(ValueError, match="not on a 'mysql' engine"):
        Dialect("mysql")
