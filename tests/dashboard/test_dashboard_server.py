"""``serve()`` and ``python -m honker dashboard``: binding policy, exit codes, the token from
the environment, live events over a real socket, and clean shutdown with open streams."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx2
import pytest
from dashboard_support import Dashboard

import honker
from helpers import Child, python_env
from honker.dashboard.server import serve

pytestmark = pytest.mark.engines

ENQUEUE = """
import sys
import honker
db = honker.open(sys.argv[1])
job_id = db.queue("emails").enqueue({"from": "another process"})
print("enqueued", job_id, flush=True)
db.close()
"""


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONKER_DASHBOARD_TOKEN", raising=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "example.com"])
def test_serve_refuses_non_loopback_without_token(
    db_path: str, db: honker.Database, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve(db_path, host=host, port=0) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("honker: error: refusing to serve")
    assert "--token" in err and "HONKER_DASHBOARD_TOKEN" in err


def test_cli_refuses_non_loopback_without_token(db_path: str, db: honker.Database) -> None:
    env = python_env()
    env.pop("HONKER_DASHBOARD_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "honker", "dashboard", db_path, "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "refusing to serve" in result.stderr


def test_serve_rejects_a_missing_database(
    tmp_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve(f"{tmp_path}/missing.db", port=0) == 2
    assert "no database file" in capsys.readouterr().err


def test_serve_rejects_an_invalid_port(
    db_path: str, db: honker.Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve(db_path, port=70000) == 2
    assert "invalid port 70000" in capsys.readouterr().err


def test_serve_reports_a_port_in_use(
    db_path: str, db: honker.Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert serve(db_path, port=port) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_token_from_the_environment(start_dashboard: Callable[..., Dashboard]) -> None:
    dash = start_dashboard(env={"HONKER_DASHBOARD_TOKEN": "from-env"})
    assert "token is required" in dash.child.readline()
    assert httpx2.get(dash.url, timeout=10).status_code == 401
    ok = httpx2.get(dash.url, headers={"Authorization": "Bearer from-env"}, timeout=10)
    assert ok.status_code == 200 and "honker" in ok.text
    with httpx2.Client(base_url=dash.url, timeout=10, follow_redirects=True) as client:
        first = client.get("/?token=from-env")  # redirected, cookie kept by the client
        assert first.status_code == 200 and first.url.query == b""
        assert client.get("/static/htmx.min.js").status_code == 200


def _events(url: str) -> Iterator[tuple[float, str]]:
    """(arrival time, data) of each SSE event of a dashboard's /events stream."""
    with httpx2.stream("GET", url + "events", timeout=httpx2.Timeout(20.0)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield time.monotonic(), line[len("data: ") :]


def test_events_follow_commits_of_other_processes(
    start_dashboard: Callable[..., Dashboard], db_path: str, children: list[Child]
) -> None:
    dash = start_dashboard()
    events = _events(dash.url)
    _, first = next(events)
    assert first == "connected"
    started = time.monotonic()
    writer = Child(ENQUEUE, db_path)
    children.append(writer)
    assert writer.readline().startswith("enqueued ")
    arrived, data = next(events)
    # The periodic refresh comes only after 5 s; this one is the commit's wake-up.
    assert data == "change"
    assert arrived - started < 4.0
    events.close()
    page = httpx2.get(dash.url + "queues/emails", timeout=10)
    assert "another process" in page.text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_promptly_with_open_event_streams(
    start_dashboard: Callable[..., Dashboard], sig: int
) -> None:
    dash = start_dashboard()
    events = [_events(dash.url), _events(dash.url)]
    for stream in events:
        assert next(stream)[1] == "connected"
    started = time.monotonic()
    assert dash.stop(sig) == 0
    assert time.monotonic() - started < 3.0
    assert dash.stdout[-1] == "honker dashboard: stopped"
    for stream in events:
        assert list(stream) == []  # the server ended the streams
    assert "Traceback" not in dash.child.stderr


def test_cli_serves_until_interrupted(
    db_path: str, db: honker.Database, children: list[Child]
) -> None:
    db.queue("emails").enqueue({"k": 1})
    code = "import sys\nfrom honker.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    env = python_env()
    env.pop("HONKER_DASHBOARD_TOKEN", None)
    child = Child(code, "dashboard", db_path, "--port", "0", "--read-only", env=env)
    children.append(child)
    line = child.readline()
    assert line.startswith("honker dashboard: serving ") and line.endswith("/ (read-only)")
    url = line.split(" at ")[1].split(" ")[0]
    page = httpx2.get(url + "queues/emails", timeout=10)
    assert page.status_code == 200 and "read-only" in page.text
    assert 'method="post"' not in page.text
    child.proc.send_signal(signal.SIGINT)
    assert child.wait(timeout=10) == 0
    assert child.drain() == ["honker dashboard: stopped"]
