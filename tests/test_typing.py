"""Typed tasks: ``mypy --strict`` accepts tests/typing/good.py and rejects each marked line of
tests/typing/bad_*.py with the expected error codes; good.py also runs for real."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import honker
from honker import registry
from honker.tasks import ENVELOPE_KEY

ROOT = Path(__file__).resolve().parents[1]
TYPING_DIR = Path(__file__).resolve().parent / "typing"
GOOD = TYPING_DIR / "good.py"
BAD = sorted(TYPING_DIR.glob("bad_*.py"))
MARKER = re.compile(r"#\s*E:\s*(?P<codes>[a-z-]+(?:\s+[a-z-]+)*)\s*$")
ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")

Expected = dict[tuple[str, int], set[str]]

pytestmark = pytest.mark.usefixtures("clean_registry")


def expected_errors(path: Path) -> Expected:
    """``{(file name, line): codes}`` from the ``# E: code ...`` markers in ``path``."""
    found: Expected = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        match = MARKER.search(text)
        if match:
            found[(path.name, number)] = set(match["codes"].split())
    return found


def run_mypy(paths: list[Path], cache_dir: Path) -> tuple[int, str, Expected]:
    """One ``python -m mypy --strict`` run over ``paths`` against the honker under test."""
    env = dict(os.environ)
    src = Path(honker.__file__).resolve().parents[1]
    if src.name != "site-packages":  # a source checkout: point mypy at it, not the install
        env["MYPYPATH"] = str(src)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache_dir),
            "--show-error-codes",
            "--no-error-summary",
            "--no-color-output",
            *map(str, paths),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    got: Expected = {}
    for text in proc.stdout.splitlines():
        match = ERROR.match(text)
        if match:
            key = (Path(match["path"]).name, int(match["line"]))
            got.setdefault(key, set()).add(match["code"])
    return proc.returncode, proc.stdout + proc.stderr, got


@pytest.fixture(scope="module")
def mypy_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Expected]:
    return run_mypy([GOOD, *BAD], tmp_path_factory.mktemp("mypy-cache"))


def test_there_are_bad_cases() -> None:
    assert len(BAD) >= 3
    for path in BAD:
        assert expected_errors(path), f"{path.name} has no '# E: code' markers"
        assert "type: ignore" not in path.read_text()


def test_good_usages_pass_mypy_strict(mypy_result: tuple[int, str, Expected]) -> None:
    _, output, got = mypy_result
    in_good = {key: codes for key, codes in got.items() if key[0] == GOOD.name}
    assert in_good == {}, output
    assert f"{GOOD.name}:" not in output, output


@pytest.mark.parametrize("bad", BAD, ids=lambda p: p.name)
def test_bad_usages_fail_with_expected_codes(
    bad: Path, mypy_result: tuple[int, str, Expected]
) -> None:
    returncode, output, got = mypy_result
    assert returncode == 1, output
    in_file = {key: codes for key, codes in got.items() if key[0] == bad.name}
    assert in_file == expected_errors(bad), output


def test_markers_are_checked_against_real_mypy(tmp_path: Path) -> None:
    """The comparison can fail: a bad line whose marker names the wrong code is caught."""
    wrong = tmp_path / "bad_wrong.py"
    wrong.write_text(
        "import honker\n\n\n"
        "def misuse(db: honker.Database) -> None:\n"
        "    @db.queue('x').task(name='w')\n"
        "    def f(n: int) -> int:\n"
        "        return n\n\n"
        "    f('not an int')  # E: attr-defined\n"
    )
    _, output, got = run_mypy([wrong], tmp_path / "cache")
    assert got == {("bad_wrong.py", 9): {"arg-type"}}, output
    assert got != expected_errors(wrong)


# -- good.py at runtime: the typed API behaves as before --------------------------------------


def load_good() -> Any:
    spec = importlib.util.spec_from_file_location("typing_good", GOOD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_good_usages_run(db: honker.Database) -> None:
    good = load_good()
    handles = good.exercise(db)
    q = db.queue("typing")

    rows = db.query("SELECT id, payload, priority FROM _honker_live ORDER BY id")
    by_id = {row["id"]: row for row in rows}
    send_row = by_id[handles["send"].id]
    assert honker_call(send_row) == ("typing.send", ["alice@example.com"], {"n": 2})
    assert honker_call(by_id[handles["tx"].id]) == (
        "typing.send",
        ["carol@example.com"],
        {"n": 3},
    )
    assert by_id[handles["db"].id]["priority"] == 3
    assert by_id[handles["later"].id]["priority"] == 9
    assert handles["widened"] is handles["send"]
    assert handles["typed_by_hand"].id == handles["send"].id

    names = set(registry().names())
    assert {"typing.send", "typing.via_db", "typing.tick", "typing.atick"} <= names
    schedules = {row["name"] for row in db.query("SELECT name FROM _honker_scheduler_tasks")}
    assert {"typing-tick", "typing.atick"} <= schedules

    wanted = [handles[key].id for key in ("send", "db", "tx")]

    async def drain() -> None:
        stop = asyncio.Event()
        workers = asyncio.create_task(db.run_workers(queue="typing", stop_event=stop))
        deadline = time.monotonic() + 20
        try:
            while not all(q.get_result(i)[0] for i in wanted):
                if workers.done():
                    workers.result()
                if time.monotonic() > deadline:
                    raise AssertionError("results not stored")
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(workers, 10)

    asyncio.run(drain())
    assert handles["send"].get(timeout=5) == {"to": "alice@example.com", "n": 2}
    assert handles["db"].get(timeout=5) == ["hi", "hi"]
    assert handles["tx"].get(timeout=5) == {"to": "carol@example.com", "n": 3}
    assert asyncio.run(good.results_are_awaitable(handles["send"])) == 2


def honker_call(row: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    call = json.loads(row["payload"])[ENVELOPE_KEY]
    return call["task"], call["args"], call["kwargs"]


def test_aliases_and_generic_result_at_runtime(db: honker.Database) -> None:
    from honker.tasks import AsyncTask, Task, TaskResult

    q = db.queue("typing")
    plain = TaskResult(db, q, 5)
    assert repr(plain) == "TaskResult(queue='typing', id=5)"
    assert repr(TaskResult[int](db, q, 6)) == "TaskResult(queue='typing', id=6)"
    assert Task[[str], int] is not None and AsyncTask[[str], int] is not None
