"""The examples in examples/ (runnable versions of the seeds' snippets) run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, python_env

EXAMPLES = ROOT / "examples"


def run_example(name: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_first_queue(tmp_path: Path) -> None:
    assert run_example("first_queue.py", tmp_path) == "hello, world!\n"


def test_receipt_demo(tmp_path: Path) -> None:
    assert run_example("receipt_demo.py", tmp_path) == (
        "sending email to alice@example.com: Receipt for 19.99\ndone\n"
    )


def test_tour(tmp_path: Path) -> None:
    out = run_example("tour.py", tmp_path)
    assert "emails sent: ['alice@example.com']" in out
    assert "task result: Hi" in out
    assert "stream event: {'user_id': 7, 'change': 'name'}" in out
    assert "notification: orders {'id': 99}" in out
    assert "scheduled job: {'ping': True}" in out
    assert out.rstrip().endswith("tour finished")


@pytest.mark.parametrize("name", ["demo.py"])
def test_make_demo_script(name: str, tmp_path: Path) -> None:
    out = run_example(name, tmp_path)
    assert "demo finished OK" in out
