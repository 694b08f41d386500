"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

The dashboard runs in its own process (``serve``); other processes enqueue and work jobs.
Screenshots go to tests/screenshots/; ``HONKER_DOCS_SCREENSHOTS=1 pytest -k screenshots
tests/dashboard`` also refreshes the documentation's docs/screenshots/.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboard_support import SWAP_COUNTER, Dashboard, PageProbe, screenshot
from obs_support import CLI, app_env
from playwright.sync_api import expect

import honker
from helpers import Child
from honker.dashboard._format import url_part
from honker.tasks import encode_call

LIVE_WAIT_MS = 10_000
# Pages also refresh every 5 s without commits; waiting less than that for a commit to show
# makes sure it was the commit's own wake-up that refreshed the page.
COMMIT_WAIT_MS = 4_000

ENQUEUER = """
import sys
import honker
db = honker.open(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    queue, text = line.split(maxsplit=1)
    job_id = db.queue(queue).enqueue({"text": text.strip()})
    print("enqueued", job_id, flush=True)
db.close()
"""

WORKER = """
import asyncio, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    queue = db.queue("emails")
    print("ready", flush=True)
    async for job in queue.claim("worker-process"):
        assert job.ack()
        print("done", job.id, job.payload["to"], flush=True)
        break
    db.close()

asyncio.run(main())
"""

TRACEBACK = """Traceback (most recent call last):
  File "app/tasks.py", line 42, in send_welcome_email
    smtp.send_message(message)
  File "/usr/lib/python3.11/smtplib.py", line 986, in send_message
    return self.sendmail(from_addr, to_addrs, flatmsg, mail_options, rcpt_options)
smtplib.SMTPRecipientsRefused: {'ada@example.com': (550, b'5.1.1 mailbox unavailable')}"""


def dead_job(
    db: honker.Database, queue: str, payload: Any, error: str, priority: int = 10**9
) -> int:
    """Enqueue ``payload`` (first in line) and dead-letter it with ``error``."""
    q = db.queue(queue)
    job_id = q.enqueue(payload, priority=priority)
    job = q.claim_one("worker-7f3a")
    assert job is not None and job.id == job_id
    assert job.fail(error)
    return job_id


def open_live(probe: PageProbe, url: str) -> None:
    """Load ``url`` and wait until the live refresh has swapped the page once (the event
    stream sends an update as soon as it connects); see ``page`` in conftest.py."""
    page = probe.page
    page.goto(url)
    expect(page.locator("html[data-swaps]")).to_be_attached(timeout=LIVE_WAIT_MS)
    page.evaluate("window.__marker = 'same document'")


def same_document(probe: PageProbe) -> bool:
    """Whether the page was updated in place (no reload or navigation since open_live)."""
    return bool(probe.page.evaluate("window.__marker === 'same document'"))


def test_jobs_appear_while_another_process_enqueues(
    start_dashboard: Callable[..., Dashboard],
    db: honker.Database,
    db_path: str,
    children: list[Child],
    page: PageProbe,
) -> None:
    db.queue("emails").enqueue({"text": "seed"})
    dash = start_dashboard()
    producer = Child(ENQUEUER, db_path)
    children.append(producer)
    producer.expect("ready")

    open_live(page, dash.url)
    emails_pending = page.page.locator('tr[data-queue="emails"] [data-col="pending"]')
    expect(emails_pending).to_have_text("1")
    producer.send("emails live-1")
    producer.send("reports first-report")
    expect(emails_pending).to_have_text("2", timeout=COMMIT_WAIT_MS)
    expect(page.page.locator('tr[data-queue="reports"]')).to_be_visible(timeout=COMMIT_WAIT_MS)
    assert same_document(page)

    open_live(page, dash.url + "queues/emails")
    for n in (2, 3, 4):
        producer.send(f"emails live-{n}")
        producer.readline()
    jobs = page.page.locator("#jobs")
    for n in (2, 3, 4):
        expect(jobs).to_contain_text(f"live-{n}", timeout=COMMIT_WAIT_MS)
    expect(page.page.locator("#jobs tbody tr")).to_have_count(5)
    assert same_document(page)
    screenshot(page.page, "live-queue")
    assert page.errors == []


def test_dead_job_retried_from_the_page_then_completed_by_a_worker(
    start_dashboard: Callable[..., Dashboard],
    db: honker.Database,
    db_path: str,
    children: list[Child],
    page: PageProbe,
) -> None:
    job_id = dead_job(db, "emails", {"to": "ada@example.com"}, TRACEBACK)
    dash = start_dashboard()
    open_live(page, f"{dash.url}queues/emails/jobs/{job_id}")
    expect(page.page.locator('[data-field="state"]')).to_have_text("dead")
    expect(page.page.locator("#last-error")).to_contain_text("mailbox unavailable")

    page.page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.page.locator(".flash")).to_have_text(f"Job {job_id} is pending again.")
    expect(page.page.locator('[data-field="state"]')).to_have_text("pending")
    assert db.queue("emails").find_job(job_id)["state"] == "pending"  # type: ignore[index]

    page.page.evaluate("window.__marker = 'same document'")
    worker = Child(WORKER, db_path)
    children.append(worker)
    worker.expect("ready")
    assert worker.readline() == f"done {job_id} ada@example.com"
    assert worker.wait() == 0
    # The open page notices by itself: the job is gone (finished jobs are deleted).
    expect(page.page.locator("#live")).to_contain_text(
        "finished jobs are deleted", timeout=COMMIT_WAIT_MS
    )
    assert same_document(page)
    # That refresh got a 404, which Chromium logs; nothing else may have failed.
    assert all("status of 404" in e for e in page.errors), page.errors
    page.errors.clear()

    open_live(page, dash.url)
    expect(page.page.locator('tr[data-queue="emails"] [data-col="done"]')).to_have_text("1")
    expect(page.page.locator('tr[data-queue="emails"] [data-col="dead"]')).to_have_text("0")
    assert page.errors == []


def test_script_payload_renders_inert(
    start_dashboard: Callable[..., Dashboard], db: honker.Database, page: PageProbe
) -> None:
    queue = "<svg onload=\"window.__pwned='name'\">"
    payload = {
        "html": "<script>window.__pwned = 'payload'; alert('payload')</script>",
        "img": "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
    }
    error = "<script>window.__pwned = 'error'; alert('error')</script>"
    job_id = dead_job(db, queue, payload, error)
    db.queue(queue).enqueue({"note": "</code></pre><script>alert('list')</script>"})
    dash = start_dashboard()
    qurl = f"{dash.url}queues/{url_part(queue)}"

    for url in (dash.url, qurl, f"{qurl}/jobs/{job_id}"):
        open_live(page, url)  # the first render and a live refresh
        assert page.page.evaluate("typeof window.__pwned") == "undefined"
        # htmx, its SSE extension and the dashboard's own dashboard.js
        assert page.page.locator("script").count() == 3
        # The only SVG is the server-drawn throughput chart of the queue page.
        assert page.page.locator("img, svg:not(#throughput svg)").count() == 0
        expect(page.page.get_by_text(queue).first).to_be_visible()

    payload_text = page.page.locator("#payload").inner_text()
    assert "<script>window.__pwned = 'payload'; alert('payload')</script>" in payload_text
    assert '<img src=x onerror=\\"window.__pwned' in payload_text
    assert page.page.locator("#last-error").inner_text() == error
    assert page.dialogs == []
    assert page.errors == []
    screenshot(page.page, "inert-script-payload")


def send_email(to: str, template: str) -> Any:
    """The stored call of a ``send_email`` task (what ``@queue.task`` enqueues)."""
    return encode_call("send_email", [to], {"template": template})


def populate(db: honker.Database) -> int:
    """A realistic database for the screenshots; returns the id of a dead job."""
    emails = db.queue("emails")
    welcome = send_email("ada@example.com", "welcome")
    dead = dead_job(db, "emails", welcome, "mailbox unavailable\n" + TRACEBACK, priority=0)
    reset = send_email("bob@example.org", "reset")
    dead_job(db, "emails", reset, "TimeoutError: SMTP server did not answer in 30 s", priority=0)
    for i in range(5):
        emails.enqueue(send_email(f"user{i}@example.com", "digest"))
    emails.enqueue({"to": "legacy@example.com", "raw": True})
    emails.enqueue(send_email("carol@example.com", "reminder"), delay=3600)
    for i in range(3):
        job_id = emails.enqueue(send_email(f"done{i}@example.com", "receipt"), priority=9)
        job = emails.claim_one("worker-1")
        assert job is not None and job.id == job_id and job.ack()
    running = emails.claim_one("worker-2")
    assert running is not None
    reports = db.queue("reports")
    assert reports.pause()
    reports.enqueue(
        encode_call("build_report", ["monthly-revenue"], {"month": "2026-10"}), delay=7200
    )
    assert reports.claim_one("worker-3") is None
    webhooks = db.queue("webhooks")
    for i in range(4):
        webhooks.enqueue({"url": f"https://hooks.example.com/{i}", "event": "order.paid"})
    stream = db.stream("orders")
    for i in range(40):
        stream.publish({"order": 1000 + i, "total": 1999 + i})
    last = max(s["last_offset"] for s in db.streams_info())
    stream.save_offset("billing", last)
    stream.save_offset("analytics", last - 12)
    scheduler = honker.Scheduler(db)
    scheduler.add(name="nightly-report", queue="reports", schedule="0 3 * * *", tz="Europe/Paris")
    scheduler.add(name="cleanup", queue="maintenance", schedule="*/15 * * * *")
    assert scheduler.pause("cleanup")
    assert db.lock("honker-scheduler", ttl=60, owner="host-a:4242").acquire()
    with db.transaction() as tx:
        for i in range(12):
            tx.notify("orders", {"order": 1000 + i})
    conn = sqlite3.connect(db.path)
    with conn:  # an hour of history for the throughput chart, and two registered workers
        now = conn.execute("SELECT unixepoch()").fetchone()[0]
        for minute in range(1, 60):
            done = 20 + (minute * 37) % 25 + (30 if 20 <= minute <= 28 else 0)
            failed = 6 if minute in (23, 24) else (1 if minute % 11 == 0 else 0)
            conn.execute(
                "INSERT INTO _honker_stats (queue, bucket, done, dead) VALUES ('emails', ?, ?, ?)",
                ((now - 60 * minute) // 60 * 60, done, failed),
            )
        rows = [
            (
                "web-1:4242:7f3a9c01",
                "web-1",
                4242,
                '["emails", "webhooks"]',
                8,
                5.0,
                3600,
                2,
                "[" + str(running.id) + "]",
            ),
            ("batch-2:977:1c0de2f4", "batch-2", 977, '["reports"]', 2, 5.0, 7200, 5, "[]"),
            ("web-3:31337:0ddba11e", "web-3", 31337, '["emails"]', 8, 5.0, 9000, 600, "[]"),
        ]
        # the attempt history a worker would have written for the first dead job
        conn.execute(
            "INSERT INTO _honker_job_attempts (job_id, attempt, worker_id, started_at, "
            "ended_at, duration_s, outcome, error) VALUES (?, 1, 'web-1:4242:7f3a9c01', ?, ?, "
            "?, 'dead', ?)",
            (dead, now - 3.4, now - 1.2, 2.2, "mailbox unavailable\n" + TRACEBACK),
        )
        for wid, host, pid, queues, conc, beat, started, seen, run in rows:
            conn.execute(
                "INSERT INTO _honker_workers (id, host, pid, queues, concurrency, heartbeat_s, "
                "started_at, last_seen, running) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (wid, host, pid, queues, conc, beat, now - started, now - seen, run),
            )
    conn.close()
    return dead


def test_pages_screenshots(
    start_dashboard: Callable[..., Dashboard], db: honker.Database, page: PageProbe
) -> None:
    dead = populate(db)
    dash = start_dashboard(relative_path=True)
    open_live(page, dash.url)
    expect(page.page.locator("#queues tbody tr")).to_have_count(3)
    expect(page.page.locator('tr[data-queue="reports"] [data-col="state"]')).to_have_text("paused")
    expect(page.page.locator("#streams")).to_contain_text("analytics")
    expect(page.page.locator("#schedules")).to_contain_text("paused")
    expect(page.page.locator("#schedules")).to_contain_text("Europe/Paris")
    expect(page.page.locator("#locks")).to_contain_text("honker-scheduler")
    screenshot(page.page, "overview", docs=True)

    open_live(page, dash.url + "queues/emails")
    expect(page.page.locator("#jobs tbody tr")).to_have_count(9)
    expect(page.page.locator("#jobs")).to_contain_text("send_email")
    expect(page.page.locator("#throughput .bar-dead").first).to_be_visible()
    screenshot(page.page, "queue", docs=True)

    open_live(page, f"{dash.url}queues/emails/jobs/{dead}")
    expect(page.page.locator("#arguments")).to_contain_text('"template": "welcome"')
    expect(page.page.locator('[data-field="error-type"]')).to_have_text(
        "smtplib.SMTPRecipientsRefused"
    )
    expect(page.page.locator('tr[data-attempt="1"] [data-col="outcome"]')).to_have_text("dead")
    screenshot(page.page, "job", docs=True)

    open_live(page, dash.url + "workers")
    expect(page.page.locator("#workers tbody tr")).to_have_count(3)
    expect(page.page.locator("#workers")).to_contain_text("gone")
    screenshot(page.page, "workers", docs=True)

    open_live(page, dash.url)
    page.page.locator("#streams a", has_text="orders").first.click()
    expect(page.page.locator('tr[data-consumer="analytics"] [data-col="lag"]')).to_have_text("12")
    screenshot(page.page, "stream", docs=True)
    assert page.errors == []


def test_bulk_selection_survives_live_refreshes(
    start_dashboard: Callable[..., Dashboard],
    db: honker.Database,
    db_path: str,
    children: list[Child],
    page: PageProbe,
) -> None:
    dead = [dead_job(db, "emails", {"to": f"d{i}@example.com"}, "boom") for i in range(3)]
    dash = start_dashboard()
    producer = Child(ENQUEUER, db_path)
    children.append(producer)
    producer.expect("ready")
    open_live(page, dash.url + "queues/emails")
    p = page.page
    p.locator(f"#pick-{dead[0]}").check()
    p.locator(f"#pick-{dead[2]}").check()
    producer.send("emails arrives-meanwhile")
    expect(p.locator("#jobs")).to_contain_text("arrives-meanwhile", timeout=COMMIT_WAIT_MS)
    assert same_document(page)  # refreshed in place; the ticks stayed
    expect(p.locator(f"#pick-{dead[0]}")).to_be_checked()
    expect(p.locator(f"#pick-{dead[1]}")).not_to_be_checked()
    expect(p.locator(f"#pick-{dead[2]}")).to_be_checked()

    p.get_by_role("button", name="Retry selected").click()
    expect(p.locator(".flash")).to_have_text(f"Retried 2 jobs ({dead[2]}, {dead[0]}).")
    q = db.queue("emails")
    states = [q.find_job(i)["state"] for i in dead]  # type: ignore[index]
    assert states == ["pending", "dead", "pending"]

    # "Select every job on this page" (dashboard.js), then discard: only the dead one goes.
    expect(p.locator("#pick-all")).to_be_visible()
    p.locator("#pick-all").check()
    assert p.locator('#jobs input[name="job"]:not(:checked)').count() == 0
    p.get_by_role("button", name="Discard selected").click()
    expect(p.locator(".flash")).to_contain_text(f"Discarded 1 job ({dead[1]}). Skipped 3 jobs")
    assert q.find_job(dead[1]) is None
    assert q.find_job(dead[0]) is not None
    expect(p.locator("#dead-actions")).to_have_count(0)  # nothing dead left: no "Retry all"
    assert page.errors == []


def test_running_job_shows_progress_then_is_cancelled_from_its_page(
    start_dashboard: Callable[..., Dashboard],
    db: honker.Database,
    db_path: str,
    children: list[Child],
    tmp_path: Path,
    page: PageProbe,
) -> None:
    q = db.queue("jobs")
    job_id = q.enqueue(encode_call("wait_sync", ["report"], {}))
    q.enqueue(encode_call("wait_sync", ["later"], {}), delay=3600)  # keeps the queue listed
    env = app_env(db_path, HONKER_TEST_DIR=str(tmp_path))
    worker = Child(CLI, "worker", "apps.jobsapp:db", "--queue", "jobs", env=env)
    children.append(worker)
    dash = start_dashboard(relative_path=True)
    open_live(page, f"{dash.url}queues/jobs/jobs/{job_id}")
    p = page.page
    # The worker process claims the job and reports progress: the open page shows both.
    expect(p.locator('[data-field="state"]')).to_have_text("processing", timeout=LIVE_WAIT_MS)
    expect(p.locator('[data-field="progress"]')).to_have_text(
        "50 % · report halfway", timeout=LIVE_WAIT_MS
    )
    screenshot(p, "job-running", docs=True)
    p.get_by_role("button", name="Cancel", exact=True).click()
    expect(p.locator(".flash")).to_have_text(f"Asked the worker running job {job_id} to cancel it.")
    page.page.evaluate("window.__marker = 'same document'")
    # The task sees the request, stops, and the open page turns into the finished job.
    expect(p.locator('[data-field="state"]')).to_have_text("cancelled", timeout=LIVE_WAIT_MS)
    expect(p.locator('tr[data-attempt="1"] [data-col="outcome"]')).to_have_text("cancelled")
    assert same_document(page)
    assert (tmp_path / "report.cancelled").read_text() == "cancel_requested=True"
    assert page.errors == []


NARROW_PAGES = ("", "queues/emails", "queues/emails?state=dead", "workers", "streams/orders")


def test_usable_at_400_px(
    start_dashboard: Callable[..., Dashboard], db: honker.Database, browser: Any
) -> None:
    dead = populate(db)
    dash = start_dashboard()
    context = browser.new_context(viewport={"width": 400, "height": 800})
    try:
        context.add_init_script(SWAP_COUNTER)
        p = context.new_page()
        for path in (*NARROW_PAGES, f"queues/emails/jobs/{dead}"):
            p.goto(dash.url + path)
            expect(p.locator("html[data-swaps]")).to_be_attached(timeout=LIVE_WAIT_MS)
            # The page itself never scrolls sideways (wide tables scroll in their own box).
            assert p.evaluate("document.documentElement.scrollWidth") <= 400, path
            buttons = p.locator("main button:visible")  # re-resolved: live swaps replace them
            for i in range(buttons.count()):
                box = buttons.nth(i).bounding_box()
                assert box is not None and box["x"] >= 0, path
        p.goto(dash.url + "queues/emails")
        expect(p.locator("html[data-swaps]")).to_be_attached(timeout=LIVE_WAIT_MS)
        for name in ("Retry selected", "Search"):
            box = p.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["x"] + box["width"] <= 400, name
        screenshot(p, "queue-narrow", docs=True)
        p.goto(f"{dash.url}queues/emails/jobs/{dead}")
        expect(p.locator("html[data-swaps]")).to_be_attached(timeout=LIVE_WAIT_MS)
        retry = p.get_by_role("button", name="Retry", exact=True)
        expect(retry).to_be_visible()
        box = retry.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 400
        screenshot(p, "job-narrow")
    finally:
        context.close()


def test_works_without_javascript(
    start_dashboard: Callable[..., Dashboard], db: honker.Database, browser: Any
) -> None:
    job_id = dead_job(db, "emails", {"to": "nojs@example.com"}, "boom")
    db.queue("emails").enqueue({"to": "other@example.com"})
    dash = start_dashboard()
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(dash.url + "queues/emails")
        page.get_by_label("Payload contains").fill("nojs@")
        page.get_by_role("button", name="Search").click()
        assert re.search(r"[?&]q=nojs%40", page.url)
        expect(page.locator("#jobs tbody tr")).to_have_count(1)
        page.get_by_role("button", name="Retry", exact=True).click()
        expect(page.locator(".flash")).to_have_text(f"Job {job_id} is pending again.")
        assert db.queue("emails").find_job(job_id)["state"] == "pending"  # type: ignore[index]
    finally:
        context.close()
