"""UpdateWatcher: one thread per Database notices every commit to the file and wakes subscribers.

Three backends share this machinery (see ``docs/watchers.md``): ``polling`` (this class),
and the event-driven ``kernel`` (inotify) and ``shm`` (WAL-index header) in ``_backends``,
which only change *when* the counter below is read.

The polling backend reads ``PRAGMA data_version`` on a dedicated connection. SQLite bumps
that counter whenever *another* connection (in this process or any other) commits, in every
journal mode, and never for rolled-back work. A change fans one wake out to every
subscriber. Wakes carry no data: consumers re-read SQLite after each one, so a spurious wake
costs one indexed query while a missed wake would be a correctness bug.

Each subscriber has a one-slot buffer: a burst of commits coalesces into one pending wake,
and a wake that lands between ``subscribe()`` and the first wait is kept, never lost.
Subscribers register *before* taking their first snapshot of the state they watch.

The thread starts on the first subscription. When nobody has been subscribed for a couple
of seconds it exits, and the next subscription starts a new one after reading the counter
baseline synchronously (still before the subscriber's first snapshot), so an application
that only writes pays nothing for the watcher.

A dead-man's switch ``os.stat``s the database path about every 100 ms: if the file was
replaced (device or inode changed) or removed, the watcher dies and every subscriber's next
wait raises ``RuntimeError`` containing "update watcher died". The polling and kernel
watchers never open the database, ``-wal`` or ``-shm`` files themselves: closing any
descriptor of a file drops the whole process's POSIX locks on it, which would silently break
SQLite's locking. (The shm backend must open ``-shm``; it keeps that descriptor until no
other descriptor of the file is left in the process: see ``release_files``.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from ._errors import CLOSED_MESSAGE, WATCHER_DIED_MESSAGE, DatabaseClosed, WatcherDied

log = logging.getLogger("honker.watcher")

IDENTITY_CHECK_S = 0.1
IDLE_EXIT_S = 2.0
_TRANSIENT = ("locked", "busy")


def file_identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of ``path``, or ``None`` when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class Subscription:
    """One subscriber's view of the watcher: a coalescing one-slot wake buffer.

    Usable from asyncio (``await wait(timeout)``) and from plain threads
    (``wait_sync(timeout)``). Both return ``True`` for a wake and ``False`` on timeout, and
    raise ``RuntimeError`` once the watcher died or the database was closed.
    """

    __slots__ = (
        "__weakref__",
        "_cond",
        "_error",
        "_lock",
        "_pending",
        "_sync_waiters",
        "_waiter",
        "_watcher",
    )

    def __init__(self, watcher: UpdateWatcher) -> None:
        self._watcher: UpdateWatcher | None = watcher
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending = False
        self._error: RuntimeError | None = None
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = None
        self._sync_waiters = 0

    # -- called by the watcher thread -------------------------------------------------
    def _fire(self) -> None:
        with self._lock:
            if self._pending:
                return
            self._pending = True
            waiter = self._waiter
            if self._sync_waiters:
                self._cond.notify_all()
        if waiter is not None:
            loop, fut = waiter
            try:
                loop.call_soon_threadsafe(_resolve, fut, True)
            except RuntimeError:  # the subscriber's loop is closed
                pass

    def _kill(self, error: RuntimeError) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
            waiter = self._waiter
            self._cond.notify_all()
        if waiter is not None:
            loop, fut = waiter
            try:
                loop.call_soon_threadsafe(_resolve, fut, True)
            except RuntimeError:
                pass

    # -- called by consumers -----------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Whether a wake is buffered (does not consume it)."""
        return self._pending

    def _check(self) -> None:
        if self._error is not None:
            raise type(self._error)(str(self._error))

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the next wake (``True``) or until ``timeout`` seconds pass (``False``)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check()
            if self._pending:
                self._pending = False
                return True
            if timeout is not None and timeout <= 0:
                return False
            fut: asyncio.Future[bool] = loop.create_future()
            self._waiter = (loop, fut)
        handle = None if timeout is None else loop.call_later(timeout, _resolve, fut, False)
        try:
            woke = await fut
        except BaseException:
            # Cancelled: a wake that raced in stays buffered for the next wait.
            with self._lock:
                self._waiter = None
            raise
        finally:
            if handle is not None:
                handle.cancel()
        with self._lock:
            self._waiter = None
            pending = self._pending
            self._pending = False
        self._check()
        return woke or pending

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Blocking variant of :meth:`wait` for plain threads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._sync_waiters += 1
            try:
                while True:
                    self._check()
                    if self._pending:
                        self._pending = False
                        return True
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._sync_waiters -= 1

    def close(self) -> None:
        """Unsubscribe; safe to call more than once."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.unsubscribe(self)


# Outcome of one data_version read, passed to a backend's ``after_check`` hook.
SAME = 0  # read fine, no commit since the last read
CHANGED = 1  # a commit landed: every subscriber was woken
RETRY = 2  # transient (BUSY/LOCKED, cannot connect): nothing learned, try again soon
FAILED = 3  # unknown error: connection dropped and everyone woken conservatively


class UpdateWatcher:
    """Polls ``PRAGMA data_version`` on its own connection and wakes every subscriber.

    This class is also the shared machinery of every backend: subscription management,
    the thread's life cycle (lazy start, idle exit, synchronous baseline on restart), the
    ``data_version`` check and fan-out, and the dead-man's switch. A backend only decides
    *when* the counter is worth reading, through three optional callables set in its
    ``__init__`` (``None`` here, which is the polling behaviour):

    * ``_tick_hint(next_identity) -> bool``: called after each ``poll_interval_s`` tick;
      ``False`` skips this tick's ``data_version`` read.
    * ``_event_wait(next_identity) -> bool``: replaces the tick sleep altogether; blocks
      until something happened or ``next_identity`` (monotonic seconds) is reached.
    * ``_after_check(result)``: told each read's outcome (``SAME``/``CHANGED``/``RETRY``/
      ``FAILED``).

    plus the ``_on_start``/``_on_stop``/``_identity_ok``/``_interrupt``/``_release_runtime``
    and :meth:`release_files` methods. Every wake still goes through the same
    ``data_version`` comparison, so a backend can at worst make a wake late, never invent
    one with data or fire for a rolled-back transaction.
    """

    backend = "polling"

    def __init__(
        self,
        path: str,
        connect: Callable[[], sqlite3.Connection],
        poll_interval_s: float = 0.001,
    ) -> None:
        self.path = path
        self._connect = connect
        self._interval = poll_interval_s
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._baseline: int | None = None
        self._identity: tuple[int, int] | None = file_identity(path)
        self._identity_due = False
        self._dead: RuntimeError | None = None
        self._closed = False
        self._stop = threading.Event()
        self._generation = 0
        self._tick_hint: Callable[[float], bool] | None = None
        self._event_wait: Callable[[float], bool] | None = None
        self._after_check: Callable[[int], None] | None = None
        self._runner: threading.Thread | None = None
        self._exit_actions: list[Callable[[], None]] = []

    # -- subscription management -------------------------------------------------------
    def subscribe(self) -> Subscription:
        """Register a subscriber; the baseline is read before this returns."""
        sub = Subscription(self)
        with self._lock:
            if self._closed:
                raise DatabaseClosed(CLOSED_MESSAGE)
            if self._dead is not None:
                sub._error = self._dead
                return sub
            self._subs = (*self._subs, sub)
            if self._thread is None:
                self._start_locked()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscriber (the thread exits on its own once nobody is left)."""
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    @property
    def subscriber_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._subs)

    @property
    def running(self) -> bool:
        """Whether the watcher thread is alive."""
        return self._thread is not None

    def _start_locked(self) -> None:
        # The backend arms its change source first (inotify watch, header snapshot), then
        # the baseline is read: a commit in between is in the baseline or gets noticed.
        self._on_start()
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._baseline = self._read_version(self._conn)
        except sqlite3.Error:
            # Could not read a baseline (e.g. the file is momentarily locked by a checkpoint
            # in another journal mode): start without one; the first successful read then
            # counts as a change, which is a harmless extra wake.
            self._baseline = None
        self._generation += 1
        self._stop.clear()
        thread = threading.Thread(
            target=self._run,
            args=(self._generation,),
            name=f"honker-watcher:{os.path.basename(self.path)}",
            daemon=True,
        )
        self._thread = self._runner = thread
        thread.start()

    @staticmethod
    def _read_version(conn: sqlite3.Connection) -> int:
        row = conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    # -- backend hooks (no-ops for polling) ------------------------------------------------
    def _on_start(self) -> None:
        """Arm the change source; called with the lock held, before the baseline read."""

    def _on_stop(self) -> None:
        """Disarm the change source; called with the lock held when the thread ends."""

    def _identity_ok(self) -> bool:
        """Whether the watched file is still the one we started with (dead-man's switch)."""
        return file_identity(self.path) == self._identity

    def _interrupt(self) -> None:
        """Wake the thread out of ``_event_wait`` (``close()`` calls it after setting stop)."""

    def _release_runtime(self) -> None:
        """Free the backend's own handles once the thread was joined (``close()``)."""

    def release_files(self) -> None:
        """Release handles on the database's files; call after every connection closed.

        ``Database.close()`` calls this last, once the writer and readers are closed: a
        backend holding a descriptor of one of the database's files (``shm``) may only
        close it then, because closing any descriptor of a file drops every POSIX lock
        this process holds on it. The polling and kernel backends hold none.
        """

    def _when_thread_done(self, action: Callable[[], None]) -> None:
        """Run ``action`` now, or after the loop returned when called on the watcher thread.

        ``close()`` can run on the watcher thread itself (a ``Database`` finalizer started
        by garbage collection there); the thread then still has one pass of its loop to
        finish, so handles it may touch (inotify descriptor, ``-shm`` map) are released on
        its way out rather than under its feet.
        """
        if self._runner is not None and self._runner is threading.current_thread():
            self._exit_actions.append(action)
        else:
            action()

    # -- the watcher loop ----------------------------------------------------------------
    def _run(self, generation: int) -> None:
        try:
            self._watch(generation)
        finally:
            while self._exit_actions:
                self._exit_actions.pop(0)()

    def _watch(self, generation: int) -> None:
        monotonic = time.monotonic
        stop = self._stop
        interval = self._interval
        sleep = time.sleep if interval < 0.05 else stop.wait
        tick_hint = self._tick_hint
        event_wait = self._event_wait
        after_check = self._after_check
        last = self._baseline
        conn = self._conn
        next_identity = monotonic() + IDENTITY_CHECK_S
        idle_since: float | None = None
        # Tick backends sleep to absolute deadlines so the cadence stays at ``interval`` on
        # average: every wake-up overshoots a little, and relative sleeps would add that.
        deadline = monotonic() + interval
        while not stop.is_set():
            if event_wait is None:
                delay = deadline - monotonic()
                if delay > 0:
                    sleep(delay)
                deadline += interval
                check = tick_hint is None or tick_hint(next_identity)
            else:
                check = event_wait(next_identity)
            if check:
                result = RETRY
                if conn is None:
                    try:
                        conn = self._conn = self._connect()
                    except sqlite3.Error:
                        conn = None
                if conn is not None:
                    try:
                        version = conn.execute("PRAGMA data_version").fetchone()[0]
                    except sqlite3.OperationalError as exc:
                        message = str(exc).lower()
                        if not any(word in message for word in _TRANSIENT):
                            # Unknown failure: drop the connection, wake everyone once
                            # (conservatively), and reconnect on the next read. Transient
                            # BUSY/LOCKED: try again next time, never re-baseline.
                            self._drop_connection(conn)
                            conn = None
                            last = None
                            self._fan_out()
                            result = FAILED
                    except sqlite3.Error:
                        self._drop_connection(conn)
                        conn = None
                        last = None
                        self._fan_out()
                        result = FAILED
                    else:
                        if version != last:
                            last = version
                            self._fan_out()
                            result = CHANGED
                        else:
                            result = SAME
                if after_check is not None:
                    after_check(result)
            now = monotonic()
            if deadline < now:
                deadline = now + interval  # fell behind (GIL, suspend): do not burst
            if now >= next_identity or self._identity_due:
                self._identity_due = False
                next_identity = now + IDENTITY_CHECK_S
                if not self._identity_ok():
                    self._die(RuntimeError(WATCHER_DIED_MESSAGE))
                    return
                if self._subs:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= IDLE_EXIT_S:
                    with self._lock:
                        if not self._subs and self._generation == generation:
                            self._thread = None
                            self._on_stop()
                            return

    def _drop_connection(self, conn: sqlite3.Connection) -> None:
        self._conn = None
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _fan_out(self) -> None:
        for sub in self._subs:
            sub._fire()

    def _die(self, error: RuntimeError) -> None:
        err = WatcherDied(str(error))
        with self._lock:
            self._dead = err
            subs = self._subs
            self._subs = ()
            self._thread = None
            self._on_stop()
        for sub in subs:
            sub._kill(err)

    # -- shutdown ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop and join the thread; every subscriber's next wait raises. Idempotent.

        Leaves handles on the database's files alone: see :meth:`release_files`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._thread = None
            subs = self._subs
            self._subs = ()
            self._stop.set()
        self._interrupt()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._when_thread_done(self._release_runtime)
        err = DatabaseClosed(CLOSED_MESSAGE)
        for sub in subs:
            sub._kill(err)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass


class UpdateEvents:
    """Async iterator over database updates, returned by ``Database.update_events()``.

    Each ``await __anext__()`` completes with ``None`` once the database changed since the
    previous wake (bursts coalesce). Ends with ``StopAsyncIteration`` when the database is
    closed; raises ``RuntimeError`` ("update watcher died") if the watcher dies.
    """

    def __init__(self, sub: Subscription, path: str) -> None:
        self._sub = sub
        self._path = path

    @property
    def path(self) -> str:
        """The watched database path."""
        return self._path

    def __aiter__(self) -> UpdateEvents:
        return self

    async def __anext__(self) -> None:
        try:
            await self._sub.wait(None)
        except DatabaseClosed:
            raise StopAsyncIteration from None

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for one wake; ``False`` if ``timeout`` seconds passed first."""
        return await self._sub.wait(timeout)

    def close(self) -> None:
        """Unsubscribe now (also happens when the object is garbage-collected)."""
        self._sub.close()

    def __del__(self) -> None:
        try:
            self._sub.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"UpdateEvents(path={self._path!r})"


def create_watcher(
    backend: str,
    requested: str | None,
    path: str,
    connect: Callable[[], sqlite3.Connection],
    poll_interval_s: float,
) -> UpdateWatcher:
    """Build the update watcher for ``backend`` ("polling", "kernel" or "shm").

    ``requested`` is the spelling the caller used (for messages). Called by ``open()``
    after the writer connection exists, so a backend can probe the file (journal mode,
    sidecar files) and refuse with ``ValueError`` ("requires the ...") or fail with
    ``RuntimeError`` ("watcher_backend probe failed: ...") instead of silently polling.
    """
    if backend == "polling":
        return UpdateWatcher(path, connect, poll_interval_s=poll_interval_s)
    from . import _backends

    if backend == "auto":
        reason = _backends.kernel_unsuitable(path)
        if reason is None:
            try:
                return _backends.KernelWatcher.probe(requested, path, connect)
            except (ValueError, RuntimeError, OSError) as exc:
                reason = str(exc)
        log.debug("update watcher for %s: polling (%s)", path, reason)
        return UpdateWatcher(path, connect, poll_interval_s=poll_interval_s)
    if backend == "kernel":
        return _backends.KernelWatcher.probe(requested, path, connect)
    if backend == "shm":
        return _backends.ShmWatcher.probe(requested, path, connect, poll_interval_s)
    raise ValueError(
        f"watcher_backend {requested!r} requires the {backend} watcher, "
        "which is not available in this build"
    )


async def wait_any(
    sub: Subscription, stop: asyncio.Event, other: asyncio.Event | None, timeout: float | None
) -> None:
    """Wait for a database update on ``sub``, ``stop``, ``other`` or ``timeout`` seconds.

    A wake that arrives while this is being cancelled stays buffered in ``sub``.
    """
    if stop.is_set() or (other is not None and other.is_set()):
        return
    waiters = [asyncio.ensure_future(sub.wait(timeout)), asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # surfaces "update watcher died"
    finally:
        await cancel_and_wait(waiters)


async def cancel_and_wait(tasks: list[asyncio.Future[Any]] | list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done, without swallowing a cancellation of
    the caller itself (``suppress(CancelledError)`` around ``await task`` would: a
    ``cancel()`` of the caller that lands during that await would then be lost)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: a failure while cancelling is not reported
