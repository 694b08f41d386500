"""The PostgreSQL engine's own behaviour (the shared contract tests run on it too).

Everything here runs against the suite's throwaway PostgreSQL cluster (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import honker
import pg
from helpers import Child, python_env
from honker import TaskResult
from honker.postgres._schema import EXPECTED_TABLES, SCHEMA_VERSION
from honker.tasks import ENVELOPE_KEY

# Tables both engines have (the rest of EXPECTED_TABLES are PostgreSQL-only extras).
PG_ONLY = {"_honker_stream_topics", "_honker_notify_channels", "_honker_schema_version"}
SQLITE_TABLES = tuple(t for t in EXPECTED_TABLES if t not in PG_ONLY)


@pytest.fixture
def url(pg_server: pg.Cluster) -> str:
    """A URL selecting a fresh, empty schema."""
    return pg_server.fresh_url()


@pytest.fixture
def pdb(url: str) -> honker.Database:
    database = honker.open(url)
    yield database  # type: ignore[misc]
    database.close()


def _run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=timeout,
    )


def test_open_without_the_extra_names_it(url: str) -> None:
    proc = _run(
        """
        import sys
        sys.modules["psycopg"] = None  # as if honker[postgres] were not installed
        import honker
        for u in (sys.argv[1], sys.argv[1].replace("postgresql://", "postgres://", 1)):
            try:
                honker.open(u)
            except ImportError as exc:
                print("ImportError:", exc)
            else:
                print("opened")
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("ImportError:") and "honker[postgres]" in line for line in lines)


def test_schema_has_the_sqlite_tables_and_columns_in_order(
    pdb: honker.Database, tmp_path: Path
) -> None:
    sdb = honker.open(str(tmp_path / "ref.db"))
    sdb.queue("q")  # SQLite creates the _honker_jobs view with the first queue
    sdb.close()
    ref = sqlite3.connect(tmp_path / "ref.db")
    for table in SQLITE_TABLES:
        want = [row[1] for row in ref.execute(f"PRAGMA table_info({table})")]
        got = [
            row["column_name"]
            for row in pdb.query(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position",
                [table],
            )
        ]
        assert got == want, table
    view = [
        row["column_name"]
        for row in pdb.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = '_honker_jobs' "
            "ORDER BY ordinal_position"
        )
    ]
    sview = [d[0] for d in ref.execute("SELECT * FROM _honker_jobs LIMIT 0").description or ()]
    ref.close()
    assert view == sview
    indexes = {
        row["indexname"]: row["indexdef"]
        for row in pdb.query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    for name in (
        "_honker_live_claim",
        "_honker_live_pending_deadline",
        "_honker_live_processing_deadline",
        "_honker_notifications_recent",
        "_honker_stream_topic",
    ):
        assert name in indexes
    assert "WHERE" in indexes["_honker_live_claim"]
    version = pdb.query("SELECT version FROM _honker_schema_version")
    assert version == [{"version": SCHEMA_VERSION}]


def test_minimal_raw_insert_is_claimable_with_budget_3(pdb: honker.Database) -> None:
    with pdb.transaction() as tx:
        tx.execute("INSERT INTO _honker_live (queue, payload) VALUES (%s, %s)", ["raw", '{"a": 1}'])
    job = pdb.queue("raw").claim_one("w")
    assert job is not None and job.payload == {"a": 1} and job.max_attempts == 3


def test_hosts_starting_at_once_install_the_schema_once(pg_server: pg.Cluster) -> None:
    schema_url = pg_server.schema_url("racing")
    code = """
        import sys, honker
        db = honker.open(sys.argv[1], schema="racing")
        db.queue("q").enqueue({"n": 1})
        db.close()
        print("ok")
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), pg_server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    db = honker.open(schema_url)
    try:
        assert db.query("SELECT count(*) AS n FROM _honker_live") == [{"n": 4}]
        assert db.query("SELECT count(*) AS n FROM _honker_schema_version") == [{"n": 1}]
    finally:
        db.close()


def test_schema_argument_validates_and_selects(pg_server: pg.Cluster) -> None:
    with pytest.raises(ValueError, match="invalid schema name"):
        honker.open(pg_server.url, schema="bad name; drop")
    a = honker.open(pg_server.url, schema="app_a")
    b = honker.open(pg_server.url, schema="app_b")
    try:
        a.queue("q").enqueue(1)
        assert b.queue("q").claim_one("w") is None
        assert a.queue("q").claim_one("w") is not None
    finally:
        a.close()
        b.close()


def test_bad_url_fails_at_open_with_the_server_message(pg_server: pg.Cluster) -> None:
    with pytest.raises(RuntimeError, match="cannot connect"):
        honker.open(f"postgresql://postgres@127.0.0.1:{pg_server.port}/no_such_db")


def test_sqlite_only_options_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite"):
        honker.open(url, watcher_backend="kernel")
    with pytest.raises(ValueError, match="PostgreSQL"):
        honker.open("x.db", schema="s")


def test_placeholder_errors_say_which_style(pdb: honker.Database) -> None:
    with pytest.raises(RuntimeError, match="%s"):
        pdb.query("SELECT ? AS x", [1])
    assert pdb.query("SELECT %s::int AS x, 'a%%b' AS y", [1]) == [{"x": 1, "y": "a%b"}]
    assert pdb.query("SELECT 'a%b' AS y") == [{"y": "a%b"}]


def test_times_are_the_servers_clock(pdb: honker.Database) -> None:
    job_id = pdb.queue("q").enqueue(1)
    row = pdb.query(
        "SELECT created_at, floor(extract(epoch FROM now()))::bigint AS server FROM _honker_live "
        "WHERE id = %s",
        [job_id],
    )[0]
    assert abs(row["created_at"] - row["server"]) <= 1


def test_enqueue_rolls_back_with_business_rows(pdb: honker.Database) -> None:
    q = pdb.queue("q")
    with pdb.transaction() as tx:
        tx.execute("CREATE TABLE orders (id int)")
    with pytest.raises(ZeroDivisionError), pdb.transaction() as tx:
        tx.execute("INSERT INTO orders VALUES (1)")
        q.enqueue({"order": 1}, tx=tx)
        1 / 0  # noqa: B018
    assert pdb.query("SELECT count(*) AS n FROM orders") == [{"n": 0}]
    assert q.claim_one("w") is None
    with pdb.transaction() as tx:
        tx.execute("INSERT INTO orders VALUES (2)")
        q.enqueue({"order": 2}, tx=tx)
    job = q.claim_one("w")
    assert job is not None and job.payload == {"order": 2}


async def test_wake_crosses_processes(url: str) -> None:
    db = honker.open(url)
    try:
        q = db.queue("q")
        claims = q.claim("w", idle_poll_s=60)
        child = _run(
            """
            import sys, honker
            db = honker.open(sys.argv[1])
            db.queue("q").enqueue({"from": "child"})
            db.close()
            """,
            url,
        )
        assert child.returncode == 0, child.stderr
        job = await asyncio.wait_for(claims.__anext__(), 10)
        assert job.payload == {"from": "child"}
    finally:
        db.close()


PUBLISHER = """
import random, sys, time, honker
url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = honker.open(url)
stream = db.stream("orders")
rng = random.Random(name)
for i in range(count):
    with db.transaction() as tx:
        stream.publish({"p": name, "i": i}, tx=tx)
        # Hold the transaction open a random while, so that without per-topic
        # serialisation later offsets would often commit before earlier ones.
        tx.execute("SELECT pg_sleep(%s)", [rng.random() * 0.004])
db.close()
print("done")
"""


async def test_concurrent_publishers_never_make_a_reader_skip(url: str) -> None:
    """4 publisher processes, one live subscriber: it sees every event, in offset order."""
    total = 4 * 60
    db = honker.open(url)
    publishers: list[subprocess.Popen[str]] = []
    try:
        stream = db.stream("orders")
        events = stream.subscribe()
        publishers = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, url, f"p{i}", str(total // 4)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=python_env(),
            )
            for i in range(4)
        ]
        seen: list[int] = []

        async def collect() -> None:
            async for event in events:
                seen.append(event.offset)
                if len(seen) == total:
                    return

        reader = asyncio.ensure_future(collect())
        for p in publishers:
            _, err = await asyncio.to_thread(p.communicate, timeout=90)
            assert p.returncode == 0, err
        # Everything is committed now: a reader that skipped nothing gets the rest at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 15)
        every = [
            r["offset"]
            for r in db.query(
                'SELECT "offset" FROM _honker_stream WHERE topic = %s ORDER BY 1', ["orders"]
            )
        ]
        assert len(every) == total
        assert seen == every, f"subscriber missed {sorted(set(every) - set(seen))[:10]}"
        events.close()
    finally:
        for p in publishers:
            if p.poll() is None:
                p.kill()
                p.communicate()
        db.close()


def test_listen_reconnects_after_server_restart(pg_server: pg.Cluster) -> None:
    """``pg_ctl restart``: the LISTEN connection comes back, subscribers are woken, work goes on."""
    url = pg_server.fresh_url()
    db = honker.open(url)
    try:
        q = db.queue("q")
        sub = db.engine.subscribe()
        sub.wait_sync(0)
        pg_server.restart()
        q.enqueue({"after": "restart"})  # the pool's dead connections are replaced
        assert sub.wait_sync(30)
        deadline = time.monotonic() + 30
        notifier = db.engine._notifier  # type: ignore[attr-defined]
        while notifier.reconnects == 0 and time.monotonic() < deadline:
            sub.wait_sync(1)
        assert notifier.reconnects >= 1
        # A fresh commit from elsewhere arrives as a NOTIFY on the new LISTEN connection.
        other = honker.open(url)
        try:
            received = notifier.received
            other.queue("q").enqueue({"n": 2})
            while notifier.received == received and time.monotonic() < deadline:
                sub.wait_sync(1)
            assert notifier.received > received
        finally:
            other.close()
        jobs = q.claim_batch("w", 10)
        assert sorted(json.dumps(j.payload) for j in jobs) == sorted(
            ['{"after": "restart"}', '{"n": 2}']
        )
        sub.close()
    finally:
        db.close()


def test_a_caught_error_aborts_the_whole_transaction(pdb: honker.Database) -> None:
    """Where the engines differ: PostgreSQL cannot commit past a failed statement."""
    q = pdb.queue("q")
    with pytest.raises(RuntimeError, match="rolled back"), pdb.transaction() as tx:
        q.enqueue({"n": 1}, tx=tx)
        with pytest.raises(RuntimeError, match="does not exist"):
            tx.execute("SELECT * FROM no_such_table")
    assert q.claim_one("w") is None


WORKER_CLI = """
import sys
from honker.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_worker_cli_survives_a_server_restart(pg_server: pg.Cluster, children: list[Child]) -> None:
    """``pg_ctl restart`` mid-run: the worker reconnects, finishes everything exactly once."""
    url = pg_server.fresh_url()
    env = python_env()
    env["HONKER_TEST_DB"] = url
    worker = Child(WORKER_CLI, "worker", "apps.taskapp:db", "--queue", "emails", env=env)
    children.append(worker)
    assert worker.readline().startswith("honker worker: pid=")
    db = honker.open(url)
    try:
        q = db.queue("emails", visibility_timeout_s=2)

        def add(a: int) -> int:
            return q.enqueue({ENVELOPE_KEY: {"task": "add", "args": [a, 1], "kwargs": {}}})

        before = [add(i) for i in range(50)]
        assert TaskResult(db, q, before[-1]).get(timeout=30) == 50
        pg_server.restart()
        after = [add(i) for i in range(50, 100)]
        for job_id, want in zip(before + after, range(1, 101), strict=True):
            assert TaskResult(db, q, job_id).get(timeout=60) == want
        assert db.query("SELECT count(*) AS n FROM _honker_live") == [{"n": 0}]
        assert db.query("SELECT count(*) AS n FROM _honker_dead") == [{"n": 0}]
        done = db.query("SELECT COALESCE(SUM(done), 0)::int AS n FROM _honker_stats")
        assert done == [{"n": 100}]  # each job acked once
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        db.close()


def _migrate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "honker", "migrate", *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )


def test_migrate_copies_a_sqlite_file_idempotently(url: str, tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    src = honker.open(path)
    q = src.queue("q")
    pending = q.enqueue({"n": 1}, priority=5)
    held = q.enqueue({"n": 2})
    dead = q.enqueue({"n": 3})
    gone = q.enqueue({"n": 4})
    assert [j.id for j in q.claim_batch("w", 3)] == [pending, held, dead]
    assert q.fail(dead, "w", "boom") and q.ack(pending, "w")  # held stays processing
    q.enqueue({"n": 1})  # a second pending job
    assert q.cancel(gone)
    q.save_result(pending, {"ok": True})
    q.save_result(held, "expired", ttl=1)
    src.engine.write(
        lambda c: c.execute("UPDATE _honker_results SET expires_at = 1 WHERE job_id = ?", (held,))
    )
    stream = src.stream("orders")
    for i in range(3):
        stream.publish({"i": i})
    stream.save_offset("billing", 2)
    honker.Scheduler(src).add(name="nightly", queue="q", schedule="0 3 * * *", tz="Europe/Paris")
    top_id = q.enqueue("last")
    assert q.cancel(top_id)  # SQLite never reuses this id; PostgreSQL must not either
    src.close()

    first = _migrate_cli(path, url)
    assert first.returncode == 0, first.stderr
    assert "jobs: 2" in first.stdout and "dead jobs: 1" in first.stdout
    assert "stream events: 3" in first.stdout and "results: 1" in first.stdout

    db = honker.open(url)
    try:
        pq = db.queue("q")
        got = pq.claim_batch("w2", 10)
        assert [(j.id, j.payload) for j in got] == [(held, {"n": 2}), (top_id - 1, {"n": 1})]
        assert got[0].attempts == 2  # the attempt made on SQLite is kept
        assert pq.get_result(pending) == (True, {"ok": True})
        assert pq.get_result(held) == (False, None)
        dead_rows = db.query("SELECT id, last_error FROM _honker_dead")
        assert dead_rows == [{"id": dead, "last_error": "boom"}]
        assert db.stream("orders").get_offset("billing") == 2
        (sched,) = honker.Scheduler(db).list()
        assert sched["name"] == "nightly" and sched["tz"] == "Europe/Paris"
        assert pq.enqueue("new") > top_id
        db.stream("orders").publish({"i": 3})
        offsets = [r["offset"] for r in db.query('SELECT "offset" FROM _honker_stream')]
        assert sorted(offsets) == [1, 2, 3, 4]
    finally:
        db.close()

    again = _migrate_cli(path, url)
    assert again.returncode == 2 and "already holds honker data" in again.stderr
    forced = _migrate_cli(path, url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "jobs: 0" in forced.stdout and "stream events: 0" in forced.stdout
    bad = _migrate_cli(str(tmp_path / "missing.db"), url)
    assert bad.returncode == 2 and "no database file" in bad.stderr


def test_the_postgres_ops_module_has_every_op_with_the_same_signature() -> None:
    """A new function in honker._ops needs its PostgreSQL twin (feature modules call
    ``engine.ops.<name>`` on either engine)."""
    import inspect

    from honker import _ops as sqlite_ops
    from honker.postgres import _ops as pg_ops

    for name, fn in vars(sqlite_ops).items():
        if name.startswith("_"):
            continue
        if name.isupper():
            assert hasattr(pg_ops, name), name
        elif inspect.isfunction(fn) and fn.__module__ == sqlite_ops.__name__:
            twin = getattr(pg_ops, name, None)
            assert twin is not None, f"honker.postgres._ops lacks {name}"
            want = list(inspect.signature(fn).parameters)[1:]
            assert list(inspect.signature(twin).parameters)[1:] == want, name
