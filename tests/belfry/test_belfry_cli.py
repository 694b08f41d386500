"""The ``belfry`` command line on the database directly (``--db``/``BELFRY_DB``), a SQLite
file or a PostgreSQL URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from belfry_helpers import belfry_env, run_belfry

from belfry.cli import main

pytestmark = pytest.mark.engines


@pytest.fixture
def db(db_path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    path = db_path
    for name, value in belfry_env(path).items():
        if name.startswith("BELFRY_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("BELFRY_URL", raising=False)
    monkeypatch.setenv("BELFRY_TOPIC", "cli")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_reminder_commands_on_the_database(
    db: str, engine_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "list")
    if engine_kind == "sqlite":
        assert code == 1 and "no belfry database" in err
    else:  # a server has no file to look for: an empty schema simply holds no reminders
        assert code == 0 and out.startswith("no reminders"), (out, err)
    code, out, _ = run(capsys, "add", "stretch", "--every", "45m", "--tag", "a,b", "--tag", "c")
    assert code == 0 and out.startswith("added reminder 1: every 45m, next ")
    code, out, _ = run(capsys, "add", "call mum", "--at", "2099-05-01T18:00", "--title", "Mum",
                       "--priority", "max", "--click", "tel:+331234")
    assert code == 0 and "at 2099-05-01T18:00:00+02:00" in out  # BELFRY_TZ=Europe/Paris
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "SCHEDULE", "NEXT", "TOPIC", "MESSAGE", "LAST",
                                "DELIVERY"]
    assert "every 45m" in lines[1] and "2099-05-01 18:00+02:00" in lines[2]
    code, out, _ = run(capsys, "show", "2")
    assert "priority:      5 (max)" in out and "click:         tel:+331234" in out
    assert "no deliveries yet" in out
    code, out, _ = run(capsys, "show", "1", "--json")
    shown = json.loads(out)
    assert shown["tags"] == ["a", "b", "c"] and shown["deliveries"] == []
    code, out, _ = run(capsys, "edit", "1", "--message", "stretch more", "--no-tags",
                       "--cron", "0 */2 * * *", "--tz", "UTC")
    assert code == 0 and "cron 0 */2 * * * (UTC)" in out
    code, out, _ = run(capsys, "pause", "1")
    assert "paused reminder 1 (state paused, next -)" in out
    code, out, _ = run(capsys, "resume", "1")
    assert "state active" in out
    code, out, _ = run(capsys, "snooze", "2", "--until", "2099-05-02T08:00")
    assert "next 2099-05-02 08:00+02:00" in out
    code, out, _ = run(capsys, "list", "--state", "paused", "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "delete", "2")
    assert out == "deleted reminder 2\n"
    code, _, err = run(capsys, "show", "2")
    assert code == 1 and "reminder 2 not found" in err
    code, _, err = run(capsys, "retry", "1")
    assert code == 1 and "no dead-lettered delivery" in err


def test_usage_errors(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "add", "x", "--in", "5 parsecs")
    assert code == 2 and "in: '5 parsecs': unknown unit 'parsecs'" in err
    code, _, err = run(capsys, "add", "x", "--every", "1h", "--topic", "a b")
    assert code == 2 and "not a valid ntfy topic" in err
    code, _, err = run(capsys, "add", "x", "--at", "2026-03-29T02:30", "--tz", "Europe/Paris")
    assert code == 2 and ("does not exist" in err or "in the past" in err)
    with pytest.raises(SystemExit) as exited:
        main(["add", "x", "--every", "1h", "--in", "1m"])
    assert exited.value.code == 2
    capsys.readouterr()
    code, _, err = run(capsys, "--db", db, "--url", "http://127.0.0.1:9", "list")
    assert code == 2 and "--db or --url, not both" in err


def test_console_entry_point_runs(tmp_path: Path) -> None:
    env = belfry_env(str(tmp_path / "x.db"))
    out = run_belfry("--version", env=env)
    assert out.returncode == 0 and out.stdout.startswith("belfry ")
    out = run_belfry(env=env)
    assert out.returncode == 2 and "COMMAND" in out.stderr


@pytest.mark.parametrize("rid", ["99999999999999999999999", "9223372036854775808"])
def test_ids_sqlite_cannot_hold_are_one_line_errors(
    db: str, capsys: pytest.CaptureFixture[str], rid: str
) -> None:
    assert run(capsys, "add", "stretch", "--every", "45m")[0] == 0
    for command in ("show", "delete", "pause", "resume", "send", "retry"):
        code, out, err = run(capsys, command, rid)
        assert (code, out) == (1, ""), (command, err)
        assert err == f"belfry: error: reminder {rid} not found\n"
    code, _, err = run(capsys, "edit", rid, "--title", "t")
    assert code == 1 and err == f"belfry: error: reminder {rid} not found\n"
    code, _, err = run(capsys, "snooze", rid, "10m")
    assert code == 1 and err == f"belfry: error: reminder {rid} not found\n"
