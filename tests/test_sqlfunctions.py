"""The SQL surface (``notify()`` + ``honker_*``) per SQL_FUNCTIONS.md, on both surfaces.

Every semantic test runs twice (fixture ``s``):

* ``attached`` — a plain ``sqlite3.Connection`` owned by the test, after ``honker.attach``;
  each call runs in its own ``BEGIN IMMEDIATE … COMMIT``;
* ``writer`` — honker's own writer connection, through ``db.transaction()`` / ``tx.query``.

Then: argument strictness (table-driven from the contract's signatures), atomicity with
the caller's transaction, ``attach()`` itself, and a worker process that wakes on a commit
made through an attached connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import honker
from helpers import CLAIM_ONE_WORKER, Child

# -- the two surfaces -------------------------------------------------------------------

Call = Callable[..., Any]


class Surface:
    kind = "?"
    error: type[Exception] = Exception

    def transaction(self) -> Any:  # context manager yielding a `call`-like function
        raise NotImplementedError

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def call(self, sql: str, *params: Any) -> Any:
        """First column of the first row of ``sql``, run in its own committed transaction."""
        with self.transaction() as q:
            return q(sql, *params)

    def json(self, sql: str, *params: Any) -> Any:
        text = self.call(sql, *params)
        assert isinstance(text, str)
        return json.loads(text)

    def fails(self, sql: str, *params: Any) -> str:
        """Assert that ``sql`` fails; returns the error message."""
        with pytest.raises(self.error) as info:
            self.call(sql, *params)
        return str(info.value)

    def now(self) -> int:
        return int(self.rows("SELECT unixepoch()")[0][0])

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.rows(sql, *params)[0][0]


class Attached(Surface):
    kind = "attached"
    error = sqlite3.OperationalError

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @contextmanager
    def transaction(self) -> Iterator[Call]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")

        def q(sql: str, *params: Any) -> Any:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

        try:
            yield q
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()


class Writer(Surface):
    kind = "writer"
    error = RuntimeError

    def __init__(self, db: honker.Database) -> None:
        self.db = db

    @contextmanager
    def transaction(self) -> Iterator[Call]:
        with self.db.transaction() as tx:

            def q(sql: str, *params: Any) -> Any:
                rows = tx.query(sql, list(params))
                return next(iter(rows[0].values())) if rows else None

            yield q

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.db.transaction() as tx:  # the writer: it has the functions, readers don't
            return [tuple(r.values()) for r in tx.query(sql, list(params))]


@pytest.fixture(params=["attached", "writer"])
def s(request: pytest.FixtureRequest, db_path: str) -> Iterator[Surface]:
    if request.param == "attached":
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
        honker.attach(conn)
        yield Attached(conn)
        conn.close()
    else:
        db = honker.open(db_path)
        yield Writer(db)
        db.close()


ENQ = "SELECT honker_enqueue(?, ?, ?, ?, ?, ?, ?)"


def enqueue(
    s: Surface,
    queue: str = "q",
    payload: str = '{"n": 1}',
    run_at: int | None = None,
    delay: int | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    expires: int | None = None,
) -> int:
    job_id = s.call(ENQ, queue, payload, run_at, delay, priority, max_attempts, expires)
    assert isinstance(job_id, int)
    return job_id


def claim(s: Surface, queue: str = "q", worker: str = "w", n: int = 1, vis: int = 60) -> Any:
    return s.json("SELECT honker_claim_batch(?, ?, ?, ?)", queue, worker, n, vis)


def live(s: Surface, job_id: int) -> dict[str, Any] | None:
    cols = "state, worker_id, attempts, run_at, claim_expires_at, expires_at"
    rows = s.rows(f"SELECT {cols} FROM _honker_live WHERE id = ?", job_id)
    return dict(zip(cols.split(", "), rows[0], strict=True)) if rows else None


def dead(s: Surface, job_id: int) -> tuple[Any, ...] | None:
    rows = s.rows("SELECT last_error, attempts FROM _honker_dead WHERE id = ?", job_id)
    return rows[0] if rows else None


def detail(s: Surface, message: str) -> str:
    """The reason of a failed call: in the message on honker's writer, else last_error()."""
    return message if s.kind == "writer" else str(honker._sqlfunctions.last_error())


def expire_claim(s: Surface, job_id: int) -> None:
    with s.transaction() as q:
        q("UPDATE _honker_live SET claim_expires_at = unixepoch() - 1 WHERE id = ?", job_id)


# -- the function set ------------------------------------------------------------------

# (name, arity) of every function SQL_FUNCTIONS.md §1 requires (watcher ones excluded).
CONTRACT_ARITIES = {
    ("notify", 2),
    ("honker_bootstrap", 0),
    ("honker_enqueue", 7),
    ("honker_claim_batch", 4),
    ("honker_ack", 2),
    ("honker_ack_batch", 2),
    ("honker_retry", 4),
    ("honker_fail", 3),
    ("honker_heartbeat", 3),
    ("honker_cancel", 1),
    ("honker_get_job", 1),
    ("honker_sweep_expired", 1),
    ("honker_queue_next_claim_at", 1),
    ("honker_lock_acquire", 3),
    ("honker_lock_renew", 3),
    ("honker_lock_release", 2),
    ("honker_rate_limit_try", 3),
    ("honker_rate_limit_sweep", 1),
    ("honker_scheduler_register", 6),
    ("honker_scheduler_register", 7),
    ("honker_scheduler_unregister", 1),
    ("honker_scheduler_tick", 1),
    ("honker_scheduler_soonest", 0),
    ("honker_scheduler_pause", 1),
    ("honker_scheduler_resume", 1),
    ("honker_scheduler_list", 0),
    ("honker_scheduler_update", 6),
    ("honker_scheduler_update", 8),
    ("honker_cron_next_after", 2),
    ("honker_result_save", 3),
    ("honker_result_get", 1),
    ("honker_result_sweep", 0),
    ("honker_stream_publish", 3),
    ("honker_stream_read_since", 3),
    ("honker_stream_save_offset", 3),
    ("honker_stream_get_offset", 2),
}


def test_every_contract_function_is_registered_with_its_arities(s: Surface) -> None:
    listed = {
        (name, narg)
        for name, narg in s.rows("SELECT name, narg FROM pragma_function_list")
        if name == "notify" or name.startswith("honker_")
    }
    assert listed == CONTRACT_ARITIES
    assert "wrong number of arguments" in s.fails("SELECT honker_enqueue('q', '1')")


def test_only_cron_next_after_is_deterministic(s: Surface) -> None:
    # Deterministic functions may appear in generated columns; the others may not.
    with s.transaction() as q:
        q("CREATE TABLE t (x INTEGER, nxt INTEGER AS (honker_cron_next_after('@every 5s', x)))")
        q("INSERT INTO t (x) VALUES (10)")
    assert s.scalar("SELECT nxt FROM t") == 15
    message = s.fails("CREATE TABLE u (x TEXT, id INTEGER AS (honker_get_job(1)))")
    assert "non-deterministic" in message


# -- notify and bootstrap --------------------------------------------------------------


def test_notify_inserts_verbatim_text_and_returns_id(s: Surface) -> None:
    first = s.call("SELECT notify('orders', ?)", '{"total": 9900}')
    second = s.call("SELECT notify('orders', 'not json at all')")
    assert isinstance(first, int) and second > first
    assert s.rows("SELECT id, channel, payload FROM _honker_notifications ORDER BY id") == [
        (first, "orders", '{"total": 9900}'),
        (second, "orders", "not json at all"),
    ]


def test_bootstrap_returns_1_and_is_idempotent(s: Surface) -> None:
    assert s.call("SELECT honker_bootstrap()") == 1
    assert s.call("SELECT honker_bootstrap()") == 1
    tables = {r[0] for r in s.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "_honker_live",
        "_honker_dead",
        "_honker_notifications",
        "_honker_locks",
        "_honker_rate_limits",
        "_honker_scheduler_tasks",
        "_honker_results",
        "_honker_stream",
        "_honker_stream_consumers",
    } <= tables


# -- queue -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_at", "delay", "expires", "want_run_at", "want_expires"),
    [
        (None, None, None, ("now", 0), None),
        (None, 30, None, ("now", 30), None),
        (12345, None, None, ("abs", 12345), None),
        (12345, 30, None, ("now", 30), None),  # delay wins
        (None, None, 600, ("now", 0), ("now", 600)),
        (None, -5, None, ("now", -5), None),
    ],
)
def test_enqueue_columns(
    s: Surface,
    run_at: int | None,
    delay: int | None,
    expires: int | None,
    want_run_at: tuple[str, int],
    want_expires: tuple[str, int] | None,
) -> None:
    before = s.now()
    job_id = enqueue(
        s, "mail", '{"to": "a"}', run_at, delay, priority=7, max_attempts=9, expires=expires
    )
    after = s.now()
    row = s.rows(
        "SELECT queue, payload, state, priority, max_attempts, attempts, worker_id, "
        "claim_expires_at, run_at, expires_at FROM _honker_live WHERE id = ?",
        job_id,
    )[0]
    assert row[:8] == ("mail", '{"to": "a"}', "pending", 7, 9, 0, None, None)

    def check(value: int | None, want: tuple[str, int] | None) -> None:
        if want is None:
            assert value is None
        elif want[0] == "abs":
            assert value == want[1]
        else:
            assert value is not None and before + want[1] <= value <= after + want[1]

    check(row[8], want_run_at)
    check(row[9], want_expires)
    assert s.scalar("SELECT COUNT(*) FROM _honker_notifications") == 0  # no wake row


def test_claim_batch_json_shape_and_order(s: Surface) -> None:
    low = enqueue(s, payload='{"p": "low"}', priority=0)
    high = enqueue(s, payload='{"p": "high"}', priority=5)
    early = enqueue(s, payload='"early"', run_at=1000)
    other = enqueue(s, queue="other")
    before = s.now()
    jobs = claim(s, worker="w1", n=2, vis=300)
    after = s.now()
    assert [j["id"] for j in jobs] == [high, early]  # chosen by priority/run_at, listed by id
    assert set(jobs[0]) == {"id", "queue", "payload", "worker_id", "attempts", "claim_expires_at"}
    assert jobs[0]["queue"] == "q" and jobs[0]["worker_id"] == "w1" and jobs[0]["attempts"] == 1
    # payload is the stored text: a JSON string that decodes a second time
    assert jobs[0]["payload"] == '{"p": "high"}' and jobs[1]["payload"] == '"early"'
    assert json.loads(jobs[0]["payload"]) == {"p": "high"}
    assert before + 300 <= jobs[0]["claim_expires_at"] <= after + 300
    row = live(s, high)
    assert row is not None
    assert (row["state"], row["worker_id"], row["attempts"], row["claim_expires_at"]) == (
        "processing",
        "w1",
        1,
        jobs[0]["claim_expires_at"],
    )
    assert [j["id"] for j in claim(s, n=5)] == [low]
    assert claim(s) == []
    assert s.call("SELECT honker_claim_batch('q', 'w', 1, 60)") == "[]"
    assert live(s, other)["state"] == "pending"  # type: ignore[index]


def test_claim_batch_zero_and_negative_n(s: Surface) -> None:
    ids = [enqueue(s) for _ in range(3)]
    assert claim(s, n=0) == []
    assert [j["id"] for j in claim(s, n=-1)] == ids  # negative LIMIT: no limit


def test_claim_dead_letters_exhausted_rows(s: Surface) -> None:
    never = enqueue(s, max_attempts=0)  # never claimed: dead-lettered by a claim call
    spent = enqueue(s, max_attempts=1)
    [job] = claim(s)
    assert job["id"] == spent
    assert dead(s, never) == ("max attempts exceeded", 0)
    expire_claim(s, spent)  # the holder died on its last attempt
    assert claim(s) == []
    assert live(s, spent) is None
    assert dead(s, spent) == ("max attempts exceeded", 1)


def test_expired_claims_are_reclaimed(s: Surface) -> None:
    job_id = enqueue(s)
    claim(s, worker="a")
    expire_claim(s, job_id)
    [again] = claim(s, worker="b")
    assert again["id"] == job_id and again["attempts"] == 2 and again["worker_id"] == "b"
    assert s.call("SELECT honker_ack(?, 'a')", job_id) == 0


def test_ack(s: Surface) -> None:
    job_id = enqueue(s)
    claim(s)
    assert s.call("SELECT honker_ack(?, 'intruder')", job_id) == 0
    assert s.call("SELECT honker_ack(?, 'w')", job_id) == 1
    assert s.call("SELECT honker_ack(?, 'w')", job_id) == 0
    assert live(s, job_id) is None and dead(s, job_id) is None
    late = enqueue(s)
    claim(s)
    expire_claim(s, late)
    assert s.call("SELECT honker_ack(?, 'w')", late) == 0


def test_ack_batch(s: Surface) -> None:
    a, b, c = (enqueue(s) for _ in range(3))
    claim(s, n=2)  # a, b
    ids = json.dumps([a, b, c, 999])
    assert s.call("SELECT honker_ack_batch(?, 'other')", ids) == 0
    assert s.call("SELECT honker_ack_batch(?, 'w')", ids) == 2
    assert s.call("SELECT honker_ack_batch('[]', 'w')") == 0
    assert live(s, c)["state"] == "pending"  # type: ignore[index]
    s.fails("SELECT honker_ack_batch('[1, 2', 'w')")  # malformed JSON is an error


def test_retry_back_to_pending_then_dead(s: Surface) -> None:
    job_id = enqueue(s, max_attempts=2)
    claim(s)
    assert s.call("SELECT honker_retry(?, 'other', 0, 'x')", job_id) == 0
    before = s.now()
    assert s.call("SELECT honker_retry(?, 'w', 120, 'boom')", job_id) == 1
    row = live(s, job_id)
    assert row is not None
    assert (row["state"], row["worker_id"], row["claim_expires_at"], row["attempts"]) == (
        "pending",
        None,
        None,
        1,
    )
    assert row["run_at"] >= before + 120
    assert s.call("SELECT honker_retry(?, 'w', 0, 'boom')", job_id) == 0  # not held any more
    with s.transaction() as q:
        q("UPDATE _honker_live SET run_at = unixepoch() WHERE id = ?", job_id)
    claim(s)  # attempts 2 = budget
    assert s.call("SELECT honker_retry(?, 'w', 0, 'final error')", job_id) == 1
    assert live(s, job_id) is None
    assert dead(s, job_id) == ("final error", 2)


def test_fail(s: Surface) -> None:
    job_id = enqueue(s, max_attempts=10)
    assert s.call("SELECT honker_fail(?, 'w', 'x')", job_id) == 0  # pending, not held
    claim(s)
    assert s.call("SELECT honker_fail(?, 'other', 'x')", job_id) == 0
    assert s.call("SELECT honker_fail(?, 'w', 'bad input')", job_id) == 1
    assert dead(s, job_id) == ("bad input", 1)
    assert s.call("SELECT honker_fail(?, 'w', 'again')", job_id) == 0


def test_heartbeat(s: Surface) -> None:
    job_id = enqueue(s)
    [job] = claim(s, vis=10)
    before = s.now()
    assert s.call("SELECT honker_heartbeat(?, 'w', 600)", job_id) == 1
    assert live(s, job_id)["claim_expires_at"] >= before + 600  # type: ignore[index]
    assert job["claim_expires_at"] < before + 600
    assert s.call("SELECT honker_heartbeat(?, 'other', 600)", job_id) == 0
    expire_claim(s, job_id)
    assert s.call("SELECT honker_heartbeat(?, 'w', 600)", job_id) == 0  # never revives


def test_cancel(s: Surface) -> None:
    held = enqueue(s)
    pending = enqueue(s)
    assert claim(s)[0]["id"] == held
    assert s.call("SELECT honker_cancel(?)", held) == 1  # whoever holds it
    assert s.call("SELECT honker_cancel(?)", pending) == 1
    assert s.call("SELECT honker_cancel(?)", pending) == 0
    failed = enqueue(s)
    claim(s)
    s.call("SELECT honker_fail(?, 'w', 'x')", failed)
    assert s.call("SELECT honker_cancel(?)", failed) == 0  # dead rows are untouched
    assert dead(s, failed) is not None


def test_get_job(s: Surface) -> None:
    assert s.call("SELECT honker_get_job(12345)") == ""  # a miss is '' (not NULL)
    job_id = enqueue(s, payload='{"a": [1, 2]}', priority=3, max_attempts=4, expires=600)
    got = s.json("SELECT honker_get_job(?)", job_id)
    assert set(got) == {
        "id",
        "queue",
        "payload",
        "state",
        "priority",
        "run_at",
        "worker_id",
        "claim_expires_at",
        "attempts",
        "max_attempts",
        "created_at",
        "expires_at",
    }
    assert got["payload"] == '{"a": [1, 2]}'
    assert (got["state"], got["worker_id"], got["claim_expires_at"]) == ("pending", None, None)
    assert (got["priority"], got["max_attempts"], got["attempts"]) == (3, 4, 0)
    assert isinstance(got["expires_at"], int) and isinstance(got["created_at"], int)
    claim(s)
    got = s.json("SELECT honker_get_job(?)", job_id)
    assert (got["state"], got["worker_id"], got["attempts"]) == ("processing", "w", 1)
    s.call("SELECT honker_ack(?, 'w')", job_id)
    assert s.call("SELECT honker_get_job(?)", job_id) == ""


def test_sweep_expired(s: Surface) -> None:
    gone = enqueue(s, expires=0)  # expires_at = now: already expired
    keep = enqueue(s, expires=3600)
    other_queue = enqueue(s, queue="other", expires=0)
    assert [j["id"] for j in claim(s, n=10)] == [keep]  # expired rows are never claimed
    assert s.call("SELECT honker_sweep_expired('q')") == 1
    assert s.call("SELECT honker_sweep_expired('q')") == 0
    assert dead(s, gone) == ("expired", 0)
    assert live(s, keep) is not None and live(s, other_queue) is not None


def test_queue_next_claim_at(s: Surface) -> None:
    assert s.call("SELECT honker_queue_next_claim_at('q')") == 0
    enqueue(s, run_at=10**10)
    assert s.call("SELECT honker_queue_next_claim_at('q')") == 10**10
    enqueue(s)
    [job] = claim(s, vis=100)
    assert s.call("SELECT honker_queue_next_claim_at('q')") == job["claim_expires_at"] + 1
    assert s.call("SELECT honker_queue_next_claim_at('other')") == 0


# -- locks and rate limits -------------------------------------------------------------


def test_locks(s: Surface) -> None:
    acquire = "SELECT honker_lock_acquire(?, ?, ?)"
    assert s.call(acquire, "L", "a", 60) == 1
    expires = s.scalar("SELECT expires_at FROM _honker_locks WHERE name = 'L'")
    assert s.call(acquire, "L", "b", 60) == 0
    assert s.call(acquire, "L", "a", 999) == 1  # same owner: yes, TTL not refreshed
    assert s.scalar("SELECT expires_at FROM _honker_locks WHERE name = 'L'") == expires
    assert s.call("SELECT honker_lock_renew('L', 'b', 60)") == 0
    assert s.call("SELECT honker_lock_renew('L', 'a', 999)") == 1
    assert s.scalar("SELECT expires_at FROM _honker_locks WHERE name = 'L'") >= expires + 900
    assert "ttl_s must be positive" in detail(s, s.fails("SELECT honker_lock_renew('L', 'a', 0)"))
    assert s.call("SELECT honker_lock_release('L', 'b')") == 0
    assert s.call("SELECT honker_lock_release('L', 'a')") == 1
    assert s.call("SELECT honker_lock_release('L', 'a')") == 0
    s.call(acquire, "S", "old", 60)
    with s.transaction() as q:
        q("UPDATE _honker_locks SET expires_at = unixepoch() WHERE name = 'S'")  # stale
    assert s.call(acquire, "S", "new", 60) == 1
    assert s.scalar("SELECT owner FROM _honker_locks WHERE name = 'S'") == "new"


def test_rate_limits(s: Surface) -> None:
    try_ = "SELECT honker_rate_limit_try('api', 2, 3600)"
    assert [s.call(try_) for _ in range(3)] == [1, 1, 0]
    [(window, count)] = s.rows("SELECT window_start, count FROM _honker_rate_limits")
    assert window % 3600 == 0 and count == 2
    assert s.call("SELECT honker_rate_limit_try('other', 1, 60)") == 1
    for bad in (
        "SELECT honker_rate_limit_try('x', 0, 60)",
        "SELECT honker_rate_limit_try('x', 1, 0)",
    ):
        s.fails(bad)
    with s.transaction() as q:
        q("INSERT INTO _honker_rate_limits VALUES ('ancient', 0, 5)")
    assert s.call("SELECT honker_rate_limit_sweep(86400)") == 1
    assert s.call("SELECT honker_rate_limit_sweep(86400)") == 0


# -- scheduler -------------------------------------------------------------------------

REGISTER6 = "SELECT honker_scheduler_register(?, ?, ?, ?, ?, ?)"
REGISTER7 = "SELECT honker_scheduler_register(?, ?, ?, ?, ?, ?, ?)"


def schedules(s: Surface) -> dict[str, dict[str, Any]]:
    listed = s.json("SELECT honker_scheduler_list()")
    return {item["name"]: item for item in listed}


def test_scheduler_register_and_list(s: Surface) -> None:
    before = s.now()
    assert s.call(REGISTER6, "six", "q", "@every 60s", '{"k": 1}', 2, None) == 1
    assert s.call(REGISTER7, "seven", "q2", "@every 10s", "null", 0, 30, 0) == 1
    after = s.now()
    listed = s.json("SELECT honker_scheduler_list()")
    assert [x["name"] for x in listed] == ["seven", "six"]  # ordered by name
    six = listed[1]
    assert set(six) == {
        "name",
        "queue",
        "cron_expr",
        "payload",
        "priority",
        "expires_s",
        "next_fire_at",
        "enabled",
        "max_attempts",
    }
    assert six["enabled"] is True and six["max_attempts"] == 3 and six["expires_s"] is None
    assert six["payload"] == '{"k": 1}' and six["priority"] == 2 and six["queue"] == "q"
    assert before + 60 <= six["next_fire_at"] <= after + 60
    assert listed[0]["max_attempts"] == 1 and listed[0]["expires_s"] == 30  # < 1 stored as 1
    s.fails(REGISTER6, "bad", "q", "not a schedule", "{}", 0, None)
    assert "bad" not in schedules(s)


def test_scheduler_pause_resume_soonest_unregister(s: Surface) -> None:
    assert s.call("SELECT honker_scheduler_soonest()") == 0
    s.call(REGISTER6, "a", "q", "@every 60s", "{}", 0, None)
    s.call(REGISTER6, "b", "q", "@every 3600s", "{}", 0, None)
    nxt = {k: v["next_fire_at"] for k, v in schedules(s).items()}
    assert s.call("SELECT honker_scheduler_soonest()") == nxt["a"]
    assert s.call("SELECT honker_scheduler_pause('a')") == 1
    assert s.call("SELECT honker_scheduler_pause('a')") == 0
    assert schedules(s)["a"]["enabled"] is False
    assert s.call("SELECT honker_scheduler_soonest()") == nxt["b"]
    s.call(REGISTER6, "a", "q2", "@every 60s", "{}", 0, None)  # re-register keeps it paused
    assert schedules(s)["a"]["enabled"] is False and schedules(s)["a"]["queue"] == "q2"
    assert s.call("SELECT honker_scheduler_resume('a')") == 1
    assert s.call("SELECT honker_scheduler_resume('a')") == 0
    assert s.call("SELECT honker_scheduler_unregister('a')") == 1
    assert s.call("SELECT honker_scheduler_unregister('a')") == 0
    assert s.call("SELECT honker_scheduler_pause('nope')") == 0


def test_scheduler_update(s: Surface) -> None:
    upd6 = "SELECT honker_scheduler_update(?, ?, ?, ?, ?, ?)"
    upd8 = "SELECT honker_scheduler_update(?, ?, ?, ?, ?, ?, ?, ?)"
    s.call(REGISTER7, "s", "q", "@every 60s", "{}", 1, 30, 5)
    assert s.call(upd6, "missing", None, '"x"', None, None, 0) == 0
    assert s.call(upd6, "s", None, None, None, None, 0) == 0  # nothing selected
    assert s.call(upd6, "s", None, '{"v": 2}', 9, None, 1) == 1
    row = schedules(s)["s"]
    assert (row["payload"], row["priority"], row["expires_s"], row["max_attempts"]) == (
        '{"v": 2}',
        9,
        None,
        5,
    )
    assert s.call(upd8, "s", None, None, None, 40, 0, None, 1) == 1  # NULL budget → 3
    row = schedules(s)["s"]
    assert (row["expires_s"], row["max_attempts"]) == (None, 3)
    assert s.call(upd8, "s", None, None, None, 40, 1, -2, 1) == 1
    assert (schedules(s)["s"]["expires_s"], schedules(s)["s"]["max_attempts"]) == (40, 1)
    before = s.now()
    assert s.call(upd6, "s", "@every 7200s", None, None, None, 0) == 1
    assert schedules(s)["s"]["next_fire_at"] >= before + 7200
    s.fails(upd6, "s", "@every 0s", None, None, None, 0)
    assert schedules(s)["s"]["cron_expr"] == "@every 7200s"


def test_scheduler_tick(s: Surface) -> None:
    s.call(REGISTER7, "m", "q", "@every 60s", '{"tick": true}', 4, 600, 2)
    s.call(REGISTER6, "paused", "q", "@every 60s", "{}", 0, None)
    s.call("SELECT honker_scheduler_pause('paused')")
    first = schedules(s)["m"]["next_fire_at"]
    assert s.json("SELECT honker_scheduler_tick(?)", first - 1) == []
    fires = s.json("SELECT honker_scheduler_tick(?)", first + 120)
    assert [f["fire_at"] for f in fires] == [first, first + 60, first + 120]
    assert {tuple(sorted(f)) for f in fires} == {("fire_at", "job_id", "name", "queue")}
    assert {(f["name"], f["queue"]) for f in fires} == {("m", "q")}
    assert schedules(s)["m"]["next_fire_at"] == first + 180
    for fire in fires:
        job = s.json("SELECT honker_get_job(?)", fire["job_id"])
        assert (job["payload"], job["priority"], job["max_attempts"]) == ('{"tick": true}', 4, 2)
        assert job["expires_at"] is not None
    assert s.json("SELECT honker_scheduler_tick(?)", first + 120) == []


def test_scheduler_tick_caps_at_64_fires(s: Surface) -> None:
    s.call(REGISTER6, "fast", "q", "@every 1s", "{}", 0, None)
    first = schedules(s)["fast"]["next_fire_at"]
    now_unix = first + 1000
    fires = s.json("SELECT honker_scheduler_tick(?)", now_unix)
    assert len(fires) == 64
    assert schedules(s)["fast"]["next_fire_at"] == now_unix + 1


@pytest.mark.parametrize(
    ("expr", "start", "want"),
    [
        ("@every 5s", 0, 5),
        ("  @every 2m ", 100, 220),
        ("@every 1d", 0, 86400),
        ("*/15 * * * * *", 1, 15),
        ("30 * * * * *", 30, 90),
    ],
)
def test_cron_next_after(s: Surface, expr: str, start: int, want: int) -> None:
    assert s.call("SELECT honker_cron_next_after(?, ?)", expr, start) == want


@pytest.mark.parametrize(
    "expr",
    ["@every 0s", "@every 5w", "@every 1h30m", "@daily", "* * *", "0 0 31 2 *", "61 * * * *"],
)
def test_cron_next_after_rejects(s: Surface, expr: str) -> None:
    s.fails("SELECT honker_cron_next_after(?, 0)", expr)


# -- results ---------------------------------------------------------------------------


def test_results(s: Surface) -> None:
    assert s.call("SELECT honker_result_get(1)") is None
    assert s.call("SELECT honker_result_save(1, 'null', 0)") == 1
    assert s.call("SELECT honker_result_get(1)") == "null"  # a stored None, not SQL NULL
    assert s.call("SELECT honker_result_save(2, '{\"ok\": true}', 3600)") == 1
    expires = s.scalar("SELECT expires_at FROM _honker_results WHERE job_id = 2")
    assert expires >= s.now() + 3590
    assert s.scalar("SELECT expires_at FROM _honker_results WHERE job_id = 1") is None
    with s.transaction() as q:
        q("UPDATE _honker_results SET created_at = 1 WHERE job_id = 1")
    s.call("SELECT honker_result_save(1, '42', -5)")  # upsert keeps created_at
    assert s.rows("SELECT value, created_at, expires_at FROM _honker_results WHERE job_id = 1") == [
        ("42", 1, None)
    ]
    with s.transaction() as q:
        q("UPDATE _honker_results SET expires_at = unixepoch() WHERE job_id = 2")
    assert s.call("SELECT honker_result_get(2)") is None  # expired reads as absent
    assert s.call("SELECT honker_result_sweep()") == 1
    assert s.call("SELECT honker_result_sweep()") == 0


# -- streams ---------------------------------------------------------------------------


def test_streams(s: Surface) -> None:
    publish = "SELECT honker_stream_publish(?, ?, ?)"
    o1 = s.call(publish, "orders", "k1", '{"n": 1}')
    o_other = s.call(publish, "audit", None, '"x"')
    o2 = s.call(publish, "orders", None, '{"n": 2}')
    assert o1 < o_other < o2  # one global offset sequence
    events = s.json("SELECT honker_stream_read_since('orders', 0, 100)")
    assert [e["offset"] for e in events] == [o1, o2]
    assert set(events[0]) == {"offset", "topic", "key", "payload", "created_at"}
    assert (events[0]["key"], events[1]["key"]) == ("k1", None)
    assert json.loads(events[1]["payload"]) == {"n": 2}
    assert [
        e["offset"] for e in s.json("SELECT honker_stream_read_since('orders', ?, 10)", o1)
    ] == [o2]
    assert len(s.json("SELECT honker_stream_read_since('orders', 0, 1)")) == 1
    assert len(s.json("SELECT honker_stream_read_since('orders', 0, -1)")) == 2
    assert s.json("SELECT honker_stream_read_since('none', 0, 10)") == []

    save = "SELECT honker_stream_save_offset(?, ?, ?)"
    assert s.call("SELECT honker_stream_get_offset('c', 'orders')") == 0
    assert s.call(save, "c", "orders", o1) == 1
    assert s.call(save, "c", "orders", o1) == 0
    assert s.call(save, "c", "orders", 0) == 0  # never rewinds
    assert s.call(save, "c", "orders", o2) == 1
    assert s.call("SELECT honker_stream_get_offset('c', 'orders')") == o2
    assert s.call("SELECT honker_stream_get_offset('c', 'audit')") == 0


# -- strictness ------------------------------------------------------------------------

# Signatures exactly as SQL_FUNCTIONS.md states them (t = TEXT, i = INTEGER, ? = or NULL),
# with one valid argument list each.
STRICT_CASES: list[tuple[str, str, list[Any]]] = [
    ("notify", "t t", ["c", "{}"]),
    ("honker_enqueue", "t t i? i? i i i?", ["q", "{}", None, None, 0, 3, None]),
    ("honker_claim_batch", "t t i i", ["q", "w", 1, 30]),
    ("honker_ack", "i t", [1, "w"]),
    ("honker_ack_batch", "t t", ["[1]", "w"]),
    ("honker_retry", "i t i t", [1, "w", 0, "e"]),
    ("honker_fail", "i t t", [1, "w", "e"]),
    ("honker_heartbeat", "i t i", [1, "w", 30]),
    ("honker_cancel", "i", [1]),
    ("honker_get_job", "i", [1]),
    ("honker_sweep_expired", "t", ["q"]),
    ("honker_queue_next_claim_at", "t", ["q"]),
    ("honker_lock_acquire", "t t i", ["l", "o", 60]),
    ("honker_lock_renew", "t t i", ["l", "o", 60]),
    ("honker_lock_release", "t t", ["l", "o"]),
    ("honker_rate_limit_try", "t i i", ["r", 100, 60]),
    ("honker_rate_limit_sweep", "i", [60]),
    ("honker_scheduler_register", "t t t t i i?", ["s", "q", "@every 5s", "{}", 0, None]),
    ("honker_scheduler_register", "t t t t i i? i", ["s", "q", "@every 5s", "{}", 0, None, 3]),
    ("honker_scheduler_unregister", "t", ["zz"]),
    ("honker_scheduler_tick", "i", [0]),
    ("honker_scheduler_pause", "t", ["s"]),
    ("honker_scheduler_resume", "t", ["s"]),
    ("honker_scheduler_update", "t t? t? i? i? i", ["s", None, None, None, None, 0]),
    (
        "honker_scheduler_update",
        "t t? t? i? i? i i? i",
        ["s", None, None, None, None, 0, None, 0],
    ),
    ("honker_cron_next_after", "t i", ["@every 5s", 0]),
    ("honker_result_save", "i t i", [1, "null", 0]),
    ("honker_result_get", "i", [1]),
    ("honker_stream_publish", "t t? t", ["t", None, "{}"]),
    ("honker_stream_read_since", "t i i", ["t", 0, 10]),
    ("honker_stream_save_offset", "t t i", ["c", "t", 1]),
    ("honker_stream_get_offset", "t t", ["c", "t"]),
]

WRONG = {
    "t": [5, 2.5, b"\x00", None],
    "i": ["5", 1.0, 2.5, b"\x00", None],
    "t?": [5, 2.5, b"\x00"],
    "i?": ["5", 1.0, b"\x00"],
}
SAMPLE = {"t": "x", "i": 1}


def test_argument_storage_classes_are_checked(s: Surface) -> None:
    problems = []
    for name, signature, valid in STRICT_CASES:
        kinds = signature.split()
        assert len(kinds) == len(valid)
        sql = f"SELECT {name}({', '.join('?' * len(kinds))})"
        try:
            s.call(sql, *valid)
        except Exception as exc:
            problems.append(f"{name}{tuple(valid)} should work: {exc}")
        for position, kind in enumerate(kinds):
            if kind.endswith("?"):  # NULL allowed here
                args = list(valid)
                args[position] = None
                try:
                    s.call(sql, *args)
                except Exception as exc:
                    problems.append(f"{name}: NULL allowed at {position + 1}: {exc}")
            for bad in WRONG[kind]:
                args = list(valid)
                args[position] = bad
                try:
                    s.call(sql, *args)
                except s.error:
                    continue
                problems.append(f"{name}: {bad!r} accepted at argument {position + 1} ({kind})")
    assert problems == []


def test_bad_argument_errors_say_what_is_wrong(s: Surface) -> None:
    message = s.fails(ENQ, "q", 5, None, None, 0, 3, None)
    assert "honker_enqueue(): argument 2 (payload) must be TEXT, got INTEGER" in detail(s, message)
    message = s.fails("SELECT honker_enqueue('q', '1', 1.0, NULL, 0, 3, NULL)")
    assert "argument 3 (run_at) must be INTEGER or NULL, got REAL" in detail(s, message)
    message = s.fails("SELECT honker_result_save(1, NULL, 0)")
    assert "honker_result_save(): argument 2 (value) must not be NULL" in detail(s, message)
    message = s.fails("SELECT honker_ack_batch('{oops', 'w')")
    assert "honker_ack_batch(): malformed JSON" in detail(s, message)
    message = s.fails("SELECT honker_scheduler_register('s', 'q', '@every', '{}', 0, NULL)")
    assert "honker_scheduler_register(): " in detail(s, message)
    if s.kind == "writer":  # honker's RuntimeError keeps SQLite's text and adds the reason
        assert message.startswith("user-defined function raised exception: honker_")
    else:  # sqlite3 itself only says this; honker keeps the reason for the thread
        assert message == "user-defined function raised exception"


# -- atomicity with the caller's transaction ---------------------------------------------


def _business_and_honker(q: Call) -> None:
    q("INSERT INTO orders (total) VALUES (9900)")
    q(ENQ, "emails", '{"order": 1}', None, None, 0, 3, None)
    q("SELECT notify('orders', '{}')")
    q("SELECT honker_stream_publish('orders', NULL, '{}')")
    q("SELECT honker_result_save(1, '1', 0)")
    q("SELECT honker_lock_acquire('l', 'me', 60)")
    q("SELECT honker_scheduler_register('s', 'q', '@every 5s', '{}', 0, NULL)")


COUNTS = (
    "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM _honker_live), "
    "(SELECT COUNT(*) FROM _honker_notifications), (SELECT COUNT(*) FROM _honker_stream), "
    "(SELECT COUNT(*) FROM _honker_results), (SELECT COUNT(*) FROM _honker_locks), "
    "(SELECT COUNT(*) FROM _honker_scheduler_tasks)"
)


def test_functions_roll_back_and_commit_with_the_callers_transaction(s: Surface) -> None:
    with s.transaction() as q:
        q("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")

    class Abort(Exception):
        pass

    with pytest.raises(Abort), s.transaction() as q:
        _business_and_honker(q)
        raise Abort
    assert s.rows(COUNTS) == [(0,) * 7]
    with s.transaction() as q:
        _business_and_honker(q)
    assert s.rows(COUNTS) == [(1,) * 7]


def test_legacy_isolation_mode_write_functions_open_the_implicit_transaction(
    db_path: str,
) -> None:
    """On a default-mode sqlite3 connection a write function behaves like an INSERT would:
    it opens the implicit transaction; commit() keeps it, rollback() drops it."""
    conn = sqlite3.connect(db_path)  # isolation_level "" (legacy implicit BEGIN)
    try:
        honker.attach(conn)
        assert not conn.in_transaction
        assert conn.execute("SELECT honker_cron_next_after('@every 5s', 0)").fetchone() == (5,)
        assert not conn.in_transaction  # pure functions write nothing
        conn.execute(ENQ, ("q", "1", None, None, 0, 3, None))
        assert conn.in_transaction
        conn.rollback()
        assert conn.execute("SELECT COUNT(*) FROM _honker_live").fetchone() == (0,)
        with conn:  # the usual "with connection:" commit
            conn.execute(ENQ, ("q", "1", None, None, 0, 3, None))
        assert not conn.in_transaction
    finally:
        conn.close()
    other = sqlite3.connect(db_path)
    assert other.execute("SELECT COUNT(*) FROM _honker_live").fetchone() == (1,)
    other.close()


# -- attach() --------------------------------------------------------------------------

SHARED_TABLES = {
    "_honker_live",
    "_honker_dead",
    "_honker_notifications",
    "_honker_locks",
    "_honker_rate_limits",
    "_honker_scheduler_tasks",
    "_honker_results",
    "_honker_stream",
    "_honker_stream_consumers",
}
EXTRA_TABLES = {
    "_honker_stats",
    "_honker_scheduler_tz",
    "_honker_workers",
    "_honker_job_trace",
    "_honker_unique",
    "_honker_paused",
    # jobs: cancel, progress, failed results, attempt history (i15-jobs)
    "_honker_job_cancel",
    "_honker_job_progress",
    "_honker_job_errors",
    "_honker_job_attempts",
    "_honker_stats_cancelled",
}


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows} - {"sqlite_sequence"}


def test_attach_bootstraps_a_fresh_file_in_its_own_transaction(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    honker.attach(conn)
    assert not conn.in_transaction
    assert _tables(conn) == SHARED_TABLES | EXTRA_TABLES
    other = sqlite3.connect(db_path)
    assert _tables(other) == SHARED_TABLES | EXTRA_TABLES  # committed
    other.close()
    honker.attach(conn)  # idempotent
    conn.close()


def test_attach_without_bootstrap_writes_nothing(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    honker.attach(conn, bootstrap=False)
    assert _tables(conn) == set()
    assert conn.execute("SELECT honker_cron_next_after('@every 5s', 0)").fetchone() == (5,)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute(ENQ, ("q", "1", None, None, 0, 3, None))
    assert "no such table" in str(honker._sqlfunctions.last_error())
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("SELECT honker_bootstrap()")
    conn.execute("COMMIT")
    assert _tables(conn) == SHARED_TABLES | EXTRA_TABLES
    conn.close()


def test_attach_inside_a_transaction_joins_it(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO orders DEFAULT VALUES")
    honker.attach(conn)
    assert conn.in_transaction  # still the caller's transaction, nothing committed
    conn.execute(ENQ, ("q", "1", None, None, 0, 3, None))
    peek = sqlite3.connect(db_path)
    assert _tables(peek) == {"orders"}  # not visible to others before the commit
    conn.execute("ROLLBACK")
    assert _tables(conn) == {"orders"}  # rolled back with the caller's work
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)

    conn.execute("BEGIN")
    conn.execute("INSERT INTO orders DEFAULT VALUES")
    honker.attach(conn)
    conn.execute(ENQ, ("q", "1", None, None, 0, 3, None))
    conn.execute("COMMIT")
    assert _tables(peek) == {"orders"} | SHARED_TABLES | EXTRA_TABLES
    assert peek.execute("SELECT COUNT(*) FROM _honker_live").fetchone() == (1,)
    peek.close()
    conn.close()


def test_attach_on_a_complete_schema_takes_no_write_lock(db_path: str) -> None:
    honker.open(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("SELECT COUNT(*) FROM _honker_live").fetchall()
    honker.attach(conn)
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # would fail with "database is locked" otherwise
    other.execute("ROLLBACK")
    other.close()
    conn.execute("COMMIT")
    conn.close()


def test_attach_failure_inside_a_transaction_leaves_it_intact(db_path: str) -> None:
    setup = sqlite3.connect(db_path)
    setup.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    setup.execute("INSERT INTO orders DEFAULT VALUES")
    setup.commit()
    setup.close()
    ro = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    ro.execute("BEGIN")
    assert ro.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        honker.attach(ro)
    assert ro.in_transaction
    assert ro.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    ro.execute("COMMIT")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        honker.attach(ro)  # outside a transaction: its own, rolled back
    assert not ro.in_transaction
    ro.close()


def test_attach_rejects_non_connections() -> None:
    with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
        honker.attach(object())  # type: ignore[arg-type]


def test_attach_is_not_in_all() -> None:
    assert "attach" not in honker.__all__
    assert honker.attach is honker._sqlfunctions.attach


# -- a worker process wakes on a commit made through an attached connection -------------


def test_worker_process_wakes_on_attached_commit(
    db: honker.Database, db_path: str, children: list[Child]
) -> None:
    worker = Child(CLAIM_ONE_WORKER, db_path, "emails")
    children.append(worker)
    worker.expect("READY")
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    honker.attach(conn)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO orders (total) VALUES (1)")
    conn.execute(ENQ, ("emails", json.dumps({"order": "rolled back"}), None, None, 0, 3, None))
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO orders (total) VALUES (2)")
    conn.execute(ENQ, ("emails", json.dumps({"order": "committed"}), None, None, 0, 3, None))
    conn.execute("COMMIT")
    assert json.loads(worker.readline(timeout=30)) == {"order": "committed"}
    assert worker.wait() == 0
    assert conn.execute("SELECT total FROM orders").fetchall() == [(2,)]
    conn.close()


def test_attached_connection_with_its_own_row_and_text_factories(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = lambda cur, row: dict(zip([d[0] for d in cur.description], row, strict=True))
    conn.text_factory = bytes
    honker.attach(conn)
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(f"{ENQ} AS id", ("q", '{"a": 1}', None, None, 0, 3, None)).fetchone()
    job_id = row["id"]
    claimed = conn.execute("SELECT honker_claim_batch('q', 'w', 1, 60) AS j").fetchone()["j"]
    got = conn.execute("SELECT honker_get_job(?) AS j", (job_id,)).fetchone()["j"]
    conn.execute("COMMIT")
    assert isinstance(claimed, bytes)  # the application's factories still apply to its rows
    assert json.loads(claimed)[0]["payload"] == '{"a": 1}'
    assert json.loads(got)["state"] == "processing"
    conn.close()
