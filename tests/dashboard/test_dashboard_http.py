"""HTTP-level tests of the dashboard app (Starlette TestClient, in-process).

Token, host check, CSRF, read-only mode, 404s (never 500), escaping of payloads and
errors, every action, pagination/search, and mounting under a prefix.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest
from dashboard_support import LOCAL, csrf_token
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import honker
from helpers import python_env
from honker.dashboard import create_app
from honker.dashboard._format import abs_time, duration, pretty_json, rel_time, url_part
from honker.dashboard._security import host_name, is_loopback

pytestmark = pytest.mark.engines

SCRIPT = '<script>alert("pwned")</script>'
_PRIORITY = itertools.count(10**6)


def dead_job(db: honker.Database, queue: str = "emails", error: str = "boom") -> int:
    """Enqueue a job and dead-letter it; returns its id."""
    q = db.queue(queue)
    # The highest priority so far: claimed before anything else in the queue.
    job_id = q.enqueue({"to": "dead@example.com"}, priority=next(_PRIORITY))
    job = q.claim_one("test-worker")
    assert job is not None and job.id == job_id
    assert job.fail(error)
    return job_id


def post(client: TestClient, path: str, token: str | None, **fields: str) -> int:
    data = dict(fields)
    if token is not None:
        data["csrf_token"] = token
    return client.post(path, data=data, follow_redirects=False).status_code


# -- pages ---------------------------------------------------------------------------------


def test_overview_shows_every_section(db: honker.Database, client: TestClient) -> None:
    q = db.queue("emails")
    q.enqueue({"n": 1})
    q.enqueue({"n": 2}, delay=600)
    claimed = q.enqueue({"n": 3}, priority=5)
    job = q.claim_one("w-1")
    assert job is not None and job.id == claimed
    dead_job(db)
    done = q.enqueue({"n": 4}, priority=100)
    job = q.claim_one("w-2")
    assert job is not None and job.id == done and job.ack()

    stream = db.stream("orders")
    for i in range(5):
        stream.publish({"order": i})
    stream.save_offset("billing", 2)
    scheduler = honker.Scheduler(db)
    scheduler.add(name="nightly", queue="reports", schedule="0 3 * * *")
    scheduler.add(name="hourly", queue="reports", schedule="0 * * * *")
    assert scheduler.pause("hourly")
    lock = db.lock("migrations", ttl=120, owner="deployer-7")
    assert lock.acquire()
    with db.transaction() as tx:
        tx.notify("orders", {"id": 1})
        tx.notify("orders", {"id": 2})

    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    row = re.search(r'<tr data-queue="emails">(.*?)</tr>', html, re.S)
    assert row, html
    cells = dict(re.findall(r'data-col="(\w+)">(.*?)</td>', row.group(1), re.S))
    assert ">1<" in cells["pending"]
    assert ">1<" in cells["delayed"]
    assert ">1<" in cells["processing"]
    assert ">1<" in cells["dead"]
    assert cells["done"] == "1"
    assert cells["died"] == "1"
    assert " s" in cells["oldest"]
    assert "billing" in html and ">3<" in html  # lag of billing: 5 events, offset 2
    assert 'data-schedule="nightly"' in html and "state-active" in html
    assert "state-paused" in html and "Resume" in html and "Pause" in html
    assert "migrations" in html and "deployer-7" in html
    assert re.search(r'id="notifications"><strong>2</strong> rows', html)
    assert "UTC" in html and "(in " in html  # absolute and relative times
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"


def test_empty_database_overview(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "No queues yet" in page.text and "No schedules" in page.text


def test_queue_page_filters_searches_and_paginates(db: honker.Database, client: TestClient) -> None:
    q = db.queue("bulk")
    ids = [q.enqueue({"i": i, "tag": "even" if i % 2 == 0 else "odd"}) for i in range(120)]
    dead = dead_job(db, "bulk")

    first = client.get("/queues/bulk")
    assert first.status_code == 200
    assert "Jobs 1\N{EN DASH}50 of 121" in first.text
    assert f'data-job="{dead}"' in first.text  # newest first
    assert "Older →" in first.text and "← Newer" not in first.text

    third = client.get("/queues/bulk?page=3")
    assert "Jobs 101\N{EN DASH}121 of 121" in third.text
    assert f'data-job="{ids[0]}"' in third.text
    assert "Older →" not in third.text

    beyond = client.get("/queues/bulk?page=9")
    assert beyond.status_code == 200 and "No  jobs" not in beyond.text
    assert "on page 9" in beyond.text

    found = client.get("/queues/bulk", params={"q": "odd"})
    assert found.status_code == 200
    assert "of 60" in found.text
    assert f'data-job="{ids[119]}"' in found.text and f'data-job="{ids[118]}"' not in found.text

    dead_only = client.get("/queues/bulk?state=dead")
    assert re.findall(r'data-job="(\d+)"', dead_only.text) == [str(dead)]
    assert 'aria-current="page">Dead' in dead_only.text

    nothing = client.get("/queues/bulk", params={"q": "100%_no\\match", "state": "pending"})
    assert nothing.status_code == 200 and "No pending jobs whose payload contains" in nothing.text


def test_job_page_shows_details(db: honker.Database, client: TestClient) -> None:
    job_id = dead_job(db, error="Traceback (most recent call last):\n  ValueError: bad")
    page = client.get(f"/queues/emails/jobs/{job_id}")
    assert page.status_code == 200
    html = page.text
    assert "{\n  &#34;to&#34;: &#34;dead@example.com&#34;\n}" in html  # pretty-printed JSON
    assert "ValueError: bad" in html
    assert 'data-field="state">dead' in html
    assert 'data-field="attempts">1 of 3' in html
    assert html.count("UTC") >= 3  # created, run at, died


def test_payloads_errors_and_names_are_escaped(db: honker.Database, client: TestClient) -> None:
    name = "<b>q</b>"
    q = db.queue(name)
    job_id = q.enqueue({"html": SCRIPT, "img": "<img src=x onerror=alert(1)>"})
    job = q.claim_one("w")
    assert job is not None and job.fail(SCRIPT)
    honker.Scheduler(db).add(name="<i>s</i>", queue=name, schedule="0 * * * *")

    pages = [
        client.get("/"),
        client.get(f"/queues/{url_part(name)}"),
        client.get(f"/queues/{url_part(name)}/jobs/{job_id}"),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "<b>q</b>" not in page.text and "<i>s</i>" not in page.text
    assert "&lt;b&gt;q&lt;/b&gt;" in pages[0].text and "&lt;i&gt;s&lt;/i&gt;" in pages[0].text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in pages[2].text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2].text
    assert pages[2].text.count("&lt;script&gt;") == 2  # payload and last error


def test_queue_names_with_slashes_and_reserved_characters(
    db: honker.Database, client: TestClient
) -> None:
    name = "team a/emails?x#y%"
    job_id = dead_job(db, name)
    quoted = url_part(name)
    assert quoted == "team%20a%2Femails%3Fx%23y%25"
    overview = client.get("/")
    assert f'href="/queues/{quoted}"' in overview.text
    assert client.get(f"/queues/{quoted}").status_code == 200
    job_url = f"/queues/{quoted}/jobs/{job_id}"
    page = client.get(job_url)
    assert page.status_code == 200
    assert f'hx-get="{job_url}"' in page.text  # the live refresh URL stays encoded
    assert f'name="next" value="{job_url}"' in page.text
    token = csrf_token(client)
    response = client.post(
        f"{job_url}/retry", data={"csrf_token": token, "next": job_url}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == job_url
    assert db.queue(name).find_job(job_id)["state"] == "pending"  # type: ignore[index]


# -- 404 and 400, never 500 -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/queues/unknown",
        "/queues/",
        "/queues/emails/jobs/abc",
        "/queues/emails/jobs/-1",
        "/queues/emails/jobs/1.5",
        "/queues/emails/jobs/0x10",
        "/queues/emails/jobs/999999",
        "/queues/emails/jobs/99999999999999999999999999",
        "/queues/emails/jobs/%E2%91%A0",
        "/queues/unknown/jobs/1",
        "/queues/emails/jobs/1/extra",
        "/static/nope.js",
        "/static/../server.py",
        "/schedules/nightly",
    ],
)
def test_bad_paths_are_404(db: honker.Database, client: TestClient, path: str) -> None:
    db.queue("emails").enqueue({"k": 1})
    response = client.get(path)
    assert response.status_code in (404, 405), (path, response.status_code, response.text)
    if response.status_code == 404:
        assert "Not found" in response.text


def test_job_of_another_queue_is_404(db: honker.Database, client: TestClient) -> None:
    job_id = db.queue("a").enqueue({"k": 1})
    db.queue("b").enqueue({"k": 2})
    assert client.get(f"/queues/a/jobs/{job_id}").status_code == 200
    assert client.get(f"/queues/b/jobs/{job_id}").status_code == 404


def test_finished_job_page_is_404_with_explanation(db: honker.Database, client: TestClient) -> None:
    q = db.queue("emails")
    job_id = q.enqueue({"k": 1})
    job = q.claim_one("w")
    assert job is not None and job.ack()
    response = client.get(f"/queues/emails/jobs/{job_id}")
    assert response.status_code == 404
    assert "finished jobs are deleted" in response.text


@pytest.mark.parametrize(
    "query", ["page=0", "page=abc", "page=-1", "page=99999999999999999999", "state=bogus"]
)
def test_bad_query_parameters_are_400(db: honker.Database, client: TestClient, query: str) -> None:
    db.queue("emails").enqueue({"k": 1})
    response = client.get(f"/queues/emails?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/queues/unknown/jobs/1/retry",
        "/queues/emails/jobs/999999/retry",
        "/queues/emails/jobs/abc/retry",
        "/queues/emails/jobs/99999999999999999999999/cancel",
        "/queues/emails/jobs/1/explode",
        "/queues/unknown/retry-dead",
        "/queues/emails/explode",
        "/schedules/unknown/pause",
        "/schedules/nightly/explode",
    ],
)
def test_actions_on_unknown_things_are_404(
    db: honker.Database, client: TestClient, path: str
) -> None:
    db.queue("emails").enqueue({"k": 1})
    honker.Scheduler(db).add(name="nightly", queue="emails", schedule="0 0 * * *")
    token = csrf_token(client)
    assert post(client, path, token) == 404


def test_get_on_an_action_is_not_allowed(db: honker.Database, client: TestClient) -> None:
    honker.Scheduler(db).add(name="nightly", queue="emails", schedule="0 0 * * *")
    assert client.get("/schedules/nightly/pause").status_code == 405


# -- CSRF --------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_403(db: honker.Database, client: TestClient) -> None:
    job_id = dead_job(db)
    path = f"/queues/emails/jobs/{job_id}/retry"
    csrf_token(client)  # the cookie is set, but the form lacks the token
    assert post(client, path, None) == 403
    assert post(client, path, "0" * 64) == 403
    assert post(client, path, "") == 403
    assert db.queue("emails").find_job(job_id)["state"] == "dead"  # type: ignore[index]


def test_csrf_token_is_bound_to_its_cookie(db: honker.Database) -> None:
    job_id = dead_job(db)
    path = f"/queues/emails/jobs/{job_id}/retry"
    app = create_app(db)
    with TestClient(app, base_url=LOCAL) as alice, TestClient(app, base_url=LOCAL) as mallory:
        mallory_token = csrf_token(mallory)
        csrf_token(alice)
        assert post(alice, path, mallory_token) == 403  # valid token, but not Alice's
        alice.cookies.clear()
        assert post(alice, path, mallory_token) == 403  # no cookie at all
        assert post(mallory, path, mallory_token) == 303


def test_csrf_tokens_die_with_the_secret(db: honker.Database) -> None:
    job_id = dead_job(db)
    path = f"/queues/emails/jobs/{job_id}/retry"
    with TestClient(create_app(db), base_url=LOCAL) as old:
        token = csrf_token(old)
        cookies = dict(old.cookies)
    with TestClient(create_app(db), base_url=LOCAL, cookies=cookies) as new:
        assert post(new, path, token) == 403  # a restarted server has a new secret
    shared = "s3cret"
    with TestClient(create_app(db, csrf_secret=shared), base_url=LOCAL) as one:
        token = csrf_token(one)
        cookies = dict(one.cookies)
    with TestClient(create_app(db, csrf_secret=shared), base_url=LOCAL, cookies=cookies) as two:
        assert post(two, path, token) == 303


# -- actions -------------------------------------------------------------------------------------


def test_retry_one_dead_job(db: honker.Database, client: TestClient) -> None:
    job_id = dead_job(db)
    other = dead_job(db)
    token = csrf_token(client)
    response = client.post(
        f"/queues/emails/jobs/{job_id}/retry",
        data={"csrf_token": token, "next": "/queues/emails?state=dead"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/queues/emails?state=dead"
    q = db.queue("emails")
    assert q.find_job(job_id)["state"] == "pending"  # type: ignore[index]
    assert q.find_job(other)["state"] == "dead"  # type: ignore[index]
    page = client.get(response.headers["location"])
    assert f"Job {job_id} is pending again." in page.text
    assert f"Job {job_id} is pending again." not in client.get("/queues/emails").text


def test_retry_and_discard_all_dead_jobs(db: honker.Database, client: TestClient) -> None:
    ids = [dead_job(db) for _ in range(3)]
    token = csrf_token(client, "/queues/emails")
    assert post(client, "/queues/emails/retry-dead", token, next="/queues/emails") == 303
    q = db.queue("emails")
    assert [q.find_job(i)["state"] for i in ids] == ["pending"] * 3  # type: ignore[index]
    assert "Retried 3 dead job(s)" in client.get("/queues/emails").text

    ids = [dead_job(db) for _ in range(2)]
    assert post(client, "/queues/emails/discard-dead", token) == 303  # not confirmed
    assert all(q.find_job(i) is not None for i in ids)
    assert "Tick the box" in client.get("/").text
    assert post(client, "/queues/emails/discard-dead", token, confirm="yes") == 303
    assert all(q.find_job(i) is None for i in ids)


def test_discard_one_dead_job(db: honker.Database, client: TestClient) -> None:
    job_id = dead_job(db)
    token = csrf_token(client)
    assert post(client, f"/queues/emails/jobs/{job_id}/discard", token) == 303
    assert db.queue("emails").find_job(job_id) is None


def test_cancel_pending_at_once_and_processing_by_request(
    db: honker.Database, client: TestClient
) -> None:
    q = db.queue("emails")
    pending = q.enqueue({"k": 1}, delay=600)
    running = q.enqueue({"k": 2})
    assert q.claim_one("w") is not None
    token = csrf_token(client)
    assert post(client, f"/queues/emails/jobs/{pending}/cancel", token) == 303
    assert q.find_job(pending) is None
    assert f"Cancelled job {pending}." in client.get("/").text
    assert post(client, f"/queues/emails/jobs/{running}/cancel", token) == 303
    assert q.find_job(running)["state"] == "processing"  # type: ignore[index]
    assert f"Asked the worker running job {running} to cancel it." in client.get("/").text
    assert post(client, f"/queues/emails/jobs/{running}/cancel", token) == 303
    assert "already has a cancel request" in client.get("/").text
    assert post(client, f"/queues/emails/jobs/{running}/retry", token) == 303
    assert "not dead: nothing to retry" in client.get("/").text


def test_pause_and_resume_a_schedule(db: honker.Database, client: TestClient) -> None:
    scheduler = honker.Scheduler(db)
    scheduler.add(name="nightly report", queue="reports", schedule="0 3 * * *")
    token = csrf_token(client)
    path = f"/schedules/{url_part('nightly report')}"
    assert post(client, path + "/pause", token) == 303
    assert scheduler.get("nightly report")["enabled"] is False  # type: ignore[index]
    assert "Paused schedule nightly report." in client.get("/").text
    assert post(client, path + "/resume", token) == 303
    assert scheduler.get("nightly report")["enabled"] is True  # type: ignore[index]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "evil",
        "",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
def test_redirects_stay_inside_the_dashboard(
    db: honker.Database, client: TestClient, target: str
) -> None:
    job_id = dead_job(db)
    token = csrf_token(client)
    response = client.post(
        f"/queues/emails/jobs/{job_id}/retry",
        data={"csrf_token": token, "next": target},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


# -- read-only --------------------------------------------------------------------------------


def test_read_only_hides_buttons_and_refuses_actions(db: honker.Database) -> None:
    job_id = dead_job(db)
    pending = db.queue("emails").enqueue({"k": 1})
    honker.Scheduler(db).add(name="nightly", queue="emails", schedule="0 0 * * *")
    with TestClient(create_app(db, read_only=True), base_url=LOCAL) as client:
        pages = [
            client.get("/"),
            client.get("/queues/emails"),
            client.get(f"/queues/emails/jobs/{job_id}"),
            client.get(f"/queues/emails/jobs/{pending}"),
        ]
        for page in pages:
            assert page.status_code == 200
            assert 'method="post"' not in page.text
            buttons = re.findall(r"<button[^>]*>([^<]*)</button>", page.text)
            assert set(buttons) <= {"Search"}, buttons
            assert "read-only" in page.text
        token = re.search(r'name="csrf_token"', pages[1].text)
        assert token is None
        with TestClient(create_app(db), base_url=LOCAL) as writable:
            valid = csrf_token(writable)
            cookies = dict(writable.cookies)
        client.cookies.update(cookies)
        for path in (
            f"/queues/emails/jobs/{job_id}/retry",
            f"/queues/emails/jobs/{job_id}/discard",
            f"/queues/emails/jobs/{pending}/cancel",
            "/queues/emails/retry-dead",
            "/queues/emails/discard-dead",
            "/schedules/nightly/pause",
        ):
            assert post(client, path, valid, confirm="yes") == 403, path
    q = db.queue("emails")
    assert q.find_job(job_id)["state"] == "dead"  # type: ignore[index]
    assert q.find_job(pending) is not None
    assert honker.Scheduler(db).get("nightly")["enabled"] is True  # type: ignore[index]


# -- token and host ----------------------------------------------------------------------------


def test_token_is_required_on_every_request(db: honker.Database) -> None:
    with TestClient(create_app(db, token="t0ken"), base_url=LOCAL) as client:
        for path in ("/", "/queues/x", "/static/htmx.min.js", "/events", "/nope"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert "Token required" in response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.post("/queues/x/retry-dead").status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"Authorization": "Basic t0ken"}).status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        assert client.get("/?token=").status_code == 401
        client.cookies.set("honker_dashboard_auth", "t0ken")  # the token is not the cookie
        assert client.get("/").status_code == 401


def test_bearer_token_is_accepted(db: honker.Database) -> None:
    with TestClient(create_app(db, token="t0ken"), base_url=LOCAL) as client:
        ok = client.get("/", headers={"Authorization": "Bearer t0ken"})
        assert ok.status_code == 200
        assert client.get("/static/dashboard.css", headers={"authorization": "bearer t0ken"})
        assert "honker_dashboard_auth" not in client.cookies


def test_query_token_sets_a_cookie_and_redirects_it_away(db: honker.Database) -> None:
    db.queue("emails").enqueue({"k": 1})
    with TestClient(create_app(db, token="t0ken"), base_url=LOCAL) as client:
        first = client.get("/queues/emails?state=pending&token=t0ken", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/queues/emails?state=pending"
        other = client.get("/queues/a%20b%2Fc?token=t0ken&q=x%26y", follow_redirects=False)
        assert other.headers["location"] == "/queues/a%20b%2Fc?q=x%26y"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Path=/" in cookie and "t0ken" not in cookie
        assert client.get("/queues/emails?state=pending").status_code == 200
        token = csrf_token(client)
        job_id = dead_job(db)
        assert post(client, f"/queues/emails/jobs/{job_id}/retry", token) == 303


def test_host_header_is_checked_without_token(db: honker.Database) -> None:
    with TestClient(create_app(db), base_url=LOCAL) as client:
        for host in ("127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765", "127.1.2.3"):
            assert client.get("/", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", ""):
            assert client.get("/", headers={"host": host}).status_code == 400, host
    with TestClient(create_app(db, allowed_hosts=["dash.example"]), base_url=LOCAL) as client:
        assert client.get("/", headers={"host": "dash.example:443"}).status_code == 200
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    with TestClient(create_app(db, allowed_hosts=["*"]), base_url=LOCAL) as client:
        assert client.get("/", headers={"host": "anything.example"}).status_code == 200
    with TestClient(create_app(db, token="t"), base_url=LOCAL) as client:
        response = client.get("/", headers={"host": "dash.example", "authorization": "Bearer t"})
        assert response.status_code == 200


# -- mounting --------------------------------------------------------------------------------------


def test_mounted_under_a_prefix(db: honker.Database) -> None:
    job_id = dead_job(db)
    outer = Starlette(routes=[Mount("/ops/honker", app=create_app(db, token="t"))])
    with TestClient(outer, base_url=LOCAL) as client:
        first = client.get("/ops/honker/?token=t", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/ops/honker/"
        assert "Path=/ops/honker/" in first.headers["set-cookie"]
        page = client.get("/ops/honker/")
        assert page.status_code == 200
        assert 'href="/ops/honker/static/dashboard.css"' in page.text
        assert 'sse-connect="/ops/honker/events"' in page.text
        assert 'href="/ops/honker/queues/emails"' in page.text
        assert client.get("/ops/honker/static/htmx.min.js").status_code == 200
        job_page = client.get(f"/ops/honker/queues/emails/jobs/{job_id}")
        assert job_page.status_code == 200
        assert f'action="/ops/honker/queues/emails/jobs/{job_id}/retry"' in job_page.text
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', job_page.text)
        assert token
        response = client.post(
            f"/ops/honker/queues/emails/jobs/{job_id}/retry",
            data={"csrf_token": token.group(1), "next": f"/ops/honker/queues/emails/jobs/{job_id}"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/ops/honker/queues/emails/jobs/{job_id}"
        response = client.post(
            f"/ops/honker/queues/emails/jobs/{job_id}/cancel",
            data={"csrf_token": token.group(1), "next": "/elsewhere"},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ops/honker/"
        assert client.get("/ops/honker/nope").status_code == 404


def test_create_app_from_a_path_owns_the_database(db_path: str, db: honker.Database) -> None:
    db.queue("emails").enqueue({"k": 1})
    app = create_app(db_path)
    with TestClient(app, base_url=LOCAL) as client:
        assert "emails" in client.get("/").text
    assert app.state.dashboard.db.closed
    assert not db.closed


# -- packaging and helpers -------------------------------------------------------------------------


def test_import_honker_does_not_import_the_dashboard_dependencies() -> None:
    code = (
        "import sys, honker\n"
        "bad = [m for m in ('starlette', 'jinja2', 'uvicorn', 'honker.dashboard') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env(), timeout=60)


def test_formatting_helpers() -> None:
    assert duration(0) == "0 s"
    assert duration(59) == "59 s"
    assert duration(60) == "1 min"
    assert duration(125) == "2 min 5 s"
    assert duration(3 * 3600 + 60) == "3 h 1 min"
    assert duration(3 * 86400 + 7200) == "3 d 2 h"
    assert rel_time(100, 100) == "now"
    assert rel_time(90, 100) == "10 s ago"
    assert rel_time(220, 100) == "in 2 min"
    assert rel_time(None, 100) == ""
    assert abs_time(0) == "1970-01-01 00:00:00 UTC"
    assert abs_time(None) == ""
    assert abs_time(10**20) == str(10**20)
    assert pretty_json('{"a":[1,2]}') == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert pretty_json("not json <b>") == "not json <b>"
    assert url_part("a/b c?") == "a%2Fb%20c%3F"


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.9.9.9", "localhost", "LOCALHOST", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.2", "example.com", "localhost.evil.example"):
        assert not is_loopback(host), host
    assert host_name("[::1]:8765") == "::1"
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("::1") == "::1"


def test_a_closed_database_gives_503_not_500(db_path: str, db: honker.Database) -> None:
    other = honker.open(db_path)
    app = create_app(other)
    other.close()
    with TestClient(app, base_url=LOCAL) as client:
        for path in ("/", "/queues/emails", "/events"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "Database unavailable" in response.text


def test_head_requests(db: honker.Database, client: TestClient) -> None:
    db.queue("emails").enqueue({"k": 1})
    response = client.head("/queues/emails")
    assert response.status_code == 200 and response.content == b""
