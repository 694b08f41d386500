"""``belfry serve`` and ``belfry worker``: API, delivery workers and scheduler in one loop.

The scheduler is honker's leader-elected :class:`honker.Scheduler`: any number of
``belfry serve``/``belfry worker`` processes may run on one database file and exactly one
of them fires schedules; the others stand by and take over within ``SCHEDULER_LOCK_TTL``
seconds if the leader dies. SIGINT/SIGTERM stop everything gracefully: the API stops
accepting requests, running deliveries get ``grace_period_s`` to finish (unfinished jobs
are handed back at once), the scheduler releases its lock. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import honker

from . import __version__
from ._http import bind_socket, bound_port, is_loopback, url_host
from .errors import BelfryError
from .store import Belfry

log = logging.getLogger("belfry")

#: The scheduler lock's time to live: how long a crashed leader blocks a successor.
SCHEDULER_LOCK_TTL = 15
SCHEDULER_HEARTBEAT_S = 5.0


async def run_scheduler(db: honker.Database, stop: asyncio.Event) -> None:
    """Fire schedules as honker's leader (or stand by) until ``stop`` is set."""
    scheduler = honker.Scheduler(
        db, lock_ttl=SCHEDULER_LOCK_TTL, heartbeat_interval=SCHEDULER_HEARTBEAT_S
    )
    events = db.update_events()
    try:
        while not stop.is_set():
            if not scheduler.list():
                # honker's Scheduler.run() refuses to start with no schedule at all;
                # wait for the first recurring reminder (or stop).
                await _wait_either(events.wait(30.0), stop)
                continue
            try:
                await scheduler.run(stop, standby=True, exit_when_idle=False)
            except honker.LeadershipLost as exc:
                log.warning("%s; standing by again", exc)
            except RuntimeError as exc:
                if db.closed:
                    raise
                if not scheduler.list():
                    continue  # the last schedule went away before run() looked
                log.error("scheduler failed (%s); starting it again in 5s", exc)
                await _wait_either(asyncio.sleep(5.0), stop)
    finally:
        events.close()


async def _wait_either(waiter: Coroutine[Any, Any, Any], stop: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(waiter), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def check_listen(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a bearer token."""
    if token is None and not is_loopback(host):
        raise BelfryError(
            f"refusing to listen on {host} without a token: set BELFRY_TOKEN or pass "
            "--token (only loopback addresses may run without one)"
        )


async def run(
    belfry: Belfry,
    *,
    api: bool,
    worker: bool,
    scheduler: bool,
    grace_period_s: float = 10.0,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the chosen components until SIGINT/SIGTERM (or one of them fails)."""
    from .delivery import run_workers

    settings = belfry.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting now")
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    tasks: dict[str, asyncio.Task[None]] = {}
    server = None
    url = ""
    if api:
        check_listen(settings.host, settings.token)
        import uvicorn

        from ._http import EmbeddedServer
        from .api import create_app

        sock = bind_socket(settings.host, settings.port)
        url = f"http://{url_host(settings.host)}:{bound_port(sock)}"

        def components() -> dict[str, bool]:
            return {name: not task.done() for name, task in tasks.items() if name != "api"}

        app = create_app(belfry, token=settings.token, components=components)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, ws="none", timeout_graceful_shutdown=5
        )
        server = EmbeddedServer(config)
        tasks["api"] = asyncio.create_task(server.serve(sockets=[sock]), name="belfry-api")
    if worker:
        tasks["worker"] = asyncio.create_task(
            run_workers(belfry, stop, grace_period_s), name="belfry-worker"
        )
    if scheduler:
        tasks["scheduler"] = asyncio.create_task(
            run_scheduler(belfry.db, stop), name="belfry-scheduler"
        )
    if server is not None:
        while not server.started and not tasks["api"].done():
            await asyncio.sleep(0.01)
    parts = ", ".join(tasks)
    message = f"belfry {__version__}: running {parts} (db {belfry.db.path}, pid {os.getpid()})"
    if url:
        message += f"; API on {url}"
    if announce is not None:
        announce(message)
    failed: BaseException | None = None
    stop_waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [stop_waiter, *tasks.values()], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stop_waiter:
                failed = task.exception() if not task.cancelled() else None
                if failed is None:
                    failed = BelfryError(f"{task.get_name()} stopped unexpectedly")
    finally:
        stop.set()
        stop_waiter.cancel()
        if server is not None:
            server.should_exit = True
        for name, task in tasks.items():
            try:
                await task
            except Exception as exc:
                if failed is None or exc is not failed:
                    log.error("%s failed while stopping: %r", name, exc)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if failed is not None:
        raise failed


def configure_logging(verbose: bool) -> None:
    """Log lines to stderr: ``belfry: <message>``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger("belfry")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
