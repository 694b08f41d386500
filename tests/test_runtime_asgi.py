"""A worker embedded in an ASGI app (Starlette under a real uvicorn) never freezes the app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import honker
from helpers import ROOT

APP = """
import asyncio, contextlib, os
import honker
from honker.worker import WorkerPool
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

db = honker.open(os.environ["APP_DB"])
q = db.queue("embedded")

@q.task(name="embedded.touch")
async def touch() -> str:
    return "touched"

@contextlib.asynccontextmanager
async def lifespan(app):
    stop = asyncio.Event()
    runner = asyncio.create_task(WorkerPool(db, queues=["embedded"], concurrency=2).run(stop))
    yield
    stop.set()
    await runner

async def ping(request):
    return PlainTextResponse("pong")

app = Starlette(routes=[Route("/ping", ping)], lifespan=lifespan)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def test_app_answers_while_another_process_holds_the_writer(tmp_path: Path) -> None:
    db_path = str(tmp_path / "app.db")
    (tmp_path / "embedapp.py").write_text(APP)
    port = _free_port()
    env = dict(
        os.environ,
        APP_DB=db_path,
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "embedapp:app", "--port", str(port), "--no-access-log"],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/ping"
    db = honker.open(db_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert _get(url, 5) == "pong"
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        q = db.queue("embedded")
        # A job that comes due while the writer is held below: the embedded worker wakes
        # at its deadline and must then wait for the writer (on its I/O thread).
        job_id = q.enqueue(
            {"__honker_task__": {"task": "embedded.touch", "args": [], "kwargs": {}}},
            run_at=int(time.time()) + 1,
        )
        answered_while_held = 0
        with db.transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS hold (x)")
            held_until = time.monotonic() + 3.0
            while time.monotonic() < held_until:
                assert _get(url, 10) == "pong"
                if time.monotonic() < held_until:
                    answered_while_held += 1
                time.sleep(0.1)
        assert answered_while_held >= 10
        # Once the writer is free the worker claims and runs the job it was waiting for.
        deadline = time.monotonic() + 60
        while q.get_result(job_id) != (True, "touched"):
            assert time.monotonic() < deadline, "the embedded worker never ran the job"
            time.sleep(0.05)
    finally:
        db.close()
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out
    assert "Application shutdown complete" in out
