"""Shared fixtures: databases are always real files on disk; peers are real OS processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import honker
from helpers import Child


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """Path of a fresh database file (not yet created)."""
    return str(tmp_path / "app.db")


@pytest.fixture
def db(db_path: str) -> Iterator[honker.Database]:
    """An open Database on a temporary file, closed after the test."""
    database = honker.open(db_path)
    yield database
    database.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Collects Child processes and kills any still running at teardown."""
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """An empty process-wide task registry for the test; the previous one is restored."""
    saved = dict(honker.registry()._by_name)
    honker.registry()._by_name.clear()
    yield
    honker.registry()._by_name.clear()
    honker.registry()._by_name.update(saved)
