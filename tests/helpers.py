"""Helpers for tests that run real OS processes (importable as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BELFRY_SRC = ROOT / "apps" / "belfry" / "src"  # belfry's own distribution (honker-belfry)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(BELFRY_SRC), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A Python child process whose stdout lines are collected by a reader thread."""

    def __init__(self, code: str, *args: str, env: dict[str, str] | None = None) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or python_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_chunks: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump_out, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_chunks.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_chunks)

    def readline(self, timeout: float = 30.0) -> str:
        """Next stdout line; fails if the child exits or nothing arrives in time."""
        import queue

        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output from child within {timeout}s; stderr: {self.stderr}"
            ) from None
        if line is None:
            self.lines.put(None)
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"child exited (rc={self.proc.returncode}) early; stderr: {self.stderr}"
            )
        return line

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def drain(self) -> list[str]:
        """Every stdout line already received (call after the child exited)."""
        out = []
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                self.lines.put(None)
                return out
            out.append(line)

    def expect(self, expected: str, timeout: float = 30.0) -> None:
        """Skip lines until one equals ``expected``."""
        while True:
            if self.readline(timeout) == expected:
                return

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for exit, drain the pipes and close them; returns the exit code."""
        rc = self.proc.wait(timeout=timeout)
        self._close_pipes()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pump in self._pumps:
            pump.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


# A worker process: opens the database, subscribes with ``q.claim()`` (no fallback poll, so
# only a commit can deliver the job), prints READY, then claims one job, acks it and prints
# its payload as JSON. argv: database path, queue name.
CLAIM_ONE_WORKER = """
import asyncio, json, sys
import honker

async def main():
    db = honker.open(sys.argv[1])
    claims = db.queue(sys.argv[2]).claim("worker", idle_poll_s=None)
    print("READY", flush=True)
    job = await claims.__anext__()
    job.ack()
    print(json.dumps(job.payload), flush=True)
    claims.close()
    db.close()

asyncio.run(main())
"""


# A draining worker process: claims (no fallback poll: only wakes deliver work) and acks
# jobs until it claims "stop" or sees nothing for 5 s, then prints the payloads it acked as
# JSON. argv: database path, watcher backend, worker id.
DRAIN_WORKER = """
import asyncio, json, sys
import honker

async def main():
    db = honker.open(sys.argv[1], watcher_backend=sys.argv[2] or None)
    q = db.queue("work")
    done = []
    print("READY", flush=True)
    claims = q.claim(sys.argv[3], idle_poll_s=None)
    while True:
        try:
            job = await asyncio.wait_for(claims.__anext__(), 5.0)
        except asyncio.TimeoutError:
            break
        if job.payload == "stop":
            job.ack()
            break
        if job.ack():
            done.append(job.payload)
    print(json.dumps(done), flush=True)

asyncio.run(main())
"""


PG_NOW = "floor(extract(epoch FROM statement_timestamp()))::bigint"


def sql_for(db: Any, sql: str) -> str:
    """Test SQL written for SQLite (``?`` placeholders, ``unixepoch()``), for ``db``'s engine.

    On PostgreSQL: ``%s`` placeholders and the server clock in unix seconds. Only for test
    SQL without ``?`` or ``unixepoch()`` inside string literals.
    """
    if db.engine.kind != "postgres":
        return sql
    return sql.replace("?", "%s").replace("unixepoch()", PG_NOW)
