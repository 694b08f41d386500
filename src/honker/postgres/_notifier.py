"""Wake subscribers of a PostgreSQL database: LISTEN on one connection per Database.

Every write that can make new work visible (enqueue, publish, notify, schedule changes,
retries: every write not marked ``quiet``) runs ``SELECT pg_notify(<channel>, '')`` in its
own transaction. The server delivers that only when the transaction commits, never for
rolled-back work, and collapses repeats within one transaction. The notifier thread waits
on its LISTEN connection and fans each delivery out to every subscriber through the same
:class:`honker._watcher.Subscription` machinery the SQLite watcher uses (subscribe,
coalescing one-slot buffers, unsubscribe, idle exit, close), so queues, streams, listeners
and the scheduler wait on PostgreSQL exactly as they wait on SQLite.

A wake carries no data: consumers re-read after each. So missing a wake is the only
failure that matters, and it is bounded three ways:

* the LISTEN is in place before ``subscribe()`` returns, so before the subscriber's
  first snapshot of whatever it watches;
* when the connection breaks (server restart, network), the thread reconnects with
  backoff and then wakes every subscriber: anything committed meanwhile is re-read;
* a safety wake every ``safety_s`` seconds (default 2) bounds any other loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from .._watcher import IDLE_EXIT_S, UpdateWatcher
from ._schema import quote_ident

log = logging.getLogger("honker.postgres")

SAFETY_WAKE_S = 2.0
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a honker schema (at most 63 bytes, an identifier's limit)."""
    name = f"honker:{schema}"
    if len(name.encode()) > 63:
        name = "honker:" + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return name


def _no_sqlite() -> Any:
    raise RuntimeError("the PostgreSQL notifier opens no SQLite connection")


class Notifier(UpdateWatcher):
    """LISTEN-driven wakes for one Database, on the SQLite watcher's subscriber machinery.

    ``connect`` opens a new autocommit psycopg connection. The thread starts on the first
    subscription and, like the SQLite watcher, exits (closing its connection) when nobody
    has been subscribed for a couple of seconds.
    """

    backend = "postgres"

    def __init__(
        self,
        display: str,
        connect: Callable[[], Any],
        channel: str,
        safety_s: float = SAFETY_WAKE_S,
    ) -> None:
        super().__init__(display, _no_sqlite, poll_interval_s=safety_s)
        self.channel = channel
        self._pg_connect = connect
        self._listener: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.reconnects = 0
        self.received = 0

    # -- the LISTEN connection -----------------------------------------------------------
    def _open_listener(self) -> Any:
        conn = self._pg_connect()
        try:
            conn.execute(f"LISTEN {quote_ident(self.channel)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- UpdateWatcher hooks ---------------------------------------------------------------
    def _start_locked(self) -> None:
        # LISTEN before the first subscriber returns from subscribe(); if the server is
        # unreachable right now the thread keeps trying and wakes everyone once it is back.
        if self._listener is None:
            try:
                self._listener = self._open_listener()
            except Exception as exc:
                log.warning("LISTEN connection failed (will retry): %s", exc)
        self._generation += 1
        self._stop.clear()
        thread = threading.Thread(
            target=self._run,
            args=(self._generation,),
            name=f"honker-notifier:{self.channel}",
            daemon=True,
        )
        self._thread = self._runner = thread
        thread.start()

    def _identity_ok(self) -> bool:
        return True

    def _interrupt(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _release_runtime(self) -> None:
        self._drop_listener()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the thread ----------------------------------------------------------------------
    def _watch(self, generation: int) -> None:
        monotonic = time.monotonic
        stop = self._stop
        safety = self._interval
        next_safety = monotonic() + safety
        backoff = BACKOFF_START_S
        idle_since: float | None = None
        while not stop.is_set():
            conn = self._listener
            if conn is None:
                try:
                    conn = self._listener = self._open_listener()
                except Exception as exc:
                    log.debug("LISTEN reconnect failed: %s", exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_START_S
                self.reconnects += 1
                log.info("LISTEN connection re-established on %s", self.channel)
                self._fan_out()  # whatever committed while we were away is re-read
            try:
                fd = conn.fileno()
            except Exception:
                self._drop_listener()
                continue
            now = monotonic()
            timeout = max(0.0, min(next_safety, now + IDLE_EXIT_S / 2) - now)
            try:
                ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                ready = [fd]  # let notifies() report the broken connection
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
            if fd in ready:
                try:
                    got = sum(1 for _ in conn.notifies(timeout=0))
                except Exception as exc:
                    log.warning("LISTEN connection lost (reconnecting): %s", exc)
                    self._drop_listener()
                    continue
                if got:
                    self.received += got
                    self._fan_out()
            now = monotonic()
            if now >= next_safety:
                next_safety = now + safety
                self._fan_out()
            if self._subs:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= IDLE_EXIT_S:
                with self._lock:
                    if not self._subs and self._generation == generation:
                        self._thread = None
                        self._drop_listener()
                        return
