"""SQLAlchemy 2 recipe (docs/orm.md): a ``connect`` event attaches honker to every pooled
connection, jobs are enqueued through the session's own connection, so ``session.commit()``
commits the order and the job together and ``rollback()`` drops both; a worker process wakes
on the commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import honker
from helpers import CLAIM_ONE_WORKER, Child

sa = pytest.importorskip("sqlalchemy")
orm = pytest.importorskip("sqlalchemy.orm")

from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]


# -- the recipe, as in docs/orm.md ------------------------------------------------------


def make_engine(path: str, immediate: bool) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    if immediate:
        # Optional variant: SQLAlchemy emits BEGIN IMMEDIATE itself, so a write transaction
        # never has to upgrade a read lock while workers commit (no SQLITE_BUSY surprises).
        @event.listens_for(engine, "connect")
        def _attach_immediate(dbapi_connection: Any, connection_record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            honker.attach(dbapi_connection)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    else:

        @event.listens_for(engine, "connect")
        def _attach(dbapi_connection: Any, connection_record: Any) -> None:
            honker.attach(dbapi_connection)

    return engine


ENQUEUE = text(
    "SELECT honker_enqueue(:queue, :payload, NULL, :delay, :priority, :max_attempts, NULL)"
)


def enqueue(
    session: Session,
    queue: str,
    payload: Any,
    *,
    delay: int | None = None,
    priority: int = 0,
    max_attempts: int = 3,
) -> int:
    """Enqueue a job in the session's transaction; returns the job id."""
    params = {
        "queue": queue,
        "payload": json.dumps(payload),
        "delay": delay,
        "priority": priority,
        "max_attempts": max_attempts,
    }
    job_id: int = session.execute(ENQUEUE, params).scalar_one()
    return job_id


# -- tests -----------------------------------------------------------------------------


@pytest.fixture(params=["default", "immediate"])
def engine(request: pytest.FixtureRequest, db_path: str) -> Iterator[Engine]:
    eng = make_engine(db_path, immediate=request.param == "immediate")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def _state(db_path: str) -> tuple[list[int], list[Any]]:
    db = honker.open(db_path)
    try:
        totals = [r["total"] for r in db.query("SELECT total FROM orders ORDER BY id")]
        payloads = [json.loads(r["payload"]) for r in db.query("SELECT payload FROM _honker_live")]
        return totals, payloads
    finally:
        db.close()


def test_commit_and_rollback_cover_order_and_job(engine: Engine, db_path: str) -> None:
    with Session(engine) as session:
        order = Order(total=100)
        session.add(order)
        session.flush()
        enqueue(session, "emails", {"order_id": order.id, "n": "rolled back"})
        session.execute(text("SELECT notify('orders', '{}')"))
        session.rollback()
    assert _state(db_path) == ([], [])

    with Session(engine) as session:
        # the job first: the enqueue alone opens the transaction (no earlier ORM write)
        job_id = enqueue(session, "emails", {"n": "committed"}, priority=5)
        session.add(Order(total=200))
        session.commit()
    assert _state(db_path) == ([200], [{"n": "committed"}])
    db = honker.open(db_path)
    job = db.queue("emails").claim_one("w")
    assert job is not None and job.id == job_id and job.payload == {"n": "committed"}
    assert job.ack()
    db.close()


def test_session_exception_rolls_back_both(engine: Engine, db_path: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), Session(engine) as session, session.begin():
        session.add(Order(total=1))
        enqueue(session, "emails", {"n": 1})
        raise Boom
    with Session(engine) as session, session.begin():  # commits on exit
        session.add(Order(total=2))
        enqueue(session, "emails", {"n": 2})
    assert _state(db_path) == ([2], [{"n": 2}])


def test_other_functions_through_the_session(engine: Engine) -> None:
    with Session(engine) as session:
        assert session.execute(text("SELECT honker_lock_acquire('nightly', 'me', 60)")).scalar()
        offset = session.execute(
            text("SELECT honker_stream_publish('orders', NULL, :p)"), {"p": json.dumps({"a": 1})}
        ).scalar_one()
        events = json.loads(
            session.execute(text("SELECT honker_stream_read_since('orders', 0, 10)")).scalar_one()
        )
        session.commit()
    assert [e["offset"] for e in events] == [offset]
    assert json.loads(events[0]["payload"]) == {"a": 1}


def test_worker_process_wakes_on_session_commit(
    engine: Engine, db_path: str, children: list[Child]
) -> None:
    honker.open(db_path).close()  # the worker's file: honker schema + WAL
    worker = Child(CLAIM_ONE_WORKER, db_path, "emails")
    children.append(worker)
    worker.expect("READY")
    with Session(engine) as session:
        session.add(Order(total=1))
        enqueue(session, "emails", {"order": "rolled back"})
        session.rollback()
        session.add(Order(total=2))
        enqueue(session, "emails", {"order": "committed"})
        session.commit()
    assert json.loads(worker.readline(timeout=30)) == {"order": "committed"}
    assert worker.wait() == 0
    assert _state(db_path) == ([2], [])
