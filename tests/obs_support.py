"""Helpers of the observability tests: CLI worker processes of ``apps.obsapp``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from helpers import Child, python_env

T = TypeVar("T")

CLI = """
import sys
from honker.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def app_env(db_path: str, **extra: str) -> dict[str, str]:
    env = python_env()
    env["HONKER_TEST_DB"] = db_path
    env.pop("HONKER_OTEL", None)
    env.update(extra)
    return env


def cli(db_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m honker ARGS`` run to completion (``$HONKER_TEST_DB`` = ``db_path``)."""
    return subprocess.run(
        [sys.executable, "-m", "honker", *args],
        capture_output=True,
        text=True,
        env=app_env(db_path),
        timeout=60,
    )


def start_worker(
    db_path: str,
    *args: str,
    env: dict[str, str] | None = None,
    children: list[Child],
    preamble: list[str] | None = None,
) -> Child:
    """A ``python -m honker worker apps.obsapp:db`` process, started (read up to its
    ``pid=`` line; earlier lines go to ``preamble``)."""
    child = Child(
        CLI, "worker", "apps.obsapp:db", "--concurrency", "1", *args, env=env or app_env(db_path)
    )
    children.append(child)
    while True:
        line = child.readline()
        if line.startswith("honker worker: pid="):
            return child
        if preamble is not None:
            preamble.append(line)


def metrics_url(line: str) -> str | None:
    match = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
    return match.group(1) if match else None


def read_url(child: Child, prefix: str) -> str:
    """Skip the child's lines until one names the metrics URL; return it."""
    while True:
        line = child.readline()
        url = metrics_url(line)
        if line.startswith(prefix) and url:
            return url


def eventually(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.1)
