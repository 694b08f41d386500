"""The HTTP API of a running ``belfry serve`` (auth, validation, CRUD) and the CLI
talking to it with ``--url``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from belfry_helpers import MAIN, belfry_env, run_belfry

from helpers import Child

TOKEN = "s3cret-token"


@dataclass
class Api:
    url: str
    http: httpx.Client
    env: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server per engine for the module: API + scheduler, no worker (nothing is
    delivered), on a SQLite file or a fresh schema of the session's PostgreSQL cluster."""
    if request.param == "postgres":
        db_path = request.getfixturevalue("pg_server").fresh_url()
    else:
        db_path = str(tmp_path_factory.mktemp("api") / "belfry.db")
    env = belfry_env(db_path, "http://127.0.0.1:9", BELFRY_TOPIC="api-default")
    child = Child(MAIN.format(module="belfry.cli"), "serve", "--port", "0", "--token", TOKEN,
                  "--no-worker", env=env)
    try:
        line = child.readline(timeout=30)
        assert "API on " in line, (line, child.stderr)
        url = line.rsplit(" ", 1)[1]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            yield Api(url, http, env)
    finally:
        child.kill()


def create(api: Api, **body: Any) -> dict[str, Any]:
    response = api.http.post("/reminders", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_health_and_docs_are_open(api: Api) -> None:
    health = httpx.get(f"{api.url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["components"] == {"api": True, "scheduler": True}
    schema = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    assert {"/reminders", "/reminders/{reminder_id}", "/reminders/{reminder_id}/deliveries",
            "/health"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert "swagger" in httpx.get(f"{api.url}/docs", timeout=10).text.lower()


def test_bearer_token_is_required(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx.get(f"{api.url}/reminders", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == {"detail": "missing or wrong bearer token"}
        assert response.headers["WWW-Authenticate"] == "Bearer"
    # Auth is checked before the body is looked at.
    assert httpx.post(f"{api.url}/reminders", json={}, timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"message": "x", "every": "1h", "priority": 9}, "priority", "must be 1-5"),
        ({"message": "x", "every": "1h", "topic": "no spaces"}, "topic", "not a valid ntfy"),
        ({"message": "x", "cron": "0 25 * * *"}, "cron", "out of range"),
        ({"message": "x", "cron": "0 9 * * *", "tz": "Moon/Base"}, "tz", "unknown time zone"),
        ({"message": "x", "in": "10"}, "in", "add a unit"),
        ({"message": "x"}, "body", "exactly one of at, in, cron, every"),
        ({"message": "x", "in": "1m", "every": "1h"}, "body", "exactly one of"),
        ({"message": "é" * 2049, "every": "1h"}, "message", "4098 bytes"),
        ({"message": "x", "every": "1h", "colour": "red"}, "colour", "Extra inputs"),
        ({"every": "1h"}, "message", "Field required"),
        ({"message": "x", "every": "1h", "click": "not a url"}, "click", "not a URL"),
    ],
)
def test_validation_errors_are_422_with_a_clear_message(
    api: Api, body: dict[str, Any], field: str, words: str
) -> None:
    response = api.http.post("/reminders", json=body)
    assert response.status_code == 422, response.text
    data = response.json()
    assert words in data["detail"]
    assert any(e["field"] == field and words in e["message"] for e in data["errors"]), data


def test_other_client_errors(api: Api) -> None:
    past = api.http.post("/reminders", json={"message": "x", "at": "2020-01-01T09:00"})
    assert past.status_code == 422 and "in the past" in past.json()["detail"]
    broken = api.http.post("/reminders", content=b"{oops", headers={"Content-Type":
                                                                      "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    assert api.http.get("/reminders/999").json() == {"detail": "reminder 999 not found"}
    assert api.http.get("/reminders/999").status_code == 404
    assert api.http.get("/reminders/abc").status_code == 422
    assert api.http.get("/reminders", params={"state": "bogus"}).status_code == 422
    r = create(api, message="x", every="1h")
    api.http.post(f"/reminders/{r['id']}/pause")
    conflict = api.http.post(f"/reminders/{r['id']}/snooze", json={"for": "5m"})
    assert conflict.status_code == 409 and "resume it first" in conflict.json()["detail"]
    both = api.http.post(f"/reminders/{r['id']}/snooze", json={"for": "5m", "until": "09:00"})
    assert both.status_code == 422


def test_crud(api: Api) -> None:
    r = create(api, message="stand-up", cron="0 9 * * 1-5", tz="Europe/Paris", title="Daily",
               tags=["alarm_clock"], priority="high", click="https://meet.example/x")
    assert (r["kind"], r["cron"], r["tz"], r["priority"], r["priority_name"], r["topic"]) == (
        "cron", "0 9 * * 1-5", "Europe/Paris", 4, "high", "api-default")
    assert r["next_at"].endswith(("T09:00:00+01:00", "T09:00:00+02:00"))
    assert r["state"] == "active" and r["last_delivery"] is None
    rid = r["id"]
    assert api.http.get(f"/reminders/{rid}").json() == r
    assert rid in [x["id"] for x in api.http.get("/reminders").json()]
    patched = api.http.patch(f"/reminders/{rid}", json={"title": None, "every": "2h",
                                                         "tags": ["a", "b"]}).json()
    assert (patched["title"], patched["kind"], patched["every_s"], patched["tags"]) == (
        None, "every", 7200, ["a", "b"])
    assert api.http.post(f"/reminders/{rid}/pause").json()["state"] == "paused"
    paused = api.http.get("/reminders", params={"state": "paused"}).json()
    assert rid in [x["id"] for x in paused] and {x["state"] for x in paused} == {"paused"}
    resumed = api.http.post(f"/reminders/{rid}/resume").json()
    assert resumed["state"] == "active" and resumed["next_at"] is not None
    snoozed = api.http.post(f"/reminders/{rid}/snooze", json={"for": "10m"}).json()
    assert snoozed["snoozed_until"] is not None and snoozed["next_at"] == snoozed["snoozed_until"]
    assert api.http.post(f"/reminders/{rid}/send").status_code == 200
    assert api.http.get(f"/reminders/{rid}/deliveries").json() == []
    assert api.http.delete(f"/reminders/{rid}").status_code == 204
    assert api.http.get(f"/reminders/{rid}").status_code == 404
    once = create(api, message="tea", at="2099-06-01T16:00", tz="UTC")
    assert once["due_at"] == "2099-06-01T16:00:00+00:00" == once["next_at"]


def test_cli_against_a_running_server(api: Api) -> None:
    env = belfry_env("/nonexistent/never-used.db", BELFRY_URL=api.url, BELFRY_TOKEN=TOKEN)

    def cli(*args: str, code: int = 0) -> str:
        out = run_belfry(*args, env=env)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        return out.stdout + out.stderr

    added = cli("add", "water the plants", "--cron", "0 8 * * *", "--tz", "Asia/Tokyo",
                "--tag", "potted_plant", "--topic", "garden")
    rid = added.split()[2].rstrip(":")
    assert added.startswith(f"added reminder {rid}: cron 0 8 * * * (Asia/Tokyo), next ")
    assert "+09:00" in added
    listing = cli("list")
    assert "water the plants" in listing and "garden" in listing
    shown = cli("show", rid)
    assert "potted_plant" in shown and "no deliveries yet" in shown
    assert "updated reminder" in cli("edit", rid, "--every", "1d", "--priority", "max")
    assert "paused reminder" in cli("pause", rid)
    assert "resumed reminder" in cli("resume", rid)
    assert "snoozed reminder" in cli("snooze", rid, "15m")
    assert "deleted reminder" in cli("delete", rid)
    assert f"reminder {rid} not found" in cli("show", rid, code=1)
    assert "priority: must be 1-5" in cli("add", "x", "--every", "1h", "--priority", "11", code=2)
    assert "give a duration" in cli("snooze", "1", code=2)
    # --at from the CLI is read in the CLI's zone (BELFRY_TZ here), not the server's.
    at = cli("add", "dinner", "--at", "2099-01-01T19:00", "--json")
    assert '"due_at": "2099-01-01T19:00:00+01:00"' in at and '"tz": "Europe/Paris"' in at
    no_token = dict(env, BELFRY_TOKEN="")
    out = run_belfry("list", env=no_token)
    assert out.returncode == 1 and "missing or wrong bearer token" in out.stderr
    unreachable = dict(env, BELFRY_URL="http://127.0.0.1:9")
    out = run_belfry("list", env=unreachable)
    assert out.returncode == 1 and "cannot reach belfry" in out.stderr


def test_serve_refuses_non_loopback_without_a_token(tmp_path: Any) -> None:
    env = belfry_env(str(tmp_path / "x.db"))
    out = run_belfry("serve", "--host", "0.0.0.0", "--port", "0", env=env)
    assert out.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a token" in out.stderr


HUGE_IDS = ["99999999999999999999999", "9223372036854775808", "-9223372036854775809"]


@pytest.mark.parametrize("rid", HUGE_IDS)
def test_ids_sqlite_cannot_hold_are_404s(api: Api, rid: str) -> None:
    calls = [
        ("GET", f"/reminders/{rid}", None),
        ("PATCH", f"/reminders/{rid}", {"title": "t"}),
        ("DELETE", f"/reminders/{rid}", None),
        ("POST", f"/reminders/{rid}/pause", None),
        ("POST", f"/reminders/{rid}/resume", None),
        ("POST", f"/reminders/{rid}/snooze", {"for": "5m"}),
        ("POST", f"/reminders/{rid}/send", None),
        ("POST", f"/reminders/{rid}/retry", None),
        ("GET", f"/reminders/{rid}/deliveries", None),
    ]
    for method, path, body in calls:
        response = api.http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": f"reminder {rid} not found"}
    assert api.http.get("/reminders/9223372036854775807").status_code == 404  # largest: fine


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"priority": True}, "priority", "must be 1-5 or one of min, low, default, high, max"),
        ({"priority": False}, "priority", "(got False)"),
        ({"priority": 4.0}, "priority", "(got 4.0)"),
        ({"message": True}, "message", "valid string"),
        ({"message": 5}, "message", "valid string"),
        ({"tags": [True]}, "tags.0", "valid string"),
        ({"title": 1}, "title", "valid string"),
    ],
)
def test_wrong_json_types_are_422_not_coerced(
    api: Api, body: dict[str, Any], field: str, words: str
) -> None:
    before = api.http.get("/reminders").json()
    response = api.http.post("/reminders", json={"message": "x", "every": "1h", **body})
    assert response.status_code == 422, response.text
    assert any(e["field"] == field and words in e["message"] for e in response.json()["errors"])
    assert api.http.get("/reminders").json() == before  # nothing was created
    r = create(api, message="strict", every="1h", priority=2)
    patched = api.http.patch(f"/reminders/{r['id']}", json=body)
    assert patched.status_code == 422, patched.text
    assert api.http.get(f"/reminders/{r['id']}").json() == r  # nothing changed
    snooze = api.http.post(f"/reminders/{r['id']}/snooze", json={"for": 600})
    assert snooze.status_code == 422


def test_cli_with_url_reports_huge_ids_in_one_line(api: Api) -> None:
    env = belfry_env("/nonexistent/never-used.db", BELFRY_URL=api.url, BELFRY_TOKEN=TOKEN)
    for command in ("show", "delete"):
        out = run_belfry(command, HUGE_IDS[0], env=env)
        assert out.returncode == 1
        assert out.stderr == f"belfry: error: reminder {HUGE_IDS[0]} not found\n"
