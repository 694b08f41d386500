"""Pages, actions and the live-update event stream of the dashboard.

Pages are rendered on the server (Jinja2, autoescaped) and work without JavaScript.
With JavaScript, htmx and its SSE extension keep them current: ``GET /events`` is a
Server-Sent Events stream that emits ``update`` whenever the database changes (one
``db.update_events()`` subscription per stream, so commits by any process count) and every
few seconds regardless (ages and relative times move on their own); each page's
``<main id="live">`` then re-fetches itself and swaps in the fresh copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

import honker
from honker._ops import JOB_STATES
from honker.workers import list_workers, live_worker_count

from ._chart import throughput_chart
from ._describe import describe_job
from ._security import CSRF_COOKIE, CSRF_FIELD, Csrf, cookie_path, request_path

PAGE_SIZE = 50
MAX_PAGE = 1_000_000
MAX_SEARCH = 500
MAX_JOB_ID = 2**63 - 1
MAX_TASK_NAME = 500
CHART_MINUTES = 60
BULK_ACTIONS = ("retry", "discard", "cancel")
FLASH_COOKIE = "honker_dashboard_flash"


class Updates(Protocol):
    """What the event stream uses of ``db.update_events()``."""

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a change (``True``) or the timeout (``False``)."""
        ...

    def close(self) -> None:
        """Unsubscribe."""
        ...


def parse_job_id(text: str) -> int:
    """A job id from the URL, or 404 (non-digits, or beyond SQLite's integer range)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_JOB_ID:
        raise HTTPException(404, f"no job with id {text!r}")
    return int(text)


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or not 1 <= int(raw) <= maximum:
        raise HTTPException(400, f"{name} must be a whole number from 1 to {maximum}")
    return int(raw)


def _jobs_text(ids: list[int]) -> str:
    """``3 jobs (4, 7, 9)``, ``1 job (4)`` or ``0 jobs``; at most 10 ids are listed."""
    if not ids:
        return "0 jobs"
    shown = ", ".join(str(i) for i in ids[:10]) + (", …" if len(ids) > 10 else "")
    return f"{len(ids)} job{'' if len(ids) == 1 else 's'} ({shown})"


class Dashboard:
    """State shared by the routes of one dashboard app (see ``create_app``)."""

    def __init__(
        self,
        db: honker.Database,
        *,
        templates: Jinja2Templates,
        csrf: Csrf,
        read_only: bool,
        refresh_interval_s: float,
        min_update_gap_s: float,
        owns_db: bool,
    ) -> None:
        self.db = db
        self.templates = templates
        self.csrf = csrf
        self.read_only = read_only
        self.refresh_interval_s = refresh_interval_s
        self.min_update_gap_s = min_update_gap_s
        self.owns_db = owns_db
        self.scheduler = honker.Scheduler(db)
        self._streams_lock = threading.Lock()
        self._streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._stopping = False

    # -- helpers ---------------------------------------------------------------------------
    def _known_queue(self, name: str) -> honker.Queue:
        if name not in self.db.queue_names():
            raise HTTPException(
                404, f"no queue named {name!r} (it has no jobs and no recent activity)"
            )
        return self.db.queue(name)

    @staticmethod
    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> Response:
        """Render a page with the common context; sets the CSRF cookie on a first visit."""
        nonce = request.cookies.get(CSRF_COOKIE)
        new_nonce = None
        if not nonce:
            nonce = new_nonce = self.csrf.new_nonce()
        live_refresh = request.headers.get("hx-request") == "true"
        flash = None if live_refresh else request.cookies.get(FLASH_COOKIE)
        query = request.url.query
        root = self._root(request)
        ctx: dict[str, Any] = {
            "root": root,
            "db_path": self.db.path,
            "read_only": self.read_only,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.csrf.token_for(nonce),
            "now": int(time.time()),
            "self_url": request_path(request.scope) + ("?" + query if query else ""),
            "flash": unquote(flash) if flash else None,
            **context,
        }
        response = self.templates.TemplateResponse(request, template, ctx, status_code=status_code)
        path = cookie_path(request.scope)
        secure = request.url.scheme == "https"
        if new_nonce is not None:
            response.set_cookie(
                CSRF_COOKIE, new_nonce, path=path, httponly=True, samesite="lax", secure=secure
            )
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=path, httponly=True, samesite="lax")
        return response

    # -- pages -----------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        """``GET /``: queues, streams, schedules, locks and the notifications table."""
        db = self.db
        queues = [{"name": name, **db.queue(name).stats()} for name in db.queue_names()]
        return self._render(
            request,
            "overview.html",
            {
                "title": "Overview",
                "queues": queues,
                "streams": db.streams_info(),
                "schedules": self.scheduler.list(),
                "locks": db.locks_info(),
                "notifications": db.notifications_count(),
                "workers_alive": live_worker_count(db),
            },
        )

    def queue_page(self, request: Request) -> Response:
        """``GET /queues/{name}``: jobs filtered by state and task, searched by payload,
        paginated; the queue's throughput over the last hour."""
        name = request.path_params["name"]
        queue = self._known_queue(name)
        state = request.query_params.get("state") or None
        if state is not None and state not in JOB_STATES:
            raise HTTPException(400, f"state must be one of {', '.join(JOB_STATES)}")
        search = request.query_params.get("q", "")[:MAX_SEARCH] or None
        task = request.query_params.get("task") or None
        if task is not None and len(task) > MAX_TASK_NAME:
            raise HTTPException(400, f"task must be at most {MAX_TASK_NAME} characters")
        page = _int_param(request, "page", 1, MAX_PAGE)
        engine = self.db.engine
        total = engine.read(engine.ops.dashboard_count_jobs, name, state, search, task)
        jobs = engine.read(
            engine.ops.dashboard_list_jobs,
            name,
            state,
            search,
            task,
            PAGE_SIZE,
            (page - 1) * PAGE_SIZE,
        )
        # The filter form sits outside #live: a live refresh does not need its choices.
        live_refresh = request.headers.get("hx-request") == "true"
        tasks = [] if live_refresh else engine.read(engine.ops.dashboard_task_names, name)
        if task is not None and task not in tasks:
            tasks = sorted([*tasks, task])
        history = engine.read(engine.ops.queue_throughput, name, CHART_MINUTES)
        pages = max(1, -(-total // PAGE_SIZE))
        return self._render(
            request,
            "queue.html",
            {
                "title": f"Queue {name}",
                "queue": name,
                "stats": queue.stats(),
                "jobs": [self._with_progress(queue, describe_job(j)) for j in jobs],
                "state": state,
                "states": JOB_STATES,
                "search": search or "",
                "task": task,
                "tasks": tasks,
                "page": page,
                "pages": pages,
                "total": total,
                "first": (page - 1) * PAGE_SIZE + 1,
                "page_size": PAGE_SIZE,
                "chart": throughput_chart(history["minutes"]),
            },
        )

    @staticmethod
    def _with_progress(queue: honker.Queue, job: dict[str, Any]) -> dict[str, Any]:
        """``job`` with the progress its task last reported (processing jobs only)."""
        job["progress"] = queue.progress(job["id"]) if job["state"] == "processing" else None
        return job

    def job_page(self, request: Request) -> Response:
        """``GET /queues/{name}/jobs/{id}``: one job, live or dead, or finished (its stored
        result and attempt history), with its progress and attempt history."""
        name = request.path_params["name"]
        job_id = parse_job_id(request.path_params["job_id"])
        queue = self._known_queue(name)
        engine = self.db.engine
        job = queue.find_job(job_id)
        attempts = queue.job_attempts(job_id)
        found, result = queue.get_result(job_id)
        if job is None:
            elsewhere = engine.read(engine.ops.find_job, job_id) is not None
            if elsewhere or not (found or attempts):
                raise HTTPException(
                    404,
                    f"job {job_id} is not in queue {name!r}: it may have completed, been "
                    "cancelled or discarded (finished jobs are deleted)",
                )
            last = attempts[-1]["outcome"] if attempts else "done"
            finished = {"id": job_id, "queue": name, "state": last, "finished": True}
            context = {"job": finished, "attempts": attempts, "result": (found, result)}
        else:
            live = queue.get_job(job_id) if job["state"] != "dead" else None
            if live is not None and job.get("last_error") is None:
                job["last_error"] = live.get("last_error")
            job["progress"] = None if live is None else live.get("progress")
            job["cancel_requested"] = job["state"] == "processing" and bool(
                engine.read(engine.ops.cancel_requested, job_id)
            )
            context = {"job": describe_job(job), "attempts": attempts, "result": (found, result)}
        return self._render(
            request,
            "job.html",
            {"title": f"Job {job_id}", "queue": name, **context},
        )

    def workers_page(self, request: Request) -> Response:
        """``GET /workers``: registered worker processes, live and recently gone."""
        workers = list_workers(self.db, include_gone=True)
        return self._render(
            request,
            "workers.html",
            {
                "title": "Workers",
                "workers": workers,
                "alive": sum(1 for w in workers if w["alive"]),
            },
        )

    def stream_page(self, request: Request) -> Response:
        """``GET /streams/{topic}``: one stream topic, its consumers, their offsets and lag."""
        topic = request.path_params["topic"]
        info = next((s for s in self.db.streams_info() if s["topic"] == topic), None)
        if info is None:
            raise HTTPException(404, f"no stream topic named {topic!r}")
        return self._render(request, "stream.html", {"title": f"Stream {topic}", "stream": info})

    # -- actions -----------------------------------------------------------------------------
    async def _checked_form(self, request: Request) -> dict[str, str]:
        """The POSTed form after the read-only and CSRF checks (403 when either fails)."""
        fields, _ = await self._checked_form_with_jobs(request)
        return fields

    async def _checked_form_with_jobs(self, request: Request) -> tuple[dict[str, str], list[str]]:
        """:meth:`_checked_form`, plus every ``job`` field (the ticked boxes of a list)."""
        if self.read_only:
            raise HTTPException(403, "this dashboard is read-only")
        # A job list is one form: its rows' boxes come along with every button in it.
        async with request.form(max_files=0, max_fields=PAGE_SIZE + 20) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            picked = [v for v in form.getlist("job") if isinstance(v, str)]
        if not self.csrf.valid(request.cookies.get(CSRF_COOKIE), fields.get(CSRF_FIELD)):
            raise HTTPException(
                403,
                "missing or invalid CSRF token: reload the page and try again",
            )
        return fields, picked

    def _back(self, request: Request, fields: dict[str, str], message: str) -> Response:
        """303 to the form's ``next`` (a path inside the dashboard) with a flash message."""
        root = self._root(request)
        target = fields.get("next", "")
        parts = urlsplit(target)
        if (
            not target.startswith(root + "/")
            or target.startswith("//")
            or "\\" in target
            or any(c in target for c in "\r\n\t")
            or parts.scheme
            or parts.netloc
        ):
            target = root + "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            quote(message, safe=""),
            max_age=60,
            path=cookie_path(request.scope),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    async def job_action(self, request: Request) -> Response:
        """``POST /queues/{name}/jobs/{id}/{retry|discard|cancel}``."""
        fields = await self._checked_form(request)
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("retry", "discard", "cancel"):
            raise HTTPException(404, f"unknown action {action!r}")
        job_id = parse_job_id(request.path_params["job_id"])
        message = await run_in_threadpool(self._job_action, name, job_id, action)
        return self._back(request, fields, message)

    def _job_action(self, name: str, job_id: int, action: str) -> str:
        queue = self._known_queue(name)
        job = queue.find_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id} in queue {name!r}")
        state = job["state"]
        if action == "cancel":
            if state == "dead":
                return f"Job {job_id} is dead: nothing to cancel (discard it instead)."
            if not queue.cancel(job_id):
                if state == "processing":
                    return f"Job {job_id} already has a cancel request waiting for its worker."
                return f"Job {job_id} finished meanwhile: nothing to cancel."
            if state == "processing":
                return f"Asked the worker running job {job_id} to cancel it."
            return f"Cancelled job {job_id}."
        if state != "dead":
            return f"Job {job_id} is {state}, not dead: nothing to {action}."
        if action == "retry":
            n = queue.retry_dead(job_id)
            return f"Job {job_id} is pending again." if n else f"Job {job_id} was not dead."
        n = queue.discard_dead(job_id)
        return f"Discarded dead job {job_id}." if n else f"Job {job_id} was not dead."

    async def queue_action(self, request: Request) -> Response:
        """``POST /queues/{name}/{retry-dead|discard-dead|pause|resume|bulk}``: every dead
        job of a queue, pausing or resuming it, or (``bulk``) the ticked jobs."""
        fields, picked = await self._checked_form_with_jobs(request)
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action == "bulk":
            message = await run_in_threadpool(
                self._bulk_action, name, fields.get("action", ""), picked
            )
            return self._back(request, fields, message)
        if action not in ("retry-dead", "discard-dead", "pause", "resume"):
            raise HTTPException(404, f"unknown action {action!r}")
        if action == "discard-dead" and fields.get("confirm") != "yes":
            return self._back(request, fields, "Tick the box to confirm discarding.")
        message = await run_in_threadpool(self._queue_action, name, action)
        return self._back(request, fields, message)

    def _queue_action(self, name: str, action: str) -> str:
        queue = self._known_queue(name)
        if action == "pause":
            if queue.pause():
                return f"Paused queue {name}: workers claim nothing from it until resumed."
            return f"Queue {name} was already paused."
        if action == "resume":
            return f"Resumed queue {name}." if queue.resume() else f"Queue {name} was not paused."
        if action == "retry-dead":
            return f"Retried {queue.retry_dead()} dead job(s) of {name}."
        return f"Discarded {queue.discard_dead()} dead job(s) of {name}."

    def _bulk_action(self, name: str, action: str, picked: list[str]) -> str:
        if action not in BULK_ACTIONS:
            raise HTTPException(400, f"action must be one of {', '.join(BULK_ACTIONS)}")
        if len(picked) > PAGE_SIZE:
            raise HTTPException(400, f"at most {PAGE_SIZE} jobs at a time")
        ids: list[int] = []
        for text in picked:
            if not text.isascii() or not text.isdigit() or len(text) > 19:
                raise HTTPException(400, f"job ids must be whole numbers, got {text[:30]!r}")
            if int(text) <= MAX_JOB_ID and int(text) not in ids:
                ids.append(int(text))
        queue = self._known_queue(name)
        if not ids:
            return "Nothing selected: tick the jobs first."
        acted: list[int] = []
        requested: list[int] = []  # running jobs whose worker was asked to cancel them
        skipped: list[int] = []
        for job_id in ids:
            job = queue.find_job(job_id)
            state = None if job is None else job["state"]
            if action == "cancel":
                ok = state in ("pending", "delayed", "processing") and queue.cancel(job_id)
            elif action == "retry":
                ok = state == "dead" and queue.retry_dead(job_id) > 0
            else:
                ok = state == "dead" and queue.discard_dead(job_id) > 0
            if not ok:
                skipped.append(job_id)
            else:
                (requested if state == "processing" else acted).append(job_id)
        verb = {"cancel": "Cancelled", "retry": "Retried", "discard": "Discarded"}[action]
        message = f"{verb} {_jobs_text(acted)}."
        if requested:
            message += f" Asked the workers running {_jobs_text(requested)} to cancel them."
        if skipped:
            why = "dead, or a cancel request waits" if action == "cancel" else "not dead"
            message += f" Skipped {_jobs_text(skipped)} ({why}, or gone)."
        return message

    async def schedule_action(self, request: Request) -> Response:
        """``POST /schedules/{name}/{pause|resume}``."""
        fields = await self._checked_form(request)
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            raise HTTPException(404, f"unknown action {action!r}")
        message = await run_in_threadpool(self._schedule_action, name, action)
        return self._back(request, fields, message)

    def _schedule_action(self, name: str, action: str) -> str:
        if self.scheduler.get(name) is None:
            raise HTTPException(404, f"no schedule named {name!r}")
        if action == "pause":
            changed = self.scheduler.pause(name)
            return f"Paused schedule {name}." if changed else f"Schedule {name} was paused."
        changed = self.scheduler.resume(name)
        return f"Resumed schedule {name}." if changed else f"Schedule {name} was active."

    # -- live updates ------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """``GET /events``: Server-Sent Events, ``event: update`` after each change."""
        updates = self.db.update_events()  # a closed database fails here: 503, not a cut stream
        return StreamingResponse(
            self._event_stream(updates),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _event_stream(self, updates: Updates) -> AsyncIterator[str]:
        stop = asyncio.Event()
        entry = (asyncio.get_running_loop(), stop)
        with self._streams_lock:
            if self._stopping:
                updates.close()
                return
            self._streams.add(entry)
        stopped = asyncio.ensure_future(stop.wait())
        woke: asyncio.Future[bool] | None = None
        try:
            # An update right away: the page may have missed commits made between its
            # rendering and this connection (and a reconnect may have missed many).
            yield "retry: 2000\nevent: update\ndata: connected\n\n"
            while True:
                woke = asyncio.ensure_future(updates.wait(self.refresh_interval_s))
                await asyncio.wait({woke, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if stopped.done():
                    woke.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                        await woke
                    return
                try:
                    changed = woke.result()
                except RuntimeError:  # database closed or watcher died: end the stream
                    return
                yield f"event: update\ndata: {'change' if changed else 'tick'}\n\n"
                # Bursts of commits become at most one refresh per gap.
                await asyncio.sleep(self.min_update_gap_s)
        finally:  # also reached when the client went away (the generator is closed)
            stopped.cancel()
            if woke is not None:
                woke.cancel()
            updates.close()
            with self._streams_lock:
                self._streams.discard(entry)

    def stop_streams(self) -> None:
        """End every open event stream now and refuse new ones (server shutdown)."""
        with self._streams_lock:
            self._stopping = True
            streams = list(self._streams)
        for loop, event in streams:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(event.set)
