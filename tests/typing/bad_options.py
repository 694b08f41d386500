"""Decorator options and ``apply_async`` calls a type checker must reject. Each
``# E: code`` line must get exactly those mypy error codes (tests/test_typing.py)."""

from __future__ import annotations

import honker


def misuse(db: honker.Database) -> None:
    q = db.queue("typing")

    @q.task(retries="3")  # E: call-overload untyped-decorator
    def a() -> None: ...

    @q.task(bogus=1)  # E: call-overload untyped-decorator
    def b() -> None: ...

    @db.task("typing", priority="high")  # E: arg-type
    def c() -> None: ...

    @q.periodic_task(60)  # E: arg-type
    def d() -> None: ...

    @db.periodic_task("0 * * * *", queue="typing", retries=2)  # E: call-arg
    def e() -> None: ...

    @q.task(name=7)  # E: call-overload untyped-decorator
    def f() -> None: ...

    @q.task(name="bad.ok")
    def ok(x: int) -> int:
        return x

    ok.apply_async("abc")  # E: arg-type
    ok.apply_async((1,), delay="soon")  # E: arg-type
    ok.apply_async((1,), {1: 2})  # E: dict-item
    ok.apply_async((1,), tx=object())  # E: arg-type
