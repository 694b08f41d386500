"""Calls a type checker must reject: wrong arguments to a task. Each ``# E: code`` line
must get exactly those mypy error codes (tests/test_typing.py); no other line may get one."""

from __future__ import annotations

import honker


def misuse(db: honker.Database) -> None:
    q = db.queue("typing")

    @q.task(name="bad.send")
    def send(to: str, n: int = 1) -> str:
        return to * n

    @q.task
    async def shout(word: str, *, times: int) -> str:
        return word.upper() * times

    @db.periodic_task("0 * * * *", queue="typing", name="bad.tick")
    def tick() -> int:
        return 1

    send(42)  # E: arg-type
    send("a", "b")  # E: arg-type
    send("a", 1, 2)  # E: call-arg
    send(to="a", bogus=1)  # E: call-arg
    send()  # E: call-arg
    shout("hi")  # E: call-arg
    shout("hi", 3)  # E: call-arg
    send.call_local(b"bytes")  # E: arg-type
    shout.call_local(word=1, times=2).close()  # E: arg-type
    tick(1)  # E: call-arg
    tick().get().upper()  # E: attr-defined
