"""``honker.extension_info()`` / ``honker.load_extension()`` without a real extension
(API.md §2.2 to §2.4); loading the reference's compiled one is in
``interop/test_interop_extension.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import honker
from honker import _extension


def test_entrypoint_constant() -> None:
    assert honker.EXTENSION_ENTRYPOINT == "sqlite3_honkerext_init"


def test_env_path_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "libhonker_ext.so"
    lib.write_bytes(b"\x7fELF")
    monkeypatch.setenv("HONKER_EXTENSION_PATH", str(lib))
    assert honker.extension_info() == (str(lib), "sqlite3_honkerext_init")


def test_env_path_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONKER_EXTENSION_PATH", str(tmp_path / "nope.so"))
    with pytest.raises(FileNotFoundError, match="HONKER_EXTENSION_PATH"):
        honker.extension_info()
    with pytest.raises(FileNotFoundError, match="HONKER_EXTENSION_PATH"):
        honker.load_extension(FakeConnection())


def test_nothing_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONKER_EXTENSION_PATH", raising=False)
    package = Path(_extension.__file__).resolve().parent
    name = _extension._filename()
    candidates = [package / "_lib" / name] + [
        p / "target" / "release" / name for p in package.parents
    ]
    if any(c.is_file() for c in candidates):
        pytest.skip("a compiled extension is present on this machine")
    with pytest.raises(FileNotFoundError) as info:
        honker.extension_info()
    message = str(info.value)
    assert message.startswith("Honker SQLite extension not found; searched: ")
    assert str(candidates[0]) in message and str(candidates[1]) in message
    assert "HONKER_EXTENSION_PATH" in message  # tells the user what to do


class FakeConnection:
    """Records the calls load_extension makes (DB-API connection stand-in)."""

    def __init__(self, loader: str = "kwarg", fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.loader = loader
        self.fail = fail
        if loader == "none":
            self.load_extension = None  # type: ignore[assignment]

    def enable_load_extension(self, on: bool) -> None:
        self.calls.append(("enable", on))

    def load_extension(self, path: str, **kwargs: Any) -> None:
        if self.loader == "old" and kwargs:
            raise TypeError("load_extension() takes no keyword arguments")
        self.calls.append(("load", path, kwargs))
        if self.fail:
            raise RuntimeError("bad library")

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self.calls.append(("sql", sql, params))


@pytest.fixture
def fake_lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    lib = tmp_path / "libhonker_ext.so"
    lib.write_bytes(b"")
    monkeypatch.setenv("HONKER_EXTENSION_PATH", str(lib))
    return str(lib)


def test_load_extension_call_sequence(fake_lib: str) -> None:
    conn = FakeConnection()
    honker.load_extension(conn)
    assert conn.calls == [
        ("enable", True),
        ("load", fake_lib, {"entrypoint": "sqlite3_honkerext_init"}),
        ("enable", False),
    ]


def test_load_extension_falls_back_to_sql(fake_lib: str) -> None:
    old = FakeConnection(loader="old")  # load_extension() without entrypoint= (Python < 3.12)
    honker.load_extension(old)
    sql = ("sql", "SELECT load_extension(?, ?)", (fake_lib, "sqlite3_honkerext_init"))
    assert old.calls == [("enable", True), sql, ("enable", False)]
    bare = FakeConnection(loader="none")  # no load_extension method at all
    honker.load_extension(bare)
    assert bare.calls == [("enable", True), sql, ("enable", False)]


def test_load_extension_disables_loading_even_on_failure(fake_lib: str) -> None:
    conn = FakeConnection(fail=True)
    with pytest.raises(RuntimeError, match="bad library"):
        honker.load_extension(conn)
    assert conn.calls[-1] == ("enable", False)
