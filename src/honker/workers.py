"""Live workers: every worker process registers itself in the database and heartbeats.

``LiveWorkers`` is a :class:`~honker._observe.WorkerObserver`: pass it to a pool
(``WorkerPool(db, observers=[LiveWorkers(db)])``); ``python -m honker worker`` adds it
unless ``--no-register`` is given. At pool start it writes one row to the extra table
``_honker_workers`` (host, pid, queues, concurrency, start time), refreshes ``last_seen``
and the ids of the jobs it is running every ``heartbeat_s`` seconds, and deletes its row
on a clean stop. A worker that died without stopping (SIGKILL, power loss) counts as gone
once three heartbeats were missed; its row is pruned an hour later.

Every database write runs in a thread (``asyncio.to_thread``), never on the event loop,
except the single delete of a clean stop, when no job runs any more.

Read the registry with :func:`list_workers` (or ``python -m honker workers DB``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any

from ._observe import WorkerObserver

if TYPE_CHECKING:
    from ._database import Database
    from .queue import Job
    from .worker import WorkerPool

log = logging.getLogger("honker.workers")

DEFAULT_HEARTBEAT_S = 5.0


def list_workers(db: Database, include_gone: bool = False) -> list[dict[str, Any]]:
    """Registered worker processes as dicts, oldest first.

    Keys: ``id``, ``host``, ``pid``, ``queues`` (list), ``concurrency``, ``heartbeat_s``,
    ``started_at`` and ``last_seen`` (unix seconds), ``running`` (ids of the jobs it is
    running, as of its last heartbeat) and ``alive``. Only live workers unless
    ``include_gone`` (crashed workers whose rows are not pruned yet).
    """
    rows = db.engine.read(db.engine.ops.workers_list, bool(include_gone))
    out = []
    for row in rows:
        info = dict(zip(db.engine.ops.WORKER_COLUMNS, row, strict=True))
        info["queues"] = json.loads(info["queues"])
        info["running"] = json.loads(info["running"])
        info["alive"] = bool(info["alive"])
        out.append(info)
    return out


def live_worker_count(db: Database) -> int:
    """How many worker processes heartbeated within their last three intervals."""
    return int(db.engine.read(db.engine.ops.workers_alive_count))


class LiveWorkers(WorkerObserver):
    """Registers the pool's process in ``_honker_workers`` and heartbeats until it stops.

    ``heartbeat_s`` (default 5) is the interval between heartbeats; it must be positive.
    One instance serves one pool run at a time.
    """

    def __init__(self, db: Database, heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, (int, float)):
            raise TypeError(f"heartbeat_s must be a number, not {type(heartbeat_s).__name__}")
        if not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s!r}")
        self.db = db
        self.heartbeat_s = float(heartbeat_s)
        self.host = socket.gethostname()
        self.worker_id = ""
        self.running: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._stopped = True

    # -- observer hooks ------------------------------------------------------------------
    def pool_started(self, pool: WorkerPool) -> None:
        """Start registering and heartbeating (in the background)."""
        names = pool.queue_names if pool.queue_names is not None else pool.registry.queues()
        queues = json.dumps(sorted(names))
        self.worker_id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running = set()
        self._stopped = False
        self._task = asyncio.get_running_loop().create_task(
            self._beat(queues, pool.concurrency), name="honker-live-workers"
        )

    def pool_stopped(self, pool: WorkerPool) -> None:
        """Stop heartbeating and delete this worker's row."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        with self._lock:
            self._stopped = True
            try:
                self.db.engine.write(self.db.engine.ops.worker_deregister, self.worker_id)
            except RuntimeError as exc:
                log.warning("could not deregister worker %s: %s", self.worker_id, exc)

    def job_context(
        self, job: Job, task_name: str | None
    ) -> contextlib.AbstractContextManager[None]:
        """Note the job as running (shown at the next heartbeat)."""
        self.running.add(job.id)
        return contextlib.nullcontext()

    def job_finished(
        self, job: Job, task_name: str | None, outcome: str, duration_s: float, error: str | None
    ) -> None:
        """The job no longer runs here."""
        self.running.discard(job.id)

    # -- background work -----------------------------------------------------------------
    def _write_locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._stopped:  # a stop won the race: never resurrect the row
                return None
            return self.db.engine.write(fn, *args)

    async def _beat(self, queues_json: str, concurrency: int) -> None:
        registered = False
        while True:
            try:
                if not registered:
                    await asyncio.to_thread(
                        self._write_locked,
                        self.db.engine.ops.worker_register,
                        self.worker_id,
                        self.host,
                        os.getpid(),
                        queues_json,
                        concurrency,
                        self.heartbeat_s,
                    )
                    registered = True
                else:
                    running = json.dumps(sorted(self.running))
                    held = await asyncio.to_thread(
                        self._write_locked,
                        self.db.engine.ops.worker_heartbeat,
                        self.worker_id,
                        running,
                    )
                    registered = held is not False  # pruned meanwhile: register again
            except RuntimeError as exc:  # e.g. the database stayed locked: try next time
                log.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(self.heartbeat_s)
