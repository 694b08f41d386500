"""Durable streams: an append-only event log with per-consumer offsets.

``publish`` appends a row to ``_honker_stream`` (inside the caller's transaction when
``tx=`` is given). Offsets are global and allocated under SQLite's single writer lock, so
commit order is offset order: a subscriber that reads ``offset > last_seen`` after every
wake can never skip an event, and the hand-over from replaying history to following live
commits needs no special case. Named consumers persist their position in
``_honker_stream_consumers`` (monotonic: it never moves backwards), so a restarted consumer
resumes after its last saved offset — delivery is at-least-once.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._errors import DatabaseClosed
from ._json import LazyPayload, dumps
from ._validate import check_str

if TYPE_CHECKING:
    from ._database import Database, Transaction

REPLAY_BATCH = 1000
FALLBACK_WAIT_S = 15.0


class Event(LazyPayload):
    """One stream event: ``offset``, ``topic``, ``key``, ``created_at`` and a lazy ``payload``."""

    __slots__ = ("created_at", "key", "offset", "topic")

    def __init__(self, row: dict[str, Any]) -> None:
        self.offset: int = int(row["offset"])
        self.topic: str = row["topic"]
        self.key: str | None = row.get("key")
        self.created_at: int = int(row.get("created_at") or 0)
        self._raw: str | None = row.get("payload")
        self._decoded = False
        self._payload: Any = None

    def __repr__(self) -> str:
        return (
            f"Event(offset={self.offset}, topic={self.topic!r}, key={self.key!r}, "
            f"payload={self.payload!r})"
        )


def _events(topic: str, rows: list[tuple[Any, ...]]) -> list[Event]:
    """Events from ``(offset, key, payload, created_at)`` rows of one topic (hot loop)."""
    new = object.__new__
    out = []
    for offset, key, raw, created_at in rows:
        event = new(Event)
        event.offset = offset
        event.topic = topic
        event.key = key
        event._raw = raw
        event.created_at = created_at
        event._decoded = False
        out.append(event)
    return out


class Stream:
    """A named durable stream (obtain with ``db.stream(name)``)."""

    def __init__(self, db: Database, name: str) -> None:
        check_str(name, "stream name")
        self.db = db
        self.name = name
        self._engine = db.engine

    def publish(self, payload: Any, key: str | None = None, tx: Transaction | None = None) -> None:
        """Append one event (atomic with ``tx`` when given)."""
        check_str(key, "stream key", optional=True)
        engine = self._engine
        engine.in_tx(tx, engine.ops.stream_publish, self.name, key, dumps(payload))

    def save_offset(self, consumer: str, offset: int, tx: Transaction | None = None) -> None:
        """Record that ``consumer`` processed everything up to ``offset`` (never moves back)."""
        check_str(consumer, "consumer")
        engine = self._engine
        engine.in_tx(tx, engine.ops.stream_save_offset, consumer, self.name, int(offset))

    def get_offset(self, consumer: str) -> int:
        """The consumer's saved offset, 0 if it never saved one."""
        check_str(consumer, "consumer")
        return int(self._engine.read(self._engine.ops.stream_get_offset, consumer, self.name))

    def _read_since(self, offset: int, limit: int = REPLAY_BATCH) -> list[dict[str, Any]]:
        ops = self._engine.ops
        rows = self._engine.read(ops.stream_read_since, self.name, int(offset), int(limit))
        return [dict(zip(ops.STREAM_COLUMNS, r, strict=True)) for r in rows]

    def subscribe(
        self,
        consumer: str | None = None,
        from_offset: int | None = None,
        save_every_n: int = 1000,
        save_every_s: float = 1.0,
    ) -> StreamSubscription:
        """Async iterator over events: replays from the saved offset, then follows commits.

        Start after ``from_offset`` if given, else after ``consumer``'s saved offset, else
        from the beginning. With a ``consumer``, the offset of the last event handed out is
        saved at most every ``save_every_n`` events or ``save_every_s`` seconds (checked
        when the next event is about to be yielded); set both to 0 to save yourself with
        :meth:`save_offset`.
        """
        return StreamSubscription(self, consumer, from_offset, save_every_n, save_every_s)

    def __repr__(self) -> str:
        return f"Stream({self.name!r})"


class StreamSubscription:
    """Async iterator returned by ``Stream.subscribe()``."""

    def __init__(
        self,
        stream: Stream,
        consumer: str | None,
        from_offset: int | None,
        save_every_n: int,
        save_every_s: float,
    ) -> None:
        check_str(consumer, "consumer", optional=True)
        self.stream = stream
        self.consumer = consumer
        self._sub = stream._engine.subscribe()
        self._finalizer = weakref.finalize(self, self._sub.close)
        # A consumer's saved offset is read on the first step (on the I/O threads).
        self._read_pos: int | None = None
        if from_offset is not None:
            self._read_pos = int(from_offset)
        elif consumer is None:
            self._read_pos = 0
        self._buffer: deque[Event] = deque()
        self._save_n = max(0, int(save_every_n))
        self._save_s = max(0.0, float(save_every_s))
        self._last_yielded: int | None = None
        self._since_save = 0
        self._saved_at = time.monotonic()

    @property
    def position(self) -> int | None:
        """Offset of the last event handed out (``None`` before the first)."""
        return self._last_yielded

    def __aiter__(self) -> StreamSubscription:
        return self

    async def __anext__(self) -> Event:
        buffer = self._buffer
        stream = self.stream
        engine = stream._engine
        try:
            if self._read_pos is None:
                assert self.consumer is not None
                self._read_pos = await engine.aread(
                    engine.ops.stream_get_offset, self.consumer, stream.name
                )
            while not buffer:
                rows = await engine.aread(
                    engine.ops.stream_read_events, stream.name, self._read_pos, REPLAY_BATCH
                )
                if rows:
                    buffer.extend(_events(stream.name, rows))
                    self._read_pos = rows[-1][0]
                    break
                await self._sub.wait(FALLBACK_WAIT_S)
        except DatabaseClosed:
            self.close()
            raise StopAsyncIteration from None
        since = self._since_save
        if since and self.consumer is not None:
            # Save the offset of the event handed out last (the caller is done with it)
            # when N events or S seconds have passed since the last save.
            save_n = self._save_n
            if (save_n and since >= save_n) or (
                self._save_s and time.monotonic() - self._saved_at >= self._save_s
            ):
                await self._aflush()
        event = buffer.popleft()
        self._last_yielded = event.offset
        self._since_save += 1
        return event

    async def _aflush(self) -> None:
        if self.consumer is None or self._last_yielded is None:
            return
        engine = self.stream._engine
        await engine.awrite(
            engine.ops.stream_save_offset, self.consumer, self.stream.name, self._last_yielded
        )
        self._since_save = 0
        self._saved_at = time.monotonic()

    def flush(self) -> None:
        """Save the offset of the last event handed out now (no-op without a consumer)."""
        if self.consumer is None or self._last_yielded is None:
            return
        self.stream.save_offset(self.consumer, self._last_yielded)
        self._since_save = 0
        self._saved_at = time.monotonic()

    def close(self) -> None:
        """Release the update subscription."""
        self._finalizer()
