"""pytest fixtures for interop tests against the reference honker peers.

* ``reference`` (session): :class:`fetch_reference.ReferencePeers`, fetched on
  first use into ``.cache/reference`` (file-locked, so pytest-xdist workers
  share one download; a warm cache does no network I/O).
* ``interop_db``: the test's database path: ``db_path`` from ``tests/conftest.py``
  when that fixture exists (so ``db`` -- our library -- and the peers share one
  file), else ``tmp_path / "interop.db"``.
* ``ext_peer`` / ``node_peer``: :class:`peers.ExtPeer` / :class:`peers.NodePeer`
  bound to ``interop_db``.  If the peer cannot run here the test is skipped
  with the reason, or fails when ``HONKER_INTEROP_REQUIRED=1``.

Note: loading the extension does not bootstrap; call ``ext_peer("bootstrap")``
(or open the file with our library / the Node peer first) before using queue,
stream, scheduler, lock or result tables from the extension side.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fetch_reference import ReferencePeers, ensure_reference
from peers import ExtPeer, NodePeer, PeerUnavailable


def _unavailable(reason: str) -> None:
    if os.environ.get("HONKER_INTEROP_REQUIRED") == "1":
        pytest.fail(f"reference peer required but unavailable: {reason}")
    pytest.skip(f"reference peer unavailable: {reason}")


@pytest.fixture(scope="session")
def reference() -> ReferencePeers:
    return ensure_reference()


@pytest.fixture
def interop_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    # Same file as tests/conftest.py's `db_path` (and so as its `db` fixture,
    # our library's Database) when that fixture exists.
    try:
        return Path(request.getfixturevalue("db_path"))
    except pytest.FixtureLookupError:
        return tmp_path / "interop.db"


@pytest.fixture
def ext_peer(reference: ReferencePeers, interop_db: Path) -> ExtPeer:
    try:
        return ExtPeer(reference, interop_db)
    except PeerUnavailable as e:
        _unavailable(str(e))
        raise


@pytest.fixture
def node_peer(reference: ReferencePeers, interop_db: Path) -> NodePeer:
    try:
        return NodePeer(reference, interop_db)
    except PeerUnavailable as e:
        _unavailable(str(e))
        raise
