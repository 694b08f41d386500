"""The runnable recipes in docs/orm.md and docs/sql.md run as written.

A fenced ``python`` block right after a ``<!-- runnable: NAME -->`` line is a complete
program: it runs in an empty temporary directory and must print what the doc says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, python_env

RUNNABLE = re.compile(r"<!-- runnable: (\S+) -->\n```python\n(.*?)\n```", re.S)


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
