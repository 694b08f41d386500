"""Fixtures of the dashboard tests.

* ``client``: a Starlette ``TestClient`` on ``create_app(db)`` (in-process HTTP).
* ``start_dashboard``: starts ``honker.dashboard.server.serve`` in a real child process on
  a free loopback port and returns a :class:`Dashboard` (URL, process); stopped with SIGINT
  at teardown, which must exit 0.
* ``browser`` (per module) / ``page``: Debian's Chromium (``/usr/bin/chromium``) driven by
  Playwright. Skipped, with the reason, only when Chromium or Playwright is missing; fails
  instead when ``HONKER_BROWSER_REQUIRED=1``. The Makefile installs Chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dashboard_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCAL,
    SERVE,
    SWAP_COUNTER,
    Dashboard,
    PageProbe,
)
from starlette.testclient import TestClient

import honker
from helpers import Child
from honker.dashboard import create_app


@pytest.fixture
def client(db: honker.Database) -> Iterator[TestClient]:
    """In-process HTTP client on a dashboard without token, not read-only."""
    with TestClient(create_app(db), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def start_dashboard(
    db: honker.Database, db_path: str, children: list[Child]
) -> Iterator[Callable[..., Dashboard]]:
    """Factory: ``start_dashboard(token=None, read_only=False, env=None,
    relative_path=False)``; the server's environment has no HONKER_DASHBOARD_TOKEN unless
    ``env`` sets it."""
    started: list[Dashboard] = []

    def start(
        token: str | None = None,
        read_only: bool = False,
        env: dict[str, str] | None = None,
        relative_path: bool = False,
    ) -> Dashboard:
        from helpers import python_env

        child_env = python_env()
        child_env.pop("HONKER_DASHBOARD_TOKEN", None)
        child_env["PYTHONWARNINGS"] = "default"  # surface warnings: teardown checks stderr
        child_env.update(env or {})
        flags = ("1" if read_only else "0", "1" if relative_path else "0")
        child = Child(SERVE, db_path, token or "", *flags, env=child_env)
        children.append(child)
        line = child.readline(timeout=30)
        match = re.search(r" at (http://127\.0\.0\.1:\d+/)", line)
        assert match, f"unexpected first line {line!r}; stderr: {child.stderr}"
        dashboard = Dashboard(url=match.group(1), child=child, stdout=[line])
        started.append(dashboard)
        return dashboard

    yield start
    for dashboard in started:
        if dashboard.child.proc.poll() is None:
            rc = dashboard.stop()
            assert rc == 0, f"dashboard exited with {rc}; stderr: {dashboard.child.stderr}"
            assert "honker dashboard: stopped" in dashboard.stdout
        stderr = dashboard.child.stderr
        for bad in ("Traceback", "ERROR", "Task was destroyed", "Warning"):
            assert bad not in stderr, f"dashboard stderr: {stderr}"


def _browser_unavailable(reason: str) -> None:
    if os.environ.get("HONKER_BROWSER_REQUIRED") == "1":
        pytest.fail(f"browser tests required (HONKER_BROWSER_REQUIRED=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (one per test module and worker)."""
    if not os.access(CHROMIUM, os.X_OK):
        _browser_unavailable(
            f"Chromium is not installed at {CHROMIUM} (install it: apt-get install -y chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[PageProbe]:
    """A fresh browser context and page recording console errors and dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    # Count htmx swaps on <html data-swaps>: tests wait for it with locators, since the
    # dashboard's Content-Security-Policy forbids the eval behind page.wait_for_function.
    context.add_init_script(SWAP_COUNTER)
    page = context.new_page()
    page.set_default_timeout(15_000)
    probe = PageProbe(page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            probe.errors.append(message.text)

    def on_dialog(dialog: Any) -> None:
        probe.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: probe.errors.append(str(exc)))
    page.on("dialog", on_dialog)
    page.on(
        "framenavigated",
        lambda frame: probe.navigations.append(frame.url) if frame == page.main_frame else None,
    )
    try:
        yield probe
    finally:
        context.close()
