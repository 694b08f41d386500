"""The ntfy protocol: the fake server's behaviour and belfry's publisher against it.

The fake runs as a real uvicorn server on 127.0.0.1 (in a thread here; as its own
process in the service tests).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from belfry.fake_ntfy import Access, FakeNtfy, FakeNtfyServer, Fault
from belfry.ntfy import Notification, NtfyConfig, NtfyPublisher


@pytest.fixture
def server() -> Iterator[FakeNtfyServer]:
    fake = FakeNtfy(
        users={"alice": "wonderland"},
        tokens={"tk_alice": "alice"},
        access=[Access("alice", "private*", True, True), Access("*", "public*", True, True)],
        default_access="deny-all",
    )
    with FakeNtfyServer(fake) as running:
        yield running


@pytest.fixture
def http(server: FakeNtfyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def poll(http: httpx.Client, topic: str, **params: str) -> list[dict[str, object]]:
    response = http.get(f"/{topic}/json", params={"poll": "1", **params})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_header_aliases_and_rfc2047(http: httpx.Client) -> None:
    encoded = "=?UTF-8?B?" + base64.b64encode("Café ☕".encode()).decode() + "?="
    forms = [
        {"X-Title": "a", "X-Priority": "5", "X-Tags": "x,y", "X-Click": "https://a"},
        {"Title": "b", "Priority": "high", "Tags": "z", "Click": "https://b"},
        {"t": "c", "prio": "min", "tag": "w"},
        {"ti": encoded, "p": "2", "ta": "u , v"},
    ]
    for headers in forms:
        assert http.post("/public-a", content="hello", headers=headers).status_code == 200
    got = poll(http, "public-a")
    assert [(m["title"], m["priority"], m["tags"]) for m in got] == [
        ("a", 5, ["x", "y"]),
        ("b", 4, ["z"]),
        ("c", 1, ["w"]),
        ("Café ☕", 2, ["u", "v"]),
    ]
    assert got[0]["click"] == "https://a"
    assert {"id", "time", "expires", "event", "topic", "message"} <= set(got[0])
    assert got[0]["event"] == "message" and got[0]["message"] == "hello"
    # Query parameters work like headers; an empty body is "triggered".
    http.put("/public-b", params={"title": "q", "priority": "4"})
    expected = {"title": "q", "priority": 4, "message": "triggered"}
    assert expected.items() <= poll(http, "public-b")[0].items()


def test_json_publish_and_errors(http: httpx.Client) -> None:
    ok = http.post("/", json={"topic": "public-j", "message": "hi", "title": "T",
                              "tags": ["a"], "priority": 3, "click": "https://c"})
    assert ok.status_code == 200 and ok.json()["topic"] == "public-j"
    assert poll(http, "public-j")[0]["title"] == "T"
    assert http.post("/", content=b"not json").json()["code"] == 40017
    assert http.post("/", json={"topic": "bad topic"}).json()["code"] == 40009
    assert http.post("/", json={"topic": "public-j", "priority": 9}).json()["code"] == 40007
    assert http.post("/public-j", content="x", headers={"Priority": "9"}).status_code == 400
    assert http.post("/v1", content="x").status_code == 404  # reserved name
    assert http.post("/" + "x" * 65, content="x").status_code == 404


def test_size_limit(http: httpx.Client) -> None:
    assert http.post("/public-s", content="x" * 4096).status_code == 200
    big = http.post("/public-s", content="x" * 4097)
    assert big.status_code == 413 and big.json()["code"] == 41301
    assert http.post("/", json={"topic": "public-s", "message": "é" * 2049}).status_code == 413


def test_auth_401_and_403(http: httpx.Client) -> None:
    assert http.post("/private-1", content="x").status_code == 403  # anonymous, deny-all
    bad = http.post("/private-1", content="x", headers={"Authorization": "Bearer tk_nope"})
    assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
    assert http.post("/private-1", content="x", auth=("alice", "wrong")).status_code == 401
    assert http.post("/private-1", content="x", auth=("alice", "wonderland")).status_code == 200
    assert http.post(
        "/private-1", content="x", headers={"Authorization": "Bearer tk_alice"}
    ).status_code == 200
    assert http.post("/private-1", content="x", auth=("", "tk_alice")).status_code == 200
    assert http.post("/other", content="x", auth=("alice", "wonderland")).status_code == 403
    assert http.get("/private-1/json", params={"poll": "1"}).status_code == 403


def test_poll_since(http: httpx.Client) -> None:
    for text in ("one", "two", "three"):
        http.post("/public-p", content=text)
    every = poll(http, "public-p")
    assert [m["message"] for m in every] == ["one", "two", "three"]
    assert [m["message"] for m in poll(http, "public-p", since=str(every[0]["id"]))] == [
        "two", "three"]
    assert [m["message"] for m in poll(http, "public-p", since="latest")] == ["three"]
    assert poll(http, "public-p", since="none") == []
    assert len(poll(http, "public-p", since="1h")) == 3
    http.post("/public-q", content="four")
    assert len(poll(http, "public-p,public-q")) == 4


def test_injected_faults(server: FakeNtfyServer, http: httpx.Client) -> None:
    r = http.post("/v1/fake/faults", json={"status": 429, "count": 2, "retry_after": "7",
                                           "topic": "public-f"})
    assert r.status_code == 201
    assert http.post("/public-other", content="x").status_code == 200  # other topic
    for _ in range(2):
        limited = http.post("/public-f", content="x")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert limited.json()["code"] == 42901
    assert http.post("/public-f", content="x").status_code == 200
    server.fake.inject_fault(Fault(status=503))
    assert http.post("/public-f", content="x").status_code == 503
    assert len(poll(http, "public-f")) == 1
    statuses = [r["status"] for r in http.get("/v1/fake/requests").json()]
    assert statuses == [200, 429, 429, 200, 503]
    assert http.delete("/v1/fake/messages").status_code == 204
    assert poll(http, "public-f") == []


async def test_publisher_headers_form(server: FakeNtfyServer) -> None:
    publisher = NtfyPublisher(NtfyConfig(base_url=server.url, token="tk_alice"))
    try:
        note = Notification("private-h", "body ☕", "Tïtle", ["a", "b"], 5, "https://x.y/z")
        result = await publisher.publish(note)
    finally:
        await publisher.aclose()
    assert result.outcome == "delivered" and result.http_status == 200 and result.ntfy_id
    [message] = server.fake.messages("private-h")
    assert (message["message"], message["title"], message["tags"], message["priority"],
            message["click"]) == ("body ☕", "Tïtle", ["a", "b"], 5, "https://x.y/z")
    request = server.fake.requests()[-1]
    assert request["path"] == "/private-h"
    assert request["headers"]["authorization"] == "Bearer tk_alice"
    assert request["headers"]["title"].startswith("=?UTF-8?B?")
    assert "priority" not in server.fake.requests()[-1]["body"]


async def test_publisher_json_form_and_basic_auth(server: FakeNtfyServer) -> None:
    config = NtfyConfig(base_url=server.url, user="alice", password="wonderland", form="json")
    publisher = NtfyPublisher(config)
    try:
        result = await publisher.publish(Notification("private-j", "hi", priority=3))
    finally:
        await publisher.aclose()
    assert result.outcome == "delivered"
    request = server.fake.requests()[-1]
    assert request["path"] == "/" and json.loads(request["body"]) == {
        "topic": "private-j", "message": "hi"}
    assert request["headers"]["authorization"].startswith("Basic ")
    assert "priority" not in server.fake.messages("private-j")[0]  # default is omitted


async def test_publisher_classifies_answers(server: FakeNtfyServer) -> None:
    publisher = NtfyPublisher(NtfyConfig(base_url=server.url, token="tk_alice", timeout_s=1))
    note = Notification("private-c", "x")
    try:
        server.fake.inject_fault(Fault(status=429, retry_after="3"))
        limited = await publisher.publish(note)
        assert (limited.outcome, limited.http_status, limited.retry_after_s) == ("retry", 429, 3)
        assert "limit reached" in (limited.error or "")
        server.fake.inject_fault(Fault(status=500))
        broken = await publisher.publish(note)
        assert (broken.outcome, broken.retry_after_s) == ("retry", None)
        for status in (400, 413):
            server.fake.inject_fault(Fault(status=status))
            assert (await publisher.publish(note)).outcome == "permanent"
        stalled = Fault(status=None, stall_s=5)
        server.fake.inject_fault(stalled)
        timed_out = await publisher.publish(note)
        assert timed_out.outcome == "retry" and "no answer" in (timed_out.error or "")
        before = len(server.fake.requests())
        too_big = await publisher.publish(Notification("private-c", "x" * 4097))
        assert too_big.outcome == "permanent" and "not sent" in (too_big.error or "")
        assert len(server.fake.requests()) == before  # refused before sending
    finally:
        await publisher.aclose()
    anonymous = NtfyPublisher(NtfyConfig(base_url=server.url))
    wrong = NtfyPublisher(NtfyConfig(base_url=server.url, token="tk_wrong"))
    try:
        forbidden = await anonymous.publish(note)
        assert (forbidden.outcome, forbidden.http_status) == ("permanent", 403)
        unauthorized = await wrong.publish(note)
        assert (unauthorized.outcome, unauthorized.http_status) == ("permanent", 401)
        assert unauthorized.error == (
            "HTTP 401 Unauthorized: unauthorized "
            "(ntfy error 40101, https://ntfy.sh/docs/publish/#authentication)"
        )
    finally:
        await anonymous.aclose()
        await wrong.aclose()


async def test_publisher_unreachable_server_is_transient() -> None:
    publisher = NtfyPublisher(NtfyConfig(base_url="http://127.0.0.1:9", timeout_s=2))
    try:
        result = await publisher.publish(Notification("t", "x"))
    finally:
        await publisher.aclose()
    assert result.outcome == "retry" and "could not reach" in (result.error or "")
