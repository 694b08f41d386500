"""Fixtures for belfry: the fake ntfy server and ``belfry serve`` as real OS processes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from belfry_helpers import MAIN, Fake, Serve

from helpers import Child


@pytest.fixture
def start_fake(children: list[Child]) -> Callable[..., Fake]:
    """Start ``python -m belfry.fake_ntfy --port 0 ARGS``."""

    def start(*args: str) -> Fake:
        child = Child(MAIN.format(module="belfry.fake_ntfy"), "--port", "0", *args)
        children.append(child)
        line = child.readline(timeout=30)
        assert line.startswith("fake ntfy listening on "), line
        return Fake(child, line.rsplit(" ", 1)[1])

    return start


@pytest.fixture
def fake(start_fake: Callable[..., Fake]) -> Fake:
    """A fake ntfy server open to everyone."""
    return start_fake()


@pytest.fixture
def start_serve(children: list[Child]) -> Callable[..., Serve]:
    """Start ``belfry serve --port 0 ARGS`` (or ``worker``) with ``env``; waits until ready."""

    def start(*args: str, env: dict[str, str], command: str = "serve") -> Serve:
        extra = ["--port", "0"] if command == "serve" else []
        child = Child(MAIN.format(module="belfry.cli"), command, *extra, *args, env=env)
        children.append(child)
        line = child.readline(timeout=30)
        assert line.startswith("belfry "), (line, child.stderr)
        url = line.rsplit(" ", 1)[1] if "API on" in line else ""
        return Serve(child, url, env, line)

    return start


@pytest.fixture
def db_file(db_path: str) -> str:
    """belfry's database: a file path (not created yet) or, in modules marked
    ``pytest.mark.engines``, also a PostgreSQL URL (see tests/conftest.py)."""
    return db_path


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic must never go through a proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
