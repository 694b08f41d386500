"""Shared fixtures: databases are always real files on disk (or a real PostgreSQL server);
peers are real OS processes.

Engines: a test module marked ``pytestmark = pytest.mark.engines`` runs each of its tests
that use ``db_path``/``db`` once per engine (ids ``[sqlite]`` and ``[postgres]``); a test
marked ``@pytest.mark.sqlite_only`` (with its reason) runs on SQLite alone. Unmarked modules
stay SQLite-only. On PostgreSQL ``db_path`` is a ``postgresql://`` URL selecting a fresh
schema of a throwaway cluster the session starts itself (``tests/pg.py``). Without a server
or psycopg those runs skip, unless ``HONKER_POSTGRES_REQUIRED=1`` (CI) makes them fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import honker
import pg
from helpers import Child

ENGINES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines: run this module's db_path/db tests on SQLite and PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "sqlite_only(reason): behaviour that exists only on the SQLite engine"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_path" not in metafunc.fixturenames:
        return
    node = metafunc.definition
    if node.get_closest_marker("engines") is None or node.get_closest_marker("sqlite_only"):
        return
    metafunc.parametrize("engine_kind", ENGINES, indirect=True)


@pytest.fixture
def engine_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: the engine this test runs on."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Cluster]:
    """A PostgreSQL cluster started for this test session (stopped at its end)."""
    required = os.environ.get(pg.REQUIRED_ENV) == "1"
    try:
        pg.check_client()
        cluster = pg.Cluster()
    except pg.Unavailable as exc:
        if required:
            pytest.fail(f"{pg.REQUIRED_ENV}=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def db_path(tmp_path: Path, engine_kind: str, request: pytest.FixtureRequest) -> str:
    """Where a fresh database lives: a file path (not yet created) or a PostgreSQL URL."""
    if engine_kind == "postgres":
        server: pg.Cluster = request.getfixturevalue("pg_server")
        return server.fresh_url()
    return str(tmp_path / "app.db")


@pytest.fixture
def db(db_path: str) -> Iterator[honker.Database]:
    """An open Database on a temporary file (or schema), closed after the test."""
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
