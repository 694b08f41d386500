"""Integers SQLite cannot store are refused by honker's API with an error naming them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import honker
from honker._validate import INT64_MAX, INT64_MIN, check_int64

TOO_BIG = [99999999999999999999999, 2**63, -(2**63) - 1]


def snapshot(db: honker.Database) -> list[Any]:
    return [
        db.query("SELECT * FROM _honker_live ORDER BY id"),
        db.query("SELECT * FROM _honker_dead ORDER BY id"),
        db.query("SELECT * FROM _honker_results ORDER BY job_id"),
    ]


def test_check_int64_bounds_and_types() -> None:
    assert check_int64(INT64_MAX, "n") == INT64_MAX
    assert check_int64(INT64_MIN, "n") == INT64_MIN
    assert check_int64("42", "n") == 42  # what int() accepted before still works
    with pytest.raises(ValueError, match=r"^n must fit in a signed 64-bit integer, got 9223"):
        check_int64(INT64_MAX + 1, "n")
    with pytest.raises(ValueError, match="got -9223372036854775809"):
        check_int64(INT64_MIN - 1, "n")
    with pytest.raises(ValueError, match="job_id must fit"):
        check_int64("99999999999999999999999", "job_id")
    with pytest.raises(ValueError, match="finite"):
        check_int64(float("inf"), "n")
    with pytest.raises(TypeError, match="n must be an int, not bool"):
        check_int64(True, "n")
    with pytest.raises(TypeError, match="n must be an int, not str"):
        check_int64("abc", "n")
    with pytest.raises(TypeError, match="n must be an int, not NoneType"):
        check_int64(None, "n")


CALLS: dict[str, Callable[[honker.Queue, Any], Any]] = {
    "get_job": lambda q, i: q.get_job(i),
    "find_job": lambda q, i: q.find_job(i),
    "cancel": lambda q, i: q.cancel(i),
    "cancel_pending_only": lambda q, i: q.cancel(i, pending_only=True),
    "ack": lambda q, i: q.ack(i, "w"),
    "ack_batch": lambda q, i: q.ack_batch([1, i], "w"),
    "retry": lambda q, i: q.retry(i, "w", 5, "boom"),
    "fail": lambda q, i: q.fail(i, "w", "boom"),
    "heartbeat": lambda q, i: q.heartbeat(i, "w"),
    "release": lambda q, i: q.release(i, "w"),
    "retry_dead": lambda q, i: q.retry_dead(i),
    "discard_dead": lambda q, i: q.discard_dead(i),
    "save_result": lambda q, i: q.save_result(i, "value"),
    "get_result": lambda q, i: q.get_result(i),
}


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_job_id_is_range_checked(db: honker.Database, call: str, value: int) -> None:
    q = db.queue("q")
    q.enqueue({"n": 1})
    held = q.claim_one("w")
    assert held is not None
    q.enqueue({"n": 2})
    before = snapshot(db)
    message = rf"job_id(s\[1\])? must fit in a signed 64-bit integer, got {value}$"
    with pytest.raises(ValueError, match=message):
        CALLS[call](q, value)
    assert snapshot(db) == before


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_bool_is_not_a_job_id(db: honker.Database, call: str) -> None:
    q = db.queue("q")
    job_id = q.enqueue({"n": 1})
    assert job_id == 1  # so True would have meant this job
    before = snapshot(db)
    with pytest.raises(TypeError, match="must be an int, not bool"):
        CALLS[call](q, True)
    assert snapshot(db) == before


async def test_wait_result_checks_its_id(db: honker.Database) -> None:
    q = db.queue("q")
    with pytest.raises(ValueError, match="job_id must fit"):
        await q.wait_result(2**63, timeout=1)


def test_largest_id_is_fine(db: honker.Database) -> None:
    q = db.queue("q")
    assert q.get_job(INT64_MAX) is None
    assert q.find_job(INT64_MIN) is None
    assert q.cancel(INT64_MAX) is False
    assert q.retry_dead(INT64_MAX) == 0


@pytest.mark.parametrize("value", TOO_BIG)
def test_sql_params_out_of_range_name_their_index(db: honker.Database, value: int) -> None:
    db.query("CREATE TABLE t (v INTEGER)")
    message = rf"SQL parameter 1 must fit in a signed 64-bit integer, got {value}"
    with pytest.raises(ValueError, match=message):
        db.query("SELECT ?, ?", [1, value])
    with pytest.raises(ValueError, match=message), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (?)", [5])
        tx.execute("INSERT INTO t VALUES (?), (?)", (7, value))
    with pytest.raises(ValueError, match=message), db.transaction() as tx:
        tx.query("SELECT ?, ?", iter([0, value]))
    assert db.query("SELECT * FROM t") == []  # the failed transaction wrote nothing
    assert db.query("SELECT ? AS a, ? AS b, ? AS c", [INT64_MAX, INT64_MIN, True]) == [
        {"a": INT64_MAX, "b": INT64_MIN, "c": 1}
    ]
