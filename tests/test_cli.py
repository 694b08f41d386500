"""The `python -m honker` CLI in real processes: worker, signals, errors, --list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import honker
from helpers import Child, python_env
from honker import TaskResult

pytestmark = pytest.mark.engines


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "honker", *args],
        capture_output=True,
        text=True,
        env=env or python_env(),
        timeout=timeout,
    )


def app_env(db_path: str) -> dict[str, str]:
    env = python_env()
    env["HONKER_TEST_DB"] = db_path
    return env


WORKER = """
import sys
from honker.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def start_worker(db_path: str, *args: str) -> Child:
    child = Child(WORKER, "worker", "apps.taskapp:db", *args, env=app_env(db_path))
    line = child.readline()
    assert line.startswith("honker worker: pid="), line
    return child


def test_help_is_readable() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for word in ("worker", "scheduler", "dashboard", "module.path:variable", "examples:"):
        assert word in out.stdout
    out = cli("worker", "--help")
    assert "--concurrency" in out.stdout and "--grace-period" in out.stdout
    assert cli().returncode == 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:db", "cannot import 'no_such_module_xyz'"),
        ("os:missing_attr", "has no attribute 'missing_attr'"),
        ("os", "must be 'module.path:variable'"),
        ("os:sep", "not a honker.Database"),
    ],
)
def test_bad_targets_give_one_line_errors(target: str, message: str) -> None:
    out = cli("worker", target)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_list_and_no_tasks(db_path: str, tmp_path: Path) -> None:
    out = cli("worker", "apps.taskapp:db", "--list", env=app_env(db_path))
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "Registered tasks on apps.taskapp:db:"
    assert "  add  queue=emails" in lines and "  slow  queue=slow" in lines
    (tmp_path / "notasks.py").write_text(
        f"import honker\ndb = honker.open({str(tmp_path / 'x.db')!r})\n"
    )
    env = python_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    out = cli("worker", "notasks:db", env=env)
    assert out.returncode == 1 and "no tasks are registered" in out.stderr


def test_cli_worker_runs_tasks_from_another_process(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    worker = start_worker(db_path, "--queue", "emails", "--concurrency", "2")
    children.append(worker)
    q = db.queue("emails", visibility_timeout_s=2)
    producer = Child(
        """
import json, sys
import honker
db = honker.open(sys.argv[1])
q = db.queue("emails", visibility_timeout_s=2)
env = lambda name, args, kwargs: {"__honker_task__": {"task": name, "args": args, "kwargs": kwargs}}
ids = [q.enqueue(env("add", [2, 40], {})), q.enqueue(env("greet", ["alice"], {"punctuation": "?"}))]
print(json.dumps(ids))
""",
        db_path,
    )
    children.append(producer)
    import json

    add_id, greet_id = json.loads(producer.readline())
    assert TaskResult(db, q, add_id).get(timeout=20) == 42
    assert TaskResult(db, q, greet_id).get(timeout=20) == "hello, alice?"
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "honker worker: stopped cleanly" in worker.drain()


def test_sigterm_lets_a_slow_task_finish_and_exits_zero(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    marker = tmp_path / "finished.txt"
    slowq = db.queue("slow")
    job_id = slowq.enqueue(
        {"__honker_task__": {"task": "slow", "args": [1.5, str(marker)], "kwargs": {}}}
    )
    worker = start_worker(db_path, "--queue", "slow", "--concurrency", "1")
    children.append(worker)
    deadline = time.monotonic() + 20
    while (slowq.get_job(job_id) or {}).get("state") != "processing":
        assert time.monotonic() < deadline, "the worker never claimed the job"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert marker.read_text() == "finished"
    assert slowq.get_result(job_id) == (True, "done")
    out = worker.drain()
    assert any("SIGTERM received" in line for line in out)


def test_second_signal_exits_at_once_and_hands_the_job_back(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    slowq = db.queue("slow")
    job_id = slowq.enqueue(
        {"__honker_task__": {"task": "slow", "args": [30, str(tmp_path / "m")], "kwargs": {}}}
    )
    worker = start_worker(db_path, "--queue", "slow", "--concurrency", "1")
    children.append(worker)
    deadline = time.monotonic() + 20
    while (slowq.get_job(job_id) or {}).get("state") != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGTERM)
    while "SIGTERM received" not in worker.readline():
        pass
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    rc = worker.wait(timeout=10)
    assert rc == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    row = slowq.get_job(job_id)
    assert row is not None and row["state"] == "pending"  # claimable again right away
