"""Dashboard pages of issue 15 over HTTP: task names, errors, bulk actions, workers, streams,
the throughput chart, schedule time zones.

The worker-fed cases run ``python -m honker worker`` in real child processes (see
tests/obs_support.py and tests/apps/obsapp.py); the rest use Starlette's TestClient.
"""

from __future__ import annotations

import html
import itertools
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from dashboard_support import LOCAL, csrf_token
from obs_support import CLI, app_env, eventually, start_worker
from starlette.testclient import TestClient

import honker
from helpers import Child, sql_for
from honker.dashboard import create_app
from honker.dashboard._chart import nice_ceiling, throughput_chart
from honker.dashboard._describe import describe_error, task_call
from honker.dashboard._format import url_part
from honker.tasks import encode_call
from honker.workers import list_workers

pytestmark = pytest.mark.engines

TRACEBACK_ERROR = (
    "bad value\nTraceback (most recent call last):\n"
    '  File "app/tasks.py", line 3, in charge\n'
    '    raise ValueError("bad value")\n'
    "ValueError: bad value\n"
)


def kill_job(db: honker.Database, queue: str, payload: object, error: str) -> int:
    """Enqueue ``payload`` ahead of everything and dead-letter it with ``error``."""
    q = db.queue(queue)
    job_id = q.enqueue(payload, priority=10**9 + len(q.list_jobs(limit=1000)))
    job = q.claim_one("w-test")
    assert job is not None and job.id == job_id
    assert job.fail(error)
    return job_id


def job_ids(page_html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job="(\d+)"', page_html)]


def row(page_html: str, job_id: int) -> str:
    match = re.search(rf'<tr data-job="{job_id}">(.*?)</tr>', page_html, re.S)
    assert match, f"no row for job {job_id}"
    return match.group(1)


def flash(client: TestClient) -> str:
    match = re.search(r'<p class="flash" role="status">(.*?)</p>', client.get("/").text)
    assert match, "no flash message"
    return html.unescape(match.group(1))


def post_action(client: TestClient, path: str, token: str) -> int:
    """POST a dashboard action form; returns the status (303 when it was done)."""
    data = {"csrf_token": token, "next": "/"}
    return client.post(path, data=data, follow_redirects=False).status_code


def bulk(client: TestClient, queue: str, action: str, ids: list[object], token: str) -> int:
    data: dict[str, object] = {"csrf_token": token, "action": action, "job": [str(i) for i in ids]}
    response = client.post(f"/queues/{url_part(queue)}/bulk", data=data, follow_redirects=False)
    return response.status_code


# -- task names ----------------------------------------------------------------------------


@pytest.mark.sqlite_only("writes rows only SQLite can hold (invalid UTF-8)")
def test_task_column_filter_and_arguments(db: honker.Database, client: TestClient) -> None:
    q = db.queue("emails")
    sends = [q.enqueue(encode_call("send_email", [f"u{i}@x.org"], {"retry": i})) for i in range(3)]
    report = q.enqueue(encode_call("reports.build", [], {"month": "2026-11"}))
    raw = q.enqueue({"plain": "payload"})
    conn = sqlite3.connect(db.path)  # rows another binding wrote: not JSON, a bad envelope
    with conn:
        odd = [
            conn.execute(
                "INSERT INTO _honker_live (queue, payload) VALUES ('emails', ?)", (text,)
            ).lastrowid
            for text in ("not json {", '{"__honker_task__": {"task": 42}}')
        ]
        # ... and one whose text is not even valid UTF-8
        odd.append(
            conn.execute(
                "INSERT INTO _honker_live (queue, payload) VALUES "
                "('emails', CAST(X'7B2262223A2022FF227D' AS TEXT))"
            ).lastrowid
        )
    conn.close()

    page = client.get("/queues/emails").text
    for job_id in (*sends, report):
        assert "__honker_task__" not in row(page, job_id)
    for job_id in odd:  # shown as they are, without a task
        assert 'data-col="task"><span class="muted">' in row(page, job_id)
    assert "not json {" in row(page, odd[0])
    assert "\N{REPLACEMENT CHARACTER}" in row(page, odd[2])
    assert client.get(f"/queues/emails/jobs/{odd[2]}").status_code == 200
    send_row = row(page, sends[0])
    assert re.search(r'data-col="task"><a href="[^"]*task=send_email[^"]*"', send_row)
    assert "(&#34;u0@x.org&#34;, retry=0)" in send_row
    assert "(month=&#34;2026-11&#34;)" in row(page, report)
    assert '<span class="muted">—</span>' in row(page, raw).split("</td>")[3]
    assert "&#34;plain&#34;" in row(page, raw)
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options == ["", "reports.build", "send_email"]

    only = client.get("/queues/emails", params={"task": "send_email"})
    assert only.status_code == 200
    assert sorted(job_ids(only.text)) == sorted(sends)
    assert "Jobs 1\N{EN DASH}3 of 3" in only.text
    assert re.search(r'<option value="send_email" selected>', only.text)
    # Tabs and paging keep the task filter.
    assert 'href="/queues/emails?task=send_email&amp;state=pending"' in only.text
    dead_send = kill_job(db, "emails", encode_call("send_email", ["d@x.org"], {}), "boom")
    dead_only = client.get("/queues/emails", params={"task": "send_email", "state": "dead"})
    assert job_ids(dead_only.text) == [dead_send]
    searched = client.get("/queues/emails", params={"task": "send_email", "q": "u1@"})
    assert job_ids(searched.text) == [sends[1]]
    none = client.get("/queues/emails", params={"task": "unknown.task"})
    assert job_ids(none.text) == [] and "No unknown.task jobs" in none.text
    assert re.search(r'<option value="unknown.task" selected>', none.text)

    job_page = client.get(f"/queues/emails/jobs/{sends[2]}").text
    assert re.search(r'data-field="task"><a href="/queues/emails\?task=send_email">', job_page)
    arguments = re.search(r'<pre class="json" id="arguments">(.*?)</pre>', job_page, re.S)
    assert arguments and html.unescape(arguments.group(1)) == (
        '{\n  "args": [\n    "u2@x.org"\n  ],\n  "kwargs": {\n    "retry": 2\n  }\n}'
    )
    raw_page = client.get(f"/queues/emails/jobs/{raw}").text
    assert "not a task: a raw payload" in raw_page and 'id="arguments"' not in raw_page


def test_task_filter_that_is_too_long_is_400(db: honker.Database, client: TestClient) -> None:
    db.queue("emails").enqueue({"k": 1})
    response = client.get("/queues/emails", params={"task": "x" * 501})
    assert response.status_code == 400 and "task must be at most 500" in response.text


def test_task_call_of_odd_payloads() -> None:
    assert task_call('{"__honker_task__": {"task": "t", "args": [1], "kwargs": {"a": null}}}')
    call = task_call('{"__honker_task__": {"task": "t", "args": "nope", "kwargs": []}}')
    assert call is not None and call.args == [] and call.kwargs == {}
    assert call.signature == "()"
    for raw in ("[1]", "nope", '{"__honker_task__": 3}', '{"__honker_task__": {"task": 1}}'):
        assert task_call(raw) is None
    assert task_call(None) is None


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TRACEBACK_ERROR, ("ValueError", "bad value", True)),
        (
            '\nTraceback (most recent call last):\n  File "x", line 1\nKeyError\n',
            ("KeyError", "", True),
        ),
        (
            'x\nTraceback (most recent call last):\n  File "x"\n'
            "smtplib.SMTPDataError: (550, b'no')",
            ("smtplib.SMTPDataError", "x", True),
        ),
        (
            "TimeoutError: SMTP server did not answer in 30 s",
            ("TimeoutError", "SMTP server did not answer in 30 s", False),
        ),
        ("timeout after 5s", (None, "timeout after 5s", False)),
        ("Note: this is not an exception", (None, "Note: this is not an exception", False)),
        ("max attempts exceeded", (None, "max attempts exceeded", False)),
    ],
)
def test_describe_error(text: str, expected: tuple[str | None, str, bool]) -> None:
    info = describe_error(text)
    assert info is not None
    assert (info.type, info.message, info.traceback is not None) == expected
    if info.traceback is not None:
        assert info.traceback.startswith("Traceback (most recent call last):")
    assert describe_error("") is None and describe_error(None) is None


def test_exception_type_in_lists_and_traceback_on_the_job_page(
    db: honker.Database, client: TestClient
) -> None:
    job_id = kill_job(db, "billing", encode_call("charge", [7], {}), TRACEBACK_ERROR)
    listing = client.get("/queues/billing").text
    line = re.search(r'<div class="error-line">(.*?)</div>', row(listing, job_id))
    assert line and line.group(1) == '<span class="exc-type">ValueError</span>: bad value'
    assert "Traceback" not in listing
    page = client.get(f"/queues/billing/jobs/{job_id}").text
    assert '<span class="exc-type" data-field="error-type">ValueError</span>' in page
    assert '<span data-field="error-message">bad value</span>' in page
    traceback = re.search(r'<pre class="error-text" id="traceback">(.*?)</pre>', page, re.S)
    assert (
        traceback
        and html.unescape(traceback.group(1)).splitlines() == (TRACEBACK_ERROR.splitlines()[1:])
    )


def test_errors_traceback_and_chart_from_a_real_worker_process(
    db: honker.Database,
    db_path: str,
    client: TestClient,
    children: list[Child],
    tmp_path: Path,
) -> None:
    q = db.queue("obs")
    done_ids = [q.enqueue(encode_call("quick", [i], {})) for i in range(3)]
    boom = q.enqueue(encode_call("boom", [], {}))
    worker = start_worker(db_path, "--heartbeat-interval", "0.5", children=children)
    eventually(
        lambda: q.stats()["dead"] == 1 and q.stats()["done_last_minute"] == 3,
        what="three jobs done and one dead",
    )
    assert all(q.find_job(i) is None for i in done_ids)

    listing = client.get("/queues/obs").text
    line = re.search(r'<div class="error-line">(.*?)</div>', row(listing, boom))
    assert line and line.group(1) == '<span class="exc-type">ValueError</span>: boom on purpose'
    chart = re.search(
        r'<figure class="chart" id="throughput" data-done="(\d+)" '
        r'data-dead="(\d+)">(.*?)</figure>',
        listing,
        re.S,
    )
    assert chart and chart.group(1, 2) == ("3", "1")
    bars = re.findall(
        r'<g class="minute" data-minute="(\d+)" data-done="(\d+)" '
        r'data-dead="(\d+)">',
        chart.group(3),
    )
    assert len(bars) == 60
    assert sum(int(b[1]) for b in bars) == 3 and sum(int(b[2]) for b in bars) == 1
    assert 'class="bar-done"' in chart.group(3) and 'class="bar-dead"' in chart.group(3)

    page = client.get(f"/queues/obs/jobs/{boom}").text
    assert '<span class="exc-type" data-field="error-type">ValueError</span>' in page
    traceback = re.search(r'id="traceback">(.*?)</pre>', page, re.S)
    assert traceback
    text = html.unescape(traceback.group(1))
    assert text.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("boom on purpose")' in text
    assert text.rstrip().endswith("ValueError: boom on purpose")

    # The same worker on the workers page, then gone once killed.
    workers = client.get("/workers").text
    assert re.search(rf'<td class="num">{worker.pid}</td>', workers)
    assert 'state-active">alive' in workers and ">obs</a>" in workers
    assert '<p id="workers-summary"><a href="/workers"><strong>1</strong> worker process alive' in (
        client.get("/").text
    )
    waiting = q.enqueue(encode_call("wait_for", [str(tmp_path / "never")], {}))
    running = f'<a href="/queues/obs/jobs/{waiting}"><code>{waiting}</code></a>'
    eventually(lambda: running in client.get("/workers").text, what="the running job linked")
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)
    gone = eventually(
        lambda: (t := client.get("/workers").text) and 'state-dead">gone' in t and t,
        what="the killed worker shown as gone",
    )
    assert "<strong>0</strong> worker processes alive, <strong>1</strong> gone" in gone


# -- throughput history ----------------------------------------------------------------------


def test_queue_throughput_read(db: honker.Database) -> None:
    q = db.queue("t")
    for _ in range(2):
        job_id = q.enqueue({"k": 1})
        job = q.claim_one("w")
        assert job is not None and job.id == job_id and job.ack()
    kill_job(db, "t", {"k": 2}, "boom")
    now = db.engine.read(db.engine.ops.sqlite_now)  # the database's clock
    with db.transaction() as tx:  # counters from 10 and 90 minutes ago: in and out of an hour
        for ago, done, dead in ((600, 5, 2), (5400, 100, 100)):
            bucket = (now - ago) // 10 * 10
            tx.execute(
                sql_for(
                    db,
                    "INSERT INTO _honker_stats (queue, bucket, done, dead) VALUES ('t', ?, ?, ?)",
                ),
                [bucket, done, dead],
            )
    history = db.engine.read(db.engine.ops.queue_throughput, "t", 60)
    minutes = history["minutes"]
    assert len(minutes) == 60
    starts = [m[0] for m in minutes]
    assert starts == sorted(starts) and all(b - a == 60 for a, b in itertools.pairwise(starts))
    assert starts[-1] == history["now"] // 60 * 60
    assert sum(m[1] for m in minutes) == 7 and sum(m[2] for m in minutes) == 3
    ten_ago = [m for m in minutes if m[0] == (history["now"] - 600) // 60 * 60]
    assert ten_ago == [((history["now"] - 600) // 60 * 60, 5, 2)]
    assert db.engine.read(db.engine.ops.queue_throughput, "other", 5)["minutes"][-1][1:] == (0, 0)


def test_chart_geometry() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 2, 3, 6, 11, 99, 101)] == [1, 1, 2, 5, 10, 20, 100, 200]
    series = [(60 * i, i % 3, i % 2) for i in range(60)]
    chart = throughput_chart(series)
    assert len(chart.bars) == 60 and chart.total_done == sum(i % 3 for i in range(60))
    peak = max(b.done_h + b.dead_h for b in chart.bars)
    assert peak <= chart.base - chart.top + 0.01
    assert all(b.dead_y + b.dead_h == pytest.approx(b.done_y) for b in chart.bars)
    assert [label for _, label, _ in chart.x_ticks] == ["now", "-15 min", "-30 min", "-45 min"]
    assert all(b.x + b.width <= chart.width for b in chart.bars)
    empty = throughput_chart([(0, 0, 0)])
    assert empty.total_done == 0 and empty.bars[0].done_h == 0


# -- bulk actions ----------------------------------------------------------------------------


def test_bulk_retry_discard_and_cancel(db: honker.Database, client: TestClient) -> None:
    q = db.queue("emails")
    dead = [kill_job(db, "emails", {"n": i}, "boom") for i in range(4)]
    pending = [q.enqueue({"p": i}, delay=600 if i else None) for i in range(3)]
    running = q.enqueue({"r": 1}, priority=10**12)
    assert (job := q.claim_one("w")) is not None and job.id == running
    page = client.get("/queues/emails").text
    assert f'<input type="checkbox" name="job" value="{dead[0]}" id="pick-{dead[0]}"' in page
    assert f'formaction="/queues/emails/jobs/{dead[0]}/retry"' in page
    token = csrf_token(client, "/queues/emails")

    assert bulk(client, "emails", "retry", [dead[0], dead[1], pending[0]], token) == 303
    assert [q.find_job(i)["state"] for i in dead[:2]] == ["pending"] * 2  # type: ignore[index]
    assert flash(client) == (
        f"Retried 2 jobs ({dead[0]}, {dead[1]}). Skipped 1 job ({pending[0]}) (not dead, or gone)."
    )
    assert bulk(client, "emails", "discard", [dead[2], dead[3], dead[3]], token) == 303
    assert q.find_job(dead[2]) is None and q.find_job(dead[3]) is None
    assert flash(client) == f"Discarded 2 jobs ({dead[2]}, {dead[3]})."
    still_dead = kill_job(db, "emails", {"n": 9}, "boom")
    picked = [*pending, running, still_dead, 987654]
    assert bulk(client, "emails", "cancel", picked, token) == 303
    assert all(q.find_job(i) is None for i in pending)
    assert q.find_job(running)["state"] == "processing"  # type: ignore[index]
    assert flash(client) == (
        f"Cancelled 3 jobs ({pending[0]}, {pending[1]}, {pending[2]}). "
        f"Asked the workers running 1 job ({running}) to cancel them. "
        f"Skipped 2 jobs ({still_dead}, 987654) (dead, or a cancel request waits, or gone)."
    )
    page = client.get(f"/queues/emails/jobs/{running}").text
    assert 'data-field="cancel-requested">cancel requested</span>' in page
    assert bulk(client, "emails", "cancel", [running], token) == 303  # a request waits
    assert flash(client).startswith(f"Cancelled 0 jobs. Skipped 1 job ({running})")
    assert bulk(client, "emails", "retry", [], token) == 303
    assert flash(client) == "Nothing selected: tick the jobs first."


def test_a_row_button_inside_the_bulk_form_acts_on_its_own_job(
    db: honker.Database, client: TestClient
) -> None:
    first, second = (kill_job(db, "emails", {"n": i}, "boom") for i in range(2))
    token = csrf_token(client, "/queues/emails")
    response = client.post(  # the row's Retry button submits the whole form, ticks included
        f"/queues/emails/jobs/{first}/retry",
        data={"csrf_token": token, "next": "/queues/emails", "job": [str(second)]},
        follow_redirects=False,
    )
    assert response.status_code == 303
    q = db.queue("emails")
    assert q.find_job(first)["state"] == "pending"  # type: ignore[index]
    assert q.find_job(second)["state"] == "dead"  # type: ignore[index]


@pytest.mark.parametrize(
    ("action", "ids", "message"),
    [
        ("explode", ["1"], "action must be one of retry, discard, cancel"),
        ("", ["1"], "action must be one of"),
        ("retry", ["1x"], "job ids must be whole numbers"),
        ("retry", ["-1"], "job ids must be whole numbers"),
        ("retry", [str(i) for i in range(51)], "at most 50 jobs at a time"),
    ],
)
def test_bad_bulk_requests_are_400_and_change_nothing(
    db: honker.Database, client: TestClient, action: str, ids: list[str], message: str
) -> None:
    dead = kill_job(db, "emails", {"n": 1}, "boom")
    token = csrf_token(client, "/queues/emails")
    data = {"csrf_token": token, "action": action, "job": [*ids, str(dead)]}
    response = client.post("/queues/emails/bulk", data=data, follow_redirects=False)
    assert response.status_code == 400, response.text
    assert message in html.unescape(response.text)
    assert db.queue("emails").find_job(dead)["state"] == "dead"  # type: ignore[index]


def test_bulk_needs_csrf_and_is_refused_read_only(db: honker.Database, client: TestClient) -> None:
    dead = kill_job(db, "emails", {"n": 1}, "boom")
    assert bulk(client, "emails", "retry", [dead], "0" * 64) == 403
    assert client.post("/queues/unknown/bulk", data={}).status_code == 403
    token = csrf_token(client)
    assert bulk(client, "unknown", "retry", [dead], token) == 404
    with TestClient(create_app(db, read_only=True), base_url=LOCAL) as reader:
        reader.cookies.update(dict(client.cookies))
        page = reader.get("/queues/emails").text
        assert 'name="job"' not in page and 'id="bulk"' not in page
        assert bulk(reader, "emails", "retry", [dead], token) == 403
    assert db.queue("emails").find_job(dead)["state"] == "dead"  # type: ignore[index]


def test_retry_all_and_discard_all_only_when_there_are_dead_jobs(
    db: honker.Database, client: TestClient
) -> None:
    db.queue("emails").enqueue({"k": 1})
    page = client.get("/queues/emails").text
    assert "Retry all" not in page and "Discard all" not in page and "dead-actions" not in page
    kill_job(db, "emails", {"k": 2}, "boom")
    kill_job(db, "emails", {"k": 3}, "boom")
    page = client.get("/queues/emails").text
    assert re.search(r"<button[^>]*>Retry all 2 dead</button>", page)
    assert re.search(r"<button[^>]*>Discard all 2 dead</button>", page)


# -- streams, schedules ----------------------------------------------------------------------


def test_stream_page_with_consumers_and_lag(db: honker.Database, client: TestClient) -> None:
    topic = "orders/<eu>"
    stream = db.stream(topic)
    for i in range(10):
        stream.publish({"order": i})
    db.stream("other").publish({"x": 1})
    surl = f"/streams/{url_part(topic)}"
    assert f'href="{surl}"' in client.get("/").text
    page = client.get(surl)
    assert page.status_code == 200
    assert "No consumer has saved an offset" in page.text
    assert "orders/&lt;eu&gt;" in page.text and "<eu>" not in page.text

    last = next(s for s in db.streams_info() if s["topic"] == topic)["last_offset"]
    stream.save_offset("billing", last)
    stream.save_offset("analytics", last - 4)
    page = client.get(surl).text
    assert re.search(r'data-field="events">10<', page)
    billing = re.search(r'<tr data-consumer="billing">(.*?)</tr>', page, re.S)
    analytics = re.search(r'<tr data-consumer="analytics">(.*?)</tr>', page, re.S)
    assert billing and analytics
    assert 'data-col="lag">0<' in billing.group(1) and "caught up" in billing.group(1)
    assert 'data-col="lag">4<' in analytics.group(1) and "4 behind" in analytics.group(1)
    assert '<meter min="0" max="10" value="6"' in analytics.group(1)
    assert client.get("/streams/nope").status_code == 404
    assert "no stream topic named" in client.get("/streams/nope").text


def test_schedule_time_zone_is_shown(db: honker.Database, client: TestClient) -> None:
    scheduler = honker.Scheduler(db)
    scheduler.add(name="paris", queue="reports", schedule="0 9 * * *", tz="Europe/Paris")
    scheduler.add(name="local", queue="reports", schedule="0 9 * * *")
    page = client.get("/").text
    paris = re.search(r'<tr data-schedule="paris">(.*?)</tr>', page, re.S)
    local = re.search(r'<tr data-schedule="local">(.*?)</tr>', page, re.S)
    assert paris and '<td data-col="tz">Europe/Paris</td>' in paris.group(1)
    assert local and 'data-col="tz"><span class="muted"' in local.group(1)
    assert ">local</span>" in local.group(1)


def test_new_pages_escape_names(db: honker.Database, client: TestClient) -> None:
    db.stream("<script>t</script>").publish({"x": 1})
    db.stream("<script>t</script>").save_offset("<img src=x>", 0)
    q = db.queue("<b>q</b>")
    q.enqueue(encode_call("<script>task</script>", ["<img src=y>"], {}))
    for path in (
        f"/streams/{url_part('<script>t</script>')}",
        f"/queues/{url_part('<b>q</b>')}",
        "/workers",
        "/",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>t" not in page.text and "<img src" not in page.text
        assert "<script>task" not in page.text and "<b>q" not in page.text


# -- paused queues ---------------------------------------------------------------------------


def test_pause_and_resume_a_queue_from_the_dashboard(
    db: honker.Database, db_path: str, client: TestClient, children: list[Child]
) -> None:
    q = db.queue("obs")
    first = q.enqueue(encode_call("quick", [1], {}))
    worker = start_worker(db_path, "--heartbeat-interval", "0.5", children=children)
    eventually(lambda: q.find_job(first) is None, what="the first job done")
    overview = client.get("/").text
    assert re.search(r'data-col="state"><span class="state state-active">active', overview)
    token = csrf_token(client, "/queues/obs")
    path = "/queues/obs"
    assert post_action(client, f"{path}/pause", token) == 303
    assert q.is_paused()
    assert flash(client) == "Paused queue obs: workers claim nothing from it until resumed."
    page = client.get(path).text
    assert '<span class="state state-paused" data-field="paused">paused</span>' in page
    assert re.search(r"<button[^>]*>Resume queue</button>", page)
    assert re.search(
        r'data-col="state"><span class="state state-paused">paused', client.get("/").text
    )

    held = q.enqueue(encode_call("quick", [2], {}))
    # The worker keeps heartbeating (it is alive and waking) but claims nothing.
    seen = {w["last_seen"] for w in list_workers(db)}
    eventually(
        lambda: any(w["last_seen"] > max(seen) + 1 for w in list_workers(db)),
        what="two more heartbeats of the worker",
    )
    assert q.find_job(held)["state"] == "pending"  # type: ignore[index]

    token = csrf_token(client, path)
    assert post_action(client, f"{path}/pause", token) == 303
    assert flash(client) == "Queue obs was already paused."
    assert post_action(client, f"{path}/resume", token) == 303
    assert flash(client) == "Resumed queue obs."
    assert not q.is_paused()
    eventually(lambda: q.find_job(held) is None, what="the held job done after resume")
    assert post_action(client, f"{path}/resume", token) == 303
    assert flash(client) == "Queue obs was not paused."
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_pause_is_refused_read_only_and_without_csrf(db: honker.Database) -> None:
    db.queue("emails").enqueue({"k": 1})
    with TestClient(create_app(db), base_url=LOCAL) as client:
        assert post_action(client, "/queues/emails/pause", "0" * 64) == 403
        token = csrf_token(client)
        assert post_action(client, "/queues/unknown/pause", token) == 404
        cookies = dict(client.cookies)
    with TestClient(create_app(db, read_only=True), base_url=LOCAL, cookies=cookies) as reader:
        assert "Pause" not in reader.get("/").text
        assert post_action(reader, "/queues/emails/pause", token) == 403
    assert not db.queue("emails").is_paused()


# -- progress, cancel of running jobs, attempt history, stored results ------------------------


def start_jobs_worker(db_path: str, out: Path, children: list[Child]) -> Child:
    """``python -m honker worker apps.jobsapp:db`` (queue "jobs"), started."""
    env = app_env(db_path, HONKER_TEST_DIR=str(out))
    child = Child(CLI, "worker", "apps.jobsapp:db", "--queue", "jobs", env=env)
    children.append(child)
    while not child.readline().startswith("honker worker: pid="):
        pass
    return child


def test_progress_and_cancel_of_a_running_job(
    db: honker.Database,
    db_path: str,
    client: TestClient,
    children: list[Child],
    tmp_path: Path,
) -> None:
    q = db.queue("jobs")
    job_id = q.enqueue(encode_call("wait_async", ["a"], {}))
    # A later job keeps the queue listed once the cancelled one is gone (cancels are not
    # counted in _honker_stats, which lists queues that have no jobs left).
    q.enqueue(encode_call("wait_async", ["later"], {}), delay=3600)
    worker = start_jobs_worker(db_path, tmp_path, children)
    eventually(lambda: (tmp_path / "a.started").exists(), what="the task running")
    url = f"/queues/jobs/jobs/{job_id}"
    page = eventually(
        lambda: 'data-field="progress">25 % · a started' in (t := client.get(url).text) and t,
        what="the progress on the job page",
    )
    assert '<meter min="0" max="1" value="0.25"' in page
    listing = client.get("/queues/jobs?state=processing").text
    assert 'data-field="progress">25 % · a started' in row(listing, job_id)

    token = csrf_token(client, url)
    assert post_action(client, f"{url}/cancel", token) == 303
    assert flash(client) == f"Asked the worker running job {job_id} to cancel it."
    eventually(lambda: (tmp_path / "a.cancelled").exists(), what="the task cancelled")
    finished = eventually(
        lambda: 'id="finished-note"' in (t := client.get(url).text) and t,
        what="the job page showing the finished job",
    )
    assert '<span class="state state-cancelled">cancelled</span>' in finished
    listing = client.get("/queues/jobs").text
    assert '<strong data-field="cancelled-last-minute">1</strong>' in listing
    attempt = re.search(r'<tr data-attempt="1">(.*?)</tr>', finished, re.S)
    assert attempt and "state-cancelled" in attempt.group(1)
    assert q.find_job(job_id) is None
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_attempt_history_and_stored_result(
    db: honker.Database, db_path: str, client: TestClient, children: list[Child]
) -> None:
    q = db.queue("obs")
    ok = q.enqueue(encode_call("quick", [21], {}))
    boom = q.enqueue(encode_call("boom", [], {}))
    worker = start_worker(db_path, "--heartbeat-interval", "0.5", children=children)
    eventually(lambda: q.find_job(ok) is None and q.stats()["dead"] == 1, what="both finished")

    done = client.get(f"/queues/obs/jobs/{ok}")
    assert done.status_code == 200
    assert '<span class="state state-done">done</span>' in done.text
    result = re.search(r'<pre class="json" id="result">(.*?)</pre>', done.text, re.S)
    assert result and result.group(1) == "42"
    attempts = re.findall(r'<tr data-attempt="(\d+)">(.*?)</tr>', done.text, re.S)
    assert [a for a, _ in attempts] == ["1"]
    assert "state-done" in attempts[0][1] and '<code class="worker">' in attempts[0][1]

    dead = client.get(f"/queues/obs/jobs/{boom}").text
    attempts = re.findall(r'<tr data-attempt="(\d+)">(.*?)</tr>', dead, re.S)
    assert attempts and "state-dead" in attempts[-1][1]
    assert '<span class="exc-type">ValueError</span>: boom on purpose' in attempts[-1][1]
    assert "<summary>traceback</summary>" in attempts[-1][1]
    assert 'id="result"' not in dead
    # Another queue's URL for a finished job, and an id nobody used, stay 404.
    db.queue("other").enqueue({"k": 1})
    assert client.get(f"/queues/other/jobs/{boom}").status_code == 404
    assert client.get("/queues/obs/jobs/999999").status_code == 404
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
