"""Process helpers for the belfry tests (importable as ``belfry_helpers``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from helpers import Child, python_env

MAIN = """
import sys
from {module} import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Fake:
    """A fake ntfy process and helpers to read it back and inject faults."""

    child: Child
    url: str
    token: str | None = None

    def messages(self, topic: str) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        response = httpx.get(
            f"{self.url}/{topic}/json", params={"poll": "1"}, headers=headers, timeout=10
        )
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines() if line]

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/v1/fake/requests", timeout=10).json())

    def fault(self, **fault: Any) -> None:
        response = httpx.post(f"{self.url}/v1/fake/faults", json=fault, timeout=10)
        assert response.status_code == 201, response.text

    def wait_messages(self, topic: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages(topic)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {count} messages on {topic!r}: {got}")
            time.sleep(0.1)


@dataclass
class Serve:
    """A ``belfry serve`` (or ``belfry worker``) process."""

    child: Child
    url: str
    env: dict[str, str] = field(default_factory=dict)
    line: str = ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if sig == signal.SIGKILL:
            self.child.kill()
            return -9
        self.child.proc.send_signal(sig)
        return self.child.wait(timeout=timeout)


def belfry_env(db_path: str, fake_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for belfry processes: the database, the fake ntfy, a default topic."""
    env = python_env()
    for name in list(env):
        if name.startswith("BELFRY_"):
            del env[name]
    env["BELFRY_DB"] = db_path
    env["BELFRY_TZ"] = "Europe/Paris"
    if fake_url is not None:
        env["BELFRY_NTFY_URL"] = fake_url
    env.update(extra)
    return env


def run_belfry(
    *args: str, env: dict[str, str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """``python -m belfry ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "belfry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def belfry_json(*args: str, env: dict[str, str]) -> Any:
    """Run a belfry command with ``--json`` and decode its output."""
    out = run_belfry(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
