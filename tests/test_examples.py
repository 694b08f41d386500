"""The examples in examples/ (runnable versions of the seeds' snippets) run as written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

import honker
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


def test_make_demo_script_leaves_demo_db(tmp_path: Path) -> None:
    """`make demo` runs demo.py; it leaves ./demo.db with data for the dashboard to show."""
    (tmp_path / "demo.db").write_text("not a database: an earlier run's file is replaced")
    out = run_example("demo.py", tmp_path)
    assert "demo finished OK" in out
    with honker.open(str(tmp_path / "demo.db")) as db:
        assert set(db.queue_names()) >= {"emails", "health", "webhooks"}
        webhooks = db.queue("webhooks")
        stats = webhooks.stats()
        assert (stats["pending"], stats["delayed"], stats["dead"]) == (2, 1, 1)
        [dead] = webhooks.list_jobs(state="dead")
        assert "HTTP 410 Gone" in dead["last_error"]
        assert db.stream("order-events").get_offset("mailer") == 2
        [order] = db.query("SELECT total FROM orders WHERE id = 100")
        assert order["total"] == 4200
    dashboard_command_printed_by_make_demo_works(tmp_path)


def dashboard_command_printed_by_make_demo_works(cwd: Path) -> None:
    """The command `make demo` ends with serves the demo.db it left (on a free port here)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    [command] = re.findall(r'^\t@echo "  \$\(BIN\)/python (-m honker dashboard \S+)"$',
                           makefile, re.M)
    args = [sys.executable, *command.split(), "--port", "0"]
    with subprocess.Popen(args, cwd=cwd, env=python_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            match = re.search(r" at (http://127\.0\.0\.1:\d+/)", line)
            assert match, (line, server.stderr.read() if server.stderr else "")
            page = httpx.get(match.group(1), timeout=30, trust_env=False)
            assert page.status_code == 200
            assert "webhooks" in page.text and "order-events" in page.text
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=30)
        assert server.returncode == 0
