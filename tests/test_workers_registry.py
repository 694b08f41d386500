"""Live workers (_honker_workers): real worker processes register, heartbeat and leave."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from obs_support import cli, eventually, start_worker

import honker
from helpers import Child
from honker.tasks import encode_call
from honker.workers import LiveWorkers, list_workers

pytestmark = pytest.mark.engines

HEARTBEAT = "0.5"


def by_pid(db: honker.Database, include_gone: bool = False) -> dict[int, dict[str, object]]:
    return {int(str(w["pid"])): w for w in list_workers(db, include_gone=include_gone)}


def test_killed_worker_drops_off_stopped_worker_deregisters_running_jobs_show(
    db: honker.Database, db_path: str, tmp_path: Path, children: list[Child]
) -> None:
    args = ("--heartbeat-interval", HEARTBEAT)
    a = start_worker(db_path, *args, children=children)
    b = start_worker(db_path, *args, children=children)
    both = eventually(lambda: len(by_pid(db)) == 2 and by_pid(db), what="two live workers")
    assert set(both) == {a.pid, b.pid}
    for info in both.values():
        assert info["queues"] == ["obs"]
        assert info["concurrency"] == 1
        assert info["alive"] is True
        assert info["running"] == []

    marker = tmp_path / "go"
    job = db.queue("obs").enqueue(encode_call("wait_for", [str(marker)], {}))

    def running_somewhere() -> int | None:
        for pid, info in by_pid(db).items():
            if info["running"] == [job]:
                return pid
        return None

    runner = eventually(running_somewhere, what="the running job id in the registry")
    listed = json.loads(cli(db_path, "workers", db_path, "--json").stdout)
    assert sorted(w["pid"] for w in listed) == sorted([a.pid, b.pid])
    assert any(w["running"] == [job] for w in listed)
    marker.write_text("go")
    eventually(lambda: by_pid(db)[runner]["running"] == [], what="the job leaving the registry")

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    eventually(lambda: set(by_pid(db)) == {b.pid}, what="the killed worker dropping off")
    gone = by_pid(db, include_gone=True)[a.pid]
    assert gone["alive"] is False
    table = cli(db_path, "workers", db_path, "--all").stdout
    assert "gone" in table and "alive" in table and str(a.pid) in table

    b.proc.send_signal(signal.SIGTERM)
    assert b.wait(timeout=60) == 0
    assert b.pid not in by_pid(db, include_gone=True)  # deregistered, not merely stale
    assert cli(db_path, "workers", db_path).stdout.strip() == "no live workers"


def test_register_option_and_bad_interval(
    db_path: str, engine_kind: str, children: list[Child]
) -> None:
    honker.open(db_path).close()
    bad = cli(db_path, "worker", "apps.obsapp:db", "--heartbeat-interval", "0")
    assert bad.returncode == 2
    assert "--heartbeat-interval" in bad.stderr and "positive" in bad.stderr
    if engine_kind == "sqlite":  # (a URL names no file)
        missing = cli(db_path, "workers", db_path + ".nope")
        assert missing.returncode == 2 and "no database file" in missing.stderr


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_live_workers_rejects_bad_interval(db: honker.Database, value: float) -> None:
    with pytest.raises(ValueError, match="heartbeat_s must be positive"):
        LiveWorkers(db, heartbeat_s=value)


def test_live_workers_rejects_non_numbers(db: honker.Database) -> None:
    with pytest.raises(TypeError, match="heartbeat_s must be a number"):
        LiveWorkers(db, heartbeat_s="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="heartbeat_s must be a number"):
        LiveWorkers(db, heartbeat_s=True)


EXTRAS = ("_honker_workers", "_honker_job_trace", "_honker_dead_queue")


def _objects(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


@pytest.mark.sqlite_only("a migration of SQLite files (PostgreSQL: the schema version row)")
def test_an_older_file_gets_the_extra_tables_once_then_open_writes_nothing(db_path: str) -> None:
    honker.open(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TABLE _honker_workers")
    conn.execute("DROP TABLE _honker_job_trace")
    conn.execute("DROP INDEX _honker_dead_queue")
    assert not set(EXTRAS) & _objects(db_path)
    honker.open(db_path).close()  # an older file: created at open
    assert set(EXTRAS) <= _objects(db_path)
    before = conn.execute("PRAGMA data_version").fetchone()[0]
    honker.open(db_path).close()  # up to date: a pure read
    assert conn.execute("PRAGMA data_version").fetchone()[0] == before
    conn.close()
