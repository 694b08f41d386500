"""The `python -m honker` CLI in real processes: worker, signals, errors, --list."""

from __future__ import annotations

import json
import os
import re
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


COMMANDS = (
    "worker",
    "scheduler",
    "stats",
    "jobs",
    "job",
    "retry",
    "discard",
    "dashboard",
    "prune",
)


def test_help_is_readable_and_lists_each_command_once() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for word in ("module.path:variable", "examples:", "--version"):
        assert word in out.stdout
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")]
    for command in COMMANDS:
        assert listed.count(command) == 1, (command, out.stdout)
    assert "{" not in out.stdout and "COMMAND\n" not in out.stdout
    out = cli("worker", "--help")
    for option in ("--concurrency", "--grace-period", "--log-level", "--list", "--queue"):
        assert option in out.stdout
    assert "--log-level" in cli("scheduler", "--help").stdout
    assert cli().returncode == 2


def test_version() -> None:
    out = cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"honker honker-py {honker.__version__}"


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
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Tasks on apps.taskapp:db (queues: emails, slow):"
    assert lines[1].split() == ["TASK", "QUEUE", "ATTEMPTS", "RETRY", "DELAY", "BACKOFF", "TIMEOUT"]
    assert ["add", "emails", "3", "60s", "none", "none"] in [line.split() for line in lines]
    assert ["slow", "slow", "3", "60s", "none", "60s"] in [line.split() for line in lines]
    assert lines[-2:] == ["Schedules feeding these queues:", "  (no schedules)"]
    text = f"import honker\ndb = honker.open({str(tmp_path / 'x.db')!r})\n"
    env = write_module(tmp_path, "notasks", text)
    out = cli("worker", "notasks:db", env=env)
    assert out.returncode == 1 and "no tasks are registered" in out.stderr


def test_list_honours_queue_and_shows_retry_settings_and_schedules(db_path: str) -> None:
    env = app_env(db_path)
    out = cli("worker", "apps.cliapp:db", "--list", "--queue", "mail", env=env)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert ["send", "mail", "5", "10s", "x2", "45s"] in rows
    assert ["flaky", "mail", "1", "60s", "none", "none"] in rows
    assert not any("hourly" in row or "reports" in row for row in rows[1:])
    assert out.stdout.rstrip().endswith("(no schedules)")
    out = cli("worker", "apps.cliapp:db", "--list", "--queue", "reports", env=env)
    assert "send" not in out.stdout
    assert ["hourly", "reports", "3", "60s", "none", "none"] in rows_of(out.stdout)
    schedule = rows_of(out.stdout)[-1]
    assert schedule[:4] == ["hourly", "reports", "@every", "3600s"] and schedule[-1] == "enabled"
    listing = json.loads(cli("worker", "apps.cliapp:db", "--list", "--json", env=env).stdout)
    assert listing["queues"] == ["mail", "reports"]
    send = next(t for t in listing["tasks"] if t["name"] == "send")
    settings = (send["retries"], send["retry_delay_s"], send["backoff"], send["timeout_s"])
    assert settings == (5, 10, 2.0, 45)
    assert [s["name"] for s in listing["schedules"]] == ["hourly"]


def rows_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


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

    add_id, greet_id = json.loads(producer.readline())
    assert TaskResult(db, q, add_id).get(timeout=20) == 42
    assert TaskResult(db, q, greet_id).get(timeout=20) == "hello, alice?"
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "honker worker: stopped cleanly" in worker.drain()


def run_slow_job(
    db: honker.Database, db_path: str, seconds: float, marker: Path, *worker_args: str
) -> tuple[honker.Queue, int, Child]:
    """Enqueue a 'slow' job, start a worker on it and wait until it is running."""
    slowq = db.queue("slow")
    job_id = slowq.enqueue(
        {"__honker_task__": {"task": "slow", "args": [seconds, str(marker)], "kwargs": {}}}
    )
    worker = start_worker(db_path, "--queue", "slow", "--concurrency", "1", *worker_args)
    deadline = time.monotonic() + 20
    while (slowq.get_job(job_id) or {}).get("state") != "processing":
        if time.monotonic() > deadline:
            worker.kill()
            raise AssertionError("the worker never claimed the job")
        time.sleep(0.05)
    return slowq, job_id, worker


def test_sigterm_lets_a_slow_task_finish_and_exits_zero(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    marker = tmp_path / "finished.txt"
    slowq, job_id, worker = run_slow_job(db, db_path, 1.5, marker)
    children.append(worker)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert marker.read_text() == "finished"
    assert slowq.get_result(job_id) == (True, "done")
    out = worker.drain()
    assert any("SIGTERM received" in line for line in out)


def test_second_signal_exits_at_once_and_hands_the_job_back(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    slowq, job_id, worker = run_slow_job(db, db_path, 30, tmp_path / "m")
    children.append(worker)
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


def test_grace_timeout_is_reported_truthfully(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    slowq, job_id, worker = run_slow_job(db, db_path, 30, tmp_path / "m", "--grace-period", "1")
    children.append(worker)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    out = worker.drain()
    assert not any("stopped cleanly" in line for line in out), out
    assert out[-1] == (
        "honker worker: stopped after the 1s grace period: 1 job(s) did not finish in time "
        "and were handed back"
    )
    row = slowq.get_job(job_id)
    assert row is not None and row["state"] == "pending"


def write_module(tmp_path: Path, name: str, text: str) -> dict[str, str]:
    (tmp_path / f"{name}.py").write_text(text)
    env = python_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    return env


def test_a_failing_tasks_import_shows_the_real_frames(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text("x = 1\ndef f():\n    return missing_name\nf()\n")
    env = write_module(tmp_path, "badapp", "import honker\nimport helper_mod\ndb = None\n")
    out = cli("worker", "badapp:db", env=env)
    assert out.returncode == 2
    err = out.stderr
    assert err.startswith("honker: error: importing 'badapp' failed:\nTraceback")
    assert f'File "{tmp_path / "badapp.py"}", line 2, in <module>' in err
    assert f'File "{tmp_path / "helper_mod.py"}", line 3, in f' in err
    assert "    return missing_name" in err
    assert err.rstrip().endswith("NameError: name 'missing_name' is not defined")
    assert "importlib" not in err and "honker/cli.py" not in err
    # a dependency of the module that is missing is not "cannot import the module"
    env = write_module(tmp_path, "depapp", "import no_such_dependency_xyz\n")
    out = cli("scheduler", "depapp:db", env=env)
    assert out.returncode == 2
    assert f'File "{tmp_path / "depapp.py"}", line 1' in out.stderr
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in out.stderr
    env = write_module(tmp_path, "synapp", "def f(:\n")
    out = cli("worker", "synapp:db", env=env)
    assert f'File "{tmp_path / "synapp.py"}", line 1' in out.stderr
    assert "SyntaxError" in out.stderr


LOG_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) honker\.[a-z_.]+: "


def wait_for_stderr(child: Child, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while text not in child.stderr:
        assert time.monotonic() < deadline, f"{text!r} never logged; stderr: {child.stderr}"
        assert child.proc.poll() is None, f"exited early; stderr: {child.stderr}"
        time.sleep(0.05)
    return child.stderr


def start_scheduler(db_path: str, *args: str) -> Child:
    child = Child(WORKER, "scheduler", "apps.cliapp:db", *args, env=app_env(db_path))
    line = child.readline()
    assert line.startswith("honker scheduler: pid=") and "standing by" not in line, line
    return child


def test_scheduler_logs_leadership_changes(db_path: str, children: list[Child]) -> None:
    first = start_scheduler(db_path)
    children.append(first)
    log = wait_for_stderr(first, "became leader")
    line = next(line for line in log.splitlines() if "became leader" in line)
    assert re.match(LOG_LINE, line) and " INFO honker.scheduler: became leader" in line
    second = start_scheduler(db_path)
    children.append(second)
    wait_for_stderr(second, "standing by")
    assert "became leader" not in second.stderr
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    assert "stepped down" in first.stderr
    assert first.drain()[-1] == "honker scheduler: stopped"
    wait_for_stderr(second, "became leader")  # woken by the release, not by the lock TTL
    os.kill(second.pid, signal.SIGTERM)
    assert second.wait(timeout=20) == 0
    out = second.drain()
    assert out[0] == "honker: SIGTERM received: stopping (signal again to exit now)"
    assert "running job" not in " ".join(out)


def test_log_level_filters_the_honker_loggers(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    quiet = start_scheduler(db_path, "--log-level", "warning")
    children.append(quiet)
    deadline = time.monotonic() + 20
    while not db.locks_info():  # it leads (the lock row is there) without saying so
        assert time.monotonic() < deadline, quiet.stderr
        time.sleep(0.05)
    os.kill(quiet.pid, signal.SIGTERM)
    assert quiet.wait(timeout=20) == 0
    assert quiet.stderr == ""
    out = cli("scheduler", "apps.cliapp:db", "--log-level", "LOUD", env=app_env(db_path))
    assert out.returncode == 2 and "invalid choice: 'LOUD'" in out.stderr


def test_worker_logs_retries_and_dead_letters(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    mail = db.queue("mail")
    job_id = mail.enqueue({"__honker_task__": {"task": "flaky", "args": [], "kwargs": {}}})
    worker = Child(WORKER, "worker", "apps.cliapp:db", "--queue", "mail", env=app_env(db_path))
    children.append(worker)
    assert worker.readline().startswith("honker worker: pid=")
    log = wait_for_stderr(worker, "mail server said no", timeout=10)
    line = next(line for line in log.splitlines() if "mail server said no" in line)
    assert re.match(LOG_LINE, line) and str(job_id) in line and "flaky" in line
    assert " ERROR honker." in line  # retries=1: the first failure is a dead letter


def task_payload(name: str, *args: object) -> dict[str, object]:
    return {"__honker_task__": {"task": name, "args": list(args), "kwargs": {}}}


@pytest.fixture
def inspected(db: honker.Database) -> dict[str, int]:
    """A database with a due, a delayed, a processing and two dead jobs in 'mail'."""
    mail = db.queue("mail")
    ids = {"dead": mail.enqueue(task_payload("send", "a@x"))}
    job = mail.claim_one("w1")
    assert job is not None and job.fail("smtp refused\nTraceback (most recent call last): ...")
    ids["dead2"] = mail.enqueue(task_payload("send", "b@x"))
    job = mail.claim_one("w1")
    assert job is not None and job.fail("also refused")
    ids["processing"] = mail.enqueue(task_payload("send", "c@x"), priority=5)
    assert mail.claim_one("w2") is not None
    ids["due"] = mail.enqueue(task_payload("send", "d@x"))
    ids["delayed"] = mail.enqueue("raw text", delay=3600)
    db.queue("other").enqueue({"n": 1})
    return ids


def test_stats_table_and_json(db_path: str, inspected: dict[str, int]) -> None:
    out = cli("stats", db_path)
    assert out.returncode == 0, out.stderr
    rows = rows_of(out.stdout)
    assert rows[0] == [
        "QUEUE", "PENDING", "DELAYED", "EXPIRED", "PROCESSING", "DEAD", "OLDEST", "DUE",
        "DONE/MIN", "DEAD/MIN",
    ]  # fmt: skip
    mail = next(r for r in rows if r[0] == "mail")
    assert mail[1:6] == ["1", "1", "0", "1", "2"]
    stats = json.loads(cli("stats", db_path, "--json").stdout)
    assert [s["queue"] for s in stats] == ["mail", "other"]
    assert stats[0]["pending"] == 1 and stats[0]["dead"] == 2 and stats[0]["dead_last_minute"] == 2
    assert stats[1]["pending"] == 1


def test_jobs_table_filters_and_json(db_path: str, inspected: dict[str, int]) -> None:
    out = cli("jobs", db_path, "mail")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATE", "ATTEMPTS", "PRIORITY"]
    by_id = {int(line.split()[0]): line for line in lines[1:]}
    assert sorted(by_id) == sorted(inspected.values())
    assert 'send("a@x")' in by_id[inspected["dead"]] and "smtp refused" in by_id[inspected["dead"]]
    assert "Traceback" not in by_id[inspected["dead"]]  # first line of the error only
    assert by_id[inspected["processing"]].split()[1:4] == ["processing", "1/3", "5"]
    assert "raw text" in by_id[inspected["delayed"]]
    out = cli("jobs", db_path, "mail", "--state", "dead", "--limit", "1")
    rows = rows_of(out.stdout)
    assert [int(r[0]) for r in rows[1:-1]] == [inspected["dead2"]]
    assert out.stdout.splitlines()[-1] == "(1 of 2 shown; use --limit)"
    jobs = json.loads(cli("jobs", db_path, "mail", "--state", "delayed", "--json").stdout)
    assert [(j["id"], j["state"], j["payload"]) for j in jobs] == [
        (inspected["delayed"], "delayed", "raw text")
    ]
    assert cli("jobs", db_path, "mail", "--state", "done").returncode == 2
    assert cli("jobs", db_path, "mail", "--limit", "0").returncode == 2
    out = cli("jobs", db_path, "nope")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"honker: error: no queue named 'nope' in {db_path} (queues: mail, other)"
    )


def test_job_shows_one_job(db_path: str, inspected: dict[str, int]) -> None:
    out = cli("job", db_path, str(inspected["dead"]))
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line[:1] != " ")
    assert fields["queue"] == "mail" and fields["state"] == "dead"
    assert fields["task"] == 'send("a@x")' and fields["attempts"] == "1 of 3"
    assert "Traceback (most recent call last)" in out.stdout  # the whole error
    job = json.loads(cli("job", db_path, str(inspected["processing"]), "--json").stdout)
    assert job["worker_id"] == "w2" and job["payload"] == task_payload("send", "c@x")
    out = cli("job", db_path, "424242")
    assert out.returncode == 1 and "no job 424242" in out.stderr


@pytest.mark.parametrize("bad", ["99999999999999999999999", "9223372036854775808", "abc"])
def test_bad_ids_are_usage_errors(db_path: str, inspected: dict[str, int], bad: str) -> None:
    for args in (("job", db_path, bad), ("retry", db_path, "mail", bad)):
        out = cli(*args)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        expected = "not an integer" if bad == "abc" else "must fit in a signed 64-bit integer"
        assert expected in out.stderr.splitlines()[-1]


def test_retry_and_discard_dead_jobs(
    db: honker.Database, db_path: str, inspected: dict[str, int]
) -> None:
    mail = db.queue("mail")
    out = cli("retry", db_path, "mail", str(inspected["dead"]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "requeued 1 dead job(s) of queue 'mail'"
    row = mail.get_job(inspected["dead"])
    assert row is not None and row["state"] == "pending" and row["attempts"] == 0
    out = cli("retry", db_path, "mail", str(inspected["dead"]))
    assert out.returncode == 1
    assert out.stderr.strip() == f"honker: error: no dead job {inspected['dead']} in queue 'mail'"
    out = cli("discard", db_path, "mail", "--all", "--json")
    assert json.loads(out.stdout) == {"queue": "mail", "id": None, "discarded": 1}
    assert mail.find_job(inspected["dead2"]) is None
    assert cli("discard", db_path, "mail", "--all").stdout.strip() == (
        "discarded 0 dead job(s) of queue 'mail'"
    )
    for args in ((), (str(inspected["dead"]), "--all")):
        out = cli("retry", db_path, "mail", *args)
        assert out.returncode == 2 and "give one dead job ID or --all" in out.stderr


def test_inspection_needs_an_existing_file(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for args in (("stats",), ("jobs", "q"), ("job", "1"), ("retry", "q", "--all")):
        out = cli(args[0], str(missing), *args[1:])
        assert out.returncode == 2
        assert out.stderr.strip() == f"honker: error: no database file at {str(missing)!r}"
    assert not missing.exists()
