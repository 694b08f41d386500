"""Shared helpers of the dashboard tests (fixtures are in this directory's conftest.py)."""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from helpers import Child

CHROMIUM = os.environ.get("HONKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
LOCAL = "http://127.0.0.1"

SERVE = """
import os, sys
from honker.dashboard.server import serve
path, token, read_only = sys.argv[1], sys.argv[2] or None, sys.argv[3] == "1"
if sys.argv[4] == "1":  # serve a relative path (as a user typing 'app.db' would)
    os.chdir(os.path.dirname(path))
    path = os.path.basename(path)
raise SystemExit(serve(path, host="127.0.0.1", port=0, token=token, read_only=read_only))
"""

# Counts htmx swaps on <html data-swaps>: tests wait for it with locators, since the
# dashboard's Content-Security-Policy forbids the eval behind page.wait_for_function.
SWAP_COUNTER = """
document.addEventListener("htmx:afterSwap", () => {
  const root = document.documentElement;
  root.dataset.swaps = String(Number(root.dataset.swaps || 0) + 1);
});
"""


def csrf_token(client: TestClient, path: str = "/") -> str:
    """GET ``path`` (setting the CSRF cookie) and return the form token in the page."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', response.text)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass
class Dashboard:
    """A dashboard server running in a child process."""

    url: str
    child: Child
    stdout: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Signal the server and wait for it; returns the exit code."""
        if self.child.proc.poll() is None:
            self.child.proc.send_signal(sig)
        rc = self.child.wait(timeout=timeout)
        self.stdout.extend(self.child.drain())
        return rc


@dataclass
class PageProbe:
    """A browser page plus everything it reported: console errors, dialogs, navigations."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)


def screenshot(page: Any, name: str, docs: bool = False) -> None:
    """Save a full-page screenshot as tests/screenshots/NAME.png; with ``docs`` and
    HONKER_DOCS_SCREENSHOTS=1 also as docs/screenshots/NAME.png (the documentation's)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("HONKER_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=True)
