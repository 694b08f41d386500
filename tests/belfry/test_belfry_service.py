"""``belfry serve`` as a real process against the fake ntfy server as a real process:
recurring delivery, restarts, SIGKILL mid-delivery, rate limiting, dead letters; each on a
SQLite file and on a PostgreSQL URL (``BELFRY_DB=postgresql://...``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from belfry_helpers import Fake, Serve, belfry_env, belfry_json, run_belfry, wait_for

import honker
from belfry.store import QUEUE, schedule_name

StartServe = Callable[..., Serve]

pytestmark = pytest.mark.engines


def deliveries(env: dict[str, str], reminder_id: int) -> list[dict[str, Any]]:
    shown = belfry_json("show", str(reminder_id), "--limit", "1000", env=env)
    return list(reversed(shown["deliveries"]))


def test_a_reminder_every_second_arrives_three_times(
    fake: Fake, start_serve: StartServe, db_file: str
) -> None:
    env = belfry_env(db_file, fake.url, BELFRY_TOPIC="every-second")
    start_serve(env=env)
    added = run_belfry("add", "stretch", "--every", "1s", "--title", "Move", "--tag", "muscle",
                       "--priority", "high", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added reminder 1: every 1s, next ")
    started = time.monotonic()
    got = fake.wait_messages("every-second", 3, timeout=15)
    assert time.monotonic() - started < 10
    for message in got[:3]:
        assert (message["message"], message["title"], message["tags"], message["priority"]) == (
            "stretch", "Move", ["muscle"], 4)
    times = [m["time"] for m in got[:3]]
    assert times == sorted(times) and times[2] - times[0] >= 1  # one per boundary
    history = wait_for(lambda: [d for d in deliveries(env, 1) if d["status"] == "delivered"][2:] or
                       None, what="three recorded deliveries")
    assert history
    listing = run_belfry("list", env=env)
    assert "every 1s" in listing.stdout and "delivered" in listing.stdout


def test_a_restart_of_serve_loses_nothing(
    fake: Fake, start_serve: StartServe, db_file: str
) -> None:
    env = belfry_env(db_file, fake.url)
    first = start_serve(env=env)
    rec = belfry_json("add", "stretch", "--every", "1s", "--topic", "restart-rec", env=env)
    once = belfry_json("add", "tea", "--in", "3s", "--topic", "restart-once", env=env)
    fake.wait_messages("restart-rec", 1)
    assert first.stop(signal.SIGTERM) == 0  # graceful: running deliveries finish
    assert "belfry: stopped" in first.child.drain()
    down = time.monotonic()
    time.sleep(3.5)  # the one-off falls due and several boundaries pass while down
    assert fake.messages("restart-once") == []
    start_serve(env=env)
    assert len(fake.wait_messages("restart-once", 1)) == 1
    wait_for(lambda: time.monotonic() - down > 6, what="a few more boundaries")
    assert run_belfry("pause", str(rec["id"]), env=env).returncode == 0
    db = honker.open(db_file)
    try:
        queue = db.queue(QUEUE)
        wait_for(lambda: queue.stats()["pending"] == 0 and queue.stats()["processing"] == 0
                 and queue.stats()["delayed"] == 0, what="an empty queue")
        next_fire = honker.Scheduler(db).get(schedule_name(rec["id"]))["next_fire_at"]
        dead = queue.list_jobs(state="dead")
    finally:
        db.close()
    assert dead == []
    got = fake.messages("restart-rec")
    history = deliveries(env, rec["id"])
    delivered_jobs = [d["job_id"] for d in history if d["status"] == "delivered"]
    # Every boundary the scheduler fired was delivered exactly once, including those that
    # fell while serve was down (honker's catch-up fires them after the restart).
    assert len(got) == len(delivered_jobs) == len(set(delivered_jobs))
    created = _unix(rec["created_at"])
    boundaries = next_fire - 1 - created
    assert abs(len(got) - boundaries) <= 1, (len(got), boundaries)
    assert len(fake.messages("restart-once")) == 1
    assert belfry_json("show", str(once["id"]), env=env)["state"] == "done"


def test_sigkill_during_a_delivery_delivers_after_restart(
    fake: Fake, start_serve: StartServe, db_file: str
) -> None:
    env = belfry_env(db_file, fake.url, BELFRY_VISIBILITY_TIMEOUT="3", BELFRY_HTTP_TIMEOUT="20")
    # The first publish to this topic hangs (no answer) until the client goes away.
    fake.fault(status=None, stall_s=60, topic="killed")
    serve = start_serve(env=env)
    r = belfry_json("add", "survive", "--in", "0s", "--topic", "killed", env=env)
    wait_for(lambda: any(q["in_flight"] and q["path"] == "/killed" for q in fake.requests()),
             what="the delivery in flight")
    serve.stop(signal.SIGKILL)
    wait_for(lambda: not any(q["in_flight"] for q in fake.requests()), what="the hang-up")
    assert fake.messages("killed") == []  # the killed attempt never arrived
    restarted = time.monotonic()
    start_serve(env=env)
    [message] = fake.wait_messages("killed", 1, timeout=20)
    assert message["message"] == "survive"
    assert time.monotonic() - restarted < 12
    shown = belfry_json("show", str(r["id"]), env=env)
    assert shown["state"] == "done"
    statuses = [(d["attempt"], d["status"]) for d in reversed(shown["deliveries"])]
    assert statuses == [(1, "interrupted"), (2, "delivered")]
    time.sleep(0.5)
    assert len(fake.messages("killed")) == 1


def test_429_then_200_delivers_once(fake: Fake, start_serve: StartServe, db_file: str) -> None:
    env = belfry_env(db_file, fake.url)
    fake.fault(status=429, retry_after="1", topic="limited")
    start_serve(env=env)
    r = belfry_json("add", "tea", "--in", "0s", "--topic", "limited", env=env)
    fake.wait_messages("limited", 1)
    time.sleep(1.0)
    assert len(fake.messages("limited")) == 1
    history = deliveries(env, r["id"])
    assert [(d["attempt"], d["status"], d["http_status"]) for d in history] == [
        (1, "retrying", 429), (2, "delivered", 200)]
    assert "limit reached" in history[0]["error"]
    statuses = [q["status"] for q in fake.requests() if q["path"] == "/limited"]
    assert statuses == [429, 200]
    first, second = (q["time"] for q in fake.requests() if q["path"] == "/limited")
    assert second - first >= 1.0  # Retry-After honoured


def test_401_dead_letters_and_belfry_list_shows_the_error(
    start_fake: Callable[..., Fake], start_serve: StartServe, db_file: str
) -> None:
    fake = start_fake("--token", "tk_right:me", "--default-access", "deny-all",
                      "--access", "me:*:rw")
    fake.token = "tk_right"
    env = belfry_env(db_file, fake.url, BELFRY_NTFY_TOKEN="tk_wrong", BELFRY_TOPIC="secret")
    serve = start_serve(env=env)
    r = belfry_json("add", "pay rent", "--in", "0s", env=env)
    wait_for(lambda: belfry_json("show", str(r["id"]), env=env)["state"] == "failed",
             what="the dead letter")
    listing = run_belfry("list", env=env)
    assert listing.returncode == 0
    line = next(x for x in listing.stdout.splitlines() if "pay rent" in x)
    assert "failed" in line
    assert ("DEAD" in line and "HTTP 401 Unauthorized: unauthorized (ntfy error 40101"
            in line), listing.stdout
    shown = run_belfry("show", str(r["id"]), env=env).stdout
    assert "401" in shown and "unauthorized" in shown
    api = httpx.get(f"{serve.url}/reminders/{r['id']}", timeout=10).json()
    assert api["state"] == "failed" and "40101" in api["last_error"]
    assert len([q for q in fake.requests() if q["path"] == "/secret"]) == 1  # not retried
    db = honker.open(db_file)
    try:
        [dead] = db.queue(QUEUE).list_jobs(state="dead")
        assert "HTTP 401" in dead["last_error"]
    finally:
        db.close()
    # Fix the token, requeue the dead delivery: it goes out.
    serve.stop()
    start_serve(env=belfry_env(db_file, fake.url, BELFRY_NTFY_TOKEN="tk_right"))
    assert run_belfry("retry", str(r["id"]), env=env).returncode == 0
    assert fake.wait_messages("secret", 1)[0]["message"] == "pay rent"


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_api_and_worker_in_separate_processes(
    fake: Fake, start_serve: StartServe, db_file: str
) -> None:
    env = belfry_env(db_file, fake.url, BELFRY_TOPIC="split")
    api = start_serve("--no-worker", "--no-scheduler", env=env)
    worker = start_serve(env=env, command="worker")
    assert "running worker, scheduler" in worker.line and "API" not in worker.line
    health = httpx.get(f"{api.url}/health", timeout=10).json()
    assert health["components"] == {"api": True}
    created = httpx.post(f"{api.url}/reminders", json={"message": "split", "every": "1s"},
                         timeout=10)
    assert created.status_code == 201, created.text
    fake.wait_messages("split", 2)
    assert worker.stop() == 0


def test_start_line_names_the_database_without_its_password(
    start_serve: StartServe, db_file: str, engine_kind: str
) -> None:
    if engine_kind == "postgres":  # the test cluster trusts loopback: any password is accepted
        db_file = db_file.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    serve = start_serve("--no-worker", env=belfry_env(db_file, "http://127.0.0.1:9"))
    assert "hunter2" not in serve.line
    expected = db_file.replace(":hunter2@", ":***@")
    assert f"(db {expected}, pid" in serve.line, serve.line
    assert serve.stop() == 0
