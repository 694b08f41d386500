"""Named advisory locks and fixed-window rate limits, stored in the database file.

Locks are rows in ``_honker_locks`` with an owner token and an expiry: a crashed holder
blocks others for at most ``ttl`` seconds, and only the owner can renew or release. They
serialize work across processes on one host (SQLite's locking is single-host).
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import TYPE_CHECKING

from ._errors import InvalidArgument, LockHeld
from ._validate import check_str

if TYPE_CHECKING:
    from ._engine import Engine


class _Lock:
    """Context manager for one named lock (returned, un-acquired, by ``db.lock()``)."""

    def __init__(self, engine: Engine, name: str, ttl: int = 60, owner: str | None = None) -> None:
        check_str(name, "lock name")
        check_str(owner, "lock owner", optional=True)
        self._engine = engine
        self.name = name
        self.ttl = int(ttl)
        self.owner: str = owner if owner is not None else uuid.uuid4().hex
        self.acquired = False

    def acquire(self) -> bool:
        """Try to take the lock; ``True`` if this owner now holds it (no exception)."""
        self.acquired = self._engine.write(
            self._engine.ops.lock_acquire, self.name, self.owner, self.ttl
        )
        return self.acquired

    def __enter__(self) -> _Lock:
        if not self.acquire():
            raise LockHeld(f"lock {self.name!r} is already held")
        return self

    def renew(self, ttl: int | None = None) -> bool:
        """Push the expiry to now + ``ttl``; ``True`` iff this owner still holds the lock."""
        if not self.acquired:
            return False
        ttl_s = int(ttl) if ttl is not None else self.ttl
        if ttl_s <= 0:
            raise InvalidArgument(f"lock ttl must be positive, got {ttl_s}")
        return bool(self._engine.write(self._engine.ops.lock_renew, self.name, self.owner, ttl_s))

    def release(self) -> bool:
        """Release the lock if this owner holds it."""
        if not self.acquired:
            return False
        self.acquired = False
        return bool(self._engine.write(self._engine.ops.lock_release, self.name, self.owner))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"_Lock(name={self.name!r}, owner={self.owner!r}, acquired={self.acquired})"


def try_rate_limit(engine: Engine, name: str, limit: int, per: int) -> bool:
    """Count one call against ``limit`` per ``per``-second fixed window; ``False`` when full."""
    check_str(name, "rate limit name")
    limit, per = int(limit), int(per)
    if limit <= 0 or per <= 0:
        raise ValueError("limit and per must be positive")
    return bool(engine.write(engine.ops.rate_limit_try, name, limit, per))


def sweep_rate_limits(engine: Engine, older_than_s: int = 3600) -> int:
    """Delete windows that started more than ``older_than_s`` seconds ago."""
    return int(engine.write(engine.ops.rate_limit_sweep, int(older_than_s)))
