"""Typed-task usages that ``mypy --strict`` must accept (checked by tests/test_typing.py).

Every ``assert_type`` states what a caller's type checker sees. ``exercise`` also runs for
real in tests/test_typing.py, so each line here is valid at runtime too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypedDict, assert_type

import honker
from honker.tasks import AsyncTask, Task, TaskResult, TaskSpec


class Receipt(TypedDict):
    """A JSON-shaped result: what a worker stores is what ``get()`` gives back."""

    to: str
    n: int


def exercise(db: honker.Database) -> dict[str, TaskResult[Any]]:
    """Define tasks every supported way, call them, and return the handles by name."""
    q = db.queue("typing")

    @q.task(name="typing.send", retries=2, retry_delay_s=1.5, store_result=True)
    def send(to: str, n: int = 1) -> Receipt:
        return {"to": to, "n": n}

    @q.task
    def bare(x: int) -> str:
        return f"bare {x}"

    @db.task("typing", name="typing.via_db", priority=3)
    async def via_db(word: str, *, times: int) -> list[str]:
        await asyncio.sleep(0)
        return [word] * times

    @q.periodic_task("0 * * * *", name="typing.tick", scheduler_name="typing-tick")
    def tick() -> int:
        return 1

    @db.periodic_task(honker.every_s(60), queue="typing", name="typing.atick")
    async def atick() -> None:
        await asyncio.sleep(0)

    # Calling a task enqueues it: the arguments are checked, the result type is kept.
    r_send = send("alice@example.com", n=2)
    assert_type(r_send, TaskResult[Receipt])
    assert_type(send("bob@example.com"), TaskResult[Receipt])
    assert_type(bare(3), TaskResult[str])
    r_db = via_db("hi", times=2)
    assert_type(r_db, TaskResult[list[str]])  # async def: the awaited type, not a coroutine
    assert_type(tick(), TaskResult[int])
    assert_type(atick(), TaskResult[None])

    assert_type(r_send.id, int)

    # apply_async: options typed; its args/kwargs are plain values (see its docstring).
    with db.transaction() as tx:
        r_tx = send.apply_async(("carol@example.com",), {"n": 3}, tx=tx)
    assert_type(r_tx, TaskResult[Receipt])
    r_later = bare.apply_async([5], delay=30, priority=9)
    assert_type(send.apply_async(kwargs={"to": "d"}, run_at=0.0), TaskResult[Receipt])

    # call_local runs the function here: its own return type (a coroutine for async def).
    assert_type(send.call_local("eve", 4), Receipt)
    assert_type(bare.call_local(x=1), str)
    coro = assert_type(via_db.call_local("yo", times=1), Coroutine[Any, Any, list[str]])
    assert_type(asyncio.run(coro), list[str])

    # Attributes and the public aliases.
    assert_type(send.name, str)
    assert_type(send.spec, TaskSpec)
    as_task: Task[[str, int], Receipt] = send

    @q.task(name="typing.one_word")
    async def one_word(word: str) -> list[str]:
        return [word]

    as_async: AsyncTask[[str], list[str]] = one_word
    assert_type(as_task("x", 1), TaskResult[Receipt])
    unawaited = assert_type(as_async.call_local("w"), Coroutine[Any, Any, list[str]])
    unawaited.close()

    # TaskResult is covariant, and one built by hand is TaskResult[Any].
    widened: TaskResult[object] = r_send
    by_hand = TaskResult(db, q, r_send.id)
    assert_type(by_hand, TaskResult[Any])
    typed_by_hand: TaskResult[Receipt] = TaskResult(db, q, r_send.id)

    return {
        "send": r_send,
        "db": r_db,
        "tx": r_tx,
        "later": r_later,
        "widened": widened,
        "typed_by_hand": typed_by_hand,
    }


def results_are_typed(r: TaskResult[Receipt], words: TaskResult[list[str]]) -> None:
    """Type-checked, not run (``get()`` waits for a worker): what the handles give back."""
    assert_type(r.get(timeout=1), Receipt)
    assert_type(r.get()["to"], str)
    assert_type(words.get(), list[str])
    waiting = assert_type(r.aget(), Coroutine[Any, Any, Receipt])
    waiting.close()


async def results_are_awaitable(r: TaskResult[Receipt]) -> int:
    """``await aget()`` is the task's result type."""
    got = await r.aget(timeout=5)
    assert_type(got, Receipt)
    return got["n"]


def explicit_parameters(db: honker.Database) -> None:
    """``TaskResult[T](...)`` keeps ``T``; a bare ``TaskResult(...)`` is ``TaskResult[Any]``."""
    q = db.queue("typing")
    assert_type(TaskResult[int](db, q, 1).get(), int)
    assert_type(TaskResult(db, q, 1).get(), Any)
