"""Python code in the docs runs as written.

Two conventions, each checked here:

* README.md and docs/guide.md: every fenced ``python`` block is a complete program, unless
  the line right before its fence is ``<!-- fragment -->`` (an excerpt that assumes names
  defined elsewhere). Each program runs in a subprocess in an empty temporary directory and
  must exit 0 without writing to stderr; fragments must at least compile (top-level
  ``await``/``async for`` allowed). Blocks listed in ``DOC_OUTPUT`` must print exactly that.
* docs/orm.md and docs/sql.md: a fenced ``python`` block right after a
  ``<!-- runnable: NAME -->`` line is a complete program that must print what ``EXPECTED``
  says; the other blocks there are not run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, python_env

RUNNABLE = re.compile(r"<!-- runnable: (\S+) -->\n```python\n(.*?)\n```", re.S)

FRAGMENT = "<!-- fragment -->"
CHECKED_DOCS = ("README.md", "docs/guide.md")


@dataclass(frozen=True)
class Block:
    """One fenced ``python`` block of a doc."""

    doc: str
    line: int  # 1-based line of the opening fence
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def python_blocks(doc: str) -> list[Block]:
    """The ``python`` blocks of ``doc`` (relative to the repository root), in order."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    start: int | None = None
    for number, line in enumerate(lines):
        if start is None and line == "```python":
            start = number
        elif start is not None and line == "```":
            fragment = start > 0 and lines[start - 1] == FRAGMENT
            code = "\n".join(lines[start + 1 : number]) + "\n"
            blocks.append(Block(doc, start + 1, code, fragment))
            start = None
    assert start is None, f"{doc}:{start + 1}: unterminated ```python block"
    return blocks


ALL_BLOCKS = [block for doc in CHECKED_DOCS for block in python_blocks(doc)]
PROGRAMS = [block for block in ALL_BLOCKS if not block.fragment]
FRAGMENTS = [block for block in ALL_BLOCKS if block.fragment]

# Exact stdout of some programs, found by a snippet of their code (which must match one).
DOC_OUTPUT = {
    ("README.md", 'emails.claim("worker-1")'): ["sending to alice@example.com"],
    ("README.md", "async def main"): [
        "{'ok': True, 'to': 'alice@example.com'}",
        "1 {'user_id': 7, 'change': 'name'}",
        "orders {'id': 42}",
    ],
    ("docs/guide.md", "rows = db.query"): ["[{'n': 1}]"],
    ("docs/guide.md", "visibility_timeout_s=300"): ["4 pending"],
}


def expected_output(block: Block) -> list[str] | None:
    for (doc, marker), lines in DOC_OUTPUT.items():
        if doc == block.doc and marker in block.code:
            return lines
    return None


def test_doc_conventions_hold() -> None:
    """Markers sit on fences, every DOC_OUTPUT entry finds one program, no block dodges."""
    for doc in CHECKED_DOCS:
        lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if line.strip() == FRAGMENT:
                assert lines[number + 1] == "```python", f"{doc}:{number + 1}: stray marker"
            if line.startswith("```") and line.strip("`").strip().lower() in ("py", "python3"):
                raise AssertionError(f"{doc}:{number + 1}: spell the fence ```python")
    for doc, marker in DOC_OUTPUT:
        matches = [b for b in PROGRAMS if b.doc == doc and marker in b.code]
        assert len(matches) == 1, (doc, marker, [b.id for b in matches])
    # the README's examples are all complete programs; the guide says which of its are
    assert PROGRAMS and not [b.id for b in FRAGMENTS if b.doc == "README.md"]
    for block in ALL_BLOCKS:
        if block.doc == "docs/guide.md":
            assert block.code.startswith("import honker") != block.fragment, block.id


@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.id)
def test_doc_program_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )
    assert out.returncode == 0, f"{block.id} failed:\n{out.stderr}"
    assert out.stderr == "", f"{block.id} wrote to stderr:\n{out.stderr}"
    expected = expected_output(block)
    if expected is not None:
        assert out.stdout.splitlines() == expected, block.id


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.id)
def test_doc_fragment_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def snippets(doc: str) -> dict[str, str]:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    return dict(RUNNABLE.findall(text))


EXPECTED = {
    ("orm.md", "sqlalchemy"): [
        "claimed: {'order_id': 1, 'template': 'receipt'}",
        "left in the queue: None",
    ],
    ("orm.md", "django"): ["claimed: {'order_id': 1}", "orders: 1 left in the queue: None"],
    ("sql.md", "attach"): [
        "job 1 in the same transaction as order 1",
        "claimed: [{'id': 1, 'payload': {'to': 'alice@example.com'}}]",
        "acked: 1",
        "events: [{'offset': 1, 'payload': {'order': 1}}]",
        "after rollback: 1 order(s), 0 job(s)",
    ],
}


def test_every_runnable_snippet_is_checked() -> None:
    found = {(doc, name) for doc in ("orm.md", "sql.md") for name in snippets(doc)}
    assert found == set(EXPECTED)


@pytest.mark.parametrize(("doc", "name"), sorted(EXPECTED))
def test_snippet_runs(doc: str, name: str, tmp_path: Path) -> None:
    if name in ("sqlalchemy", "django"):
        pytest.importorskip(name)
    code = snippets(doc)[name]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == EXPECTED[(doc, name)]
