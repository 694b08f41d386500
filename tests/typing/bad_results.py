"""Results a type checker must reject: ``TaskResult[T].get()`` is ``T``, not ``Any``.
Each ``# E: code`` line must get exactly those mypy error codes (tests/test_typing.py)."""

from __future__ import annotations

import asyncio

import honker


async def misuse(db: honker.Database) -> None:
    q = db.queue("typing")

    @q.task(name="bad.count")
    def count(text: str) -> int:
        return len(text)

    @q.task(name="bad.acount")
    async def acount(text: str) -> int:
        return len(text)

    missing = count("abc").get().nonexistent  # E: attr-defined
    as_text: str = count("abc").get()  # E: assignment
    acount("abc").get().upper()  # E: attr-defined
    awaited: str = await acount("abc").aget()  # E: assignment
    asyncio.run(count.call_local("abc"))  # E: arg-type
    total: int = acount.call_local("abc")  # E: assignment
    also_missing = count("abc").nonexistent  # E: attr-defined
    print(as_text, awaited, total, missing, also_missing)
