"""Ephemeral pub/sub: ``tx.notify(channel, payload)`` and ``db.listen(channel)``.

A notification is a row in ``_honker_notifications`` written inside the caller's
transaction, so it is delivered only if that transaction commits. A listener attaches at the
channel's current ``MAX(id)`` (history is never replayed), then after every wake reads the
rows with a higher id, in id order. Ids are allocated under SQLite's single writer lock, so
id order is commit order and a committed row can never appear "behind" one already read.
"""

from __future__ import annotations

import json
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._errors import DatabaseClosed
from ._json import LazyPayload
from ._validate import check_str

if TYPE_CHECKING:
    from ._database import Database

_BATCH = 1000


class Notification(LazyPayload):
    """One delivered notification: ``id``, ``channel``, ``created_at`` and a lazy ``payload``."""

    __slots__ = ("channel", "created_at", "id")

    def __init__(self, row: dict[str, Any]) -> None:
        self.id: int = int(row["id"])
        self.channel: str = row["channel"]
        self.created_at: int = int(row.get("created_at") or 0)
        self._raw: Any = row.get("payload")
        self._decoded = False
        self._payload: Any = None

    def _decode(self, raw: str | None) -> Any:
        """Lenient: empty or ``null`` → ``None``; text that is not JSON stays a string."""
        if raw is None or raw == "" or raw == "null":
            return None
        try:
            return json.loads(raw)
        except (ValueError, TypeError):
            return raw

    def __repr__(self) -> str:
        return f"Notification(id={self.id}, channel={self.channel!r})"


class Listener:
    """Async iterator of notifications on one channel (returned by ``db.listen``).

    Subscribes to database updates first, then snapshots the channel's ``MAX(id)``, so a
    notification committed in between is delivered rather than lost. ``fallback_poll_s``
    re-reads the table even without a wake (``None`` waits for wakes only).
    """

    def __init__(self, db: Database, channel: str, fallback_poll_s: float | None = 15.0) -> None:
        check_str(channel, "channel")
        self.db = db
        self.channel = channel
        self.fallback_poll_s = fallback_poll_s
        self._engine = db.engine
        self._sub = self._engine.subscribe()
        weakref.finalize(self, self._sub.close)
        # Taken here, synchronously, so that a notification committed after listen()
        # returns is always delivered (one indexed read on a reader: it never waits for
        # the writer).
        self._last = self._engine.read(self._engine.ops.notifications_max_id, channel)
        self._buffer: deque[Notification] = deque()

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Notification:
        buffer = self._buffer
        while not buffer:
            try:
                engine = self._engine
                rows = await engine.aread(
                    engine.ops.notifications_since, self.channel, self._last, _BATCH
                )
            except DatabaseClosed:
                raise StopAsyncIteration from None
            if rows:
                for row_id, channel, payload, created_at in rows:
                    buffer.append(
                        Notification(
                            {
                                "id": row_id,
                                "channel": channel,
                                "payload": payload,
                                "created_at": created_at,
                            }
                        )
                    )
                self._last = rows[-1][0]
                break
            try:
                await self._sub.wait(self.fallback_poll_s)
            except DatabaseClosed:
                raise StopAsyncIteration from None
        return buffer.popleft()

    def close(self) -> None:
        """Stop listening and release the subscription."""
        self._sub.close()

    def __repr__(self) -> str:
        return f"Listener(channel={self.channel!r}, last_id={self._last})"
