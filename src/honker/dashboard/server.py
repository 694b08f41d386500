"""The dashboard's ASGI app (``create_app``) and its stand-alone server (``serve``).

``python -m honker dashboard app.db`` calls :func:`serve`. To add the dashboard to an
existing ASGI application, mount the app from :func:`create_app`::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from honker.dashboard import create_app

    app = Starlette(routes=[Mount("/honker", app=create_app(db, token="..."))])
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import honker
from honker.postgres import is_url

from ._format import FILTERS
from ._security import AccessGuard, Csrf, is_loopback
from ._views import Dashboard

TOKEN_ENV = "HONKER_DASHBOARD_TOKEN"
PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

_REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    503: "Database unavailable",
}


def create_app(
    db_or_path: honker.Database | str | os.PathLike[str],
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    csrf_secret: bytes | str | None = None,
    refresh_interval_s: float = 5.0,
) -> Starlette:
    """Build the dashboard as an ASGI application (a ``Starlette`` instance).

    ``db_or_path`` is an open :class:`honker.Database` (left open: you own it) or the path
    of a database file, which the app opens and closes at its lifespan shutdown (a mounted
    sub-application gets no lifespan events, so pass a ``Database`` when mounting).

    * ``token``: when set, every request must carry it (``Authorization: Bearer <token>``,
      or ``?token=<token>`` once, which sets an HttpOnly cookie).
    * ``read_only``: hide every action button and answer action POSTs with 403.
    * ``allowed_hosts``: accepted ``Host`` header names besides loopback ones. The default
      accepts only loopback hosts (``localhost``, ``127.0.0.1``, ``[::1]``) when there is no
      token, which defeats DNS rebinding, and any host when there is one; ``["*"]``
      accepts any host.
    * ``csrf_secret``: key of the CSRF form tokens; default random per app. Give every
      process the same secret if several serve one dashboard behind a load balancer.
    * ``refresh_interval_s``: pages refresh at least this often without any commit
      (relative times and ages move on); commits refresh them at once.
    """
    if isinstance(db_or_path, honker.Database):
        db, owns_db = db_or_path, False
    else:
        db, owns_db = honker.open(os.fspath(db_or_path)), True
    token = token or None
    if allowed_hosts is None:
        hosts: frozenset[str] | None = None if token else frozenset()
    else:
        names = frozenset(h.strip().lower() for h in allowed_hosts)
        hosts = None if "*" in names else names
    if csrf_secret is None:
        secret = secrets.token_bytes(32)
    else:
        secret = csrf_secret.encode("utf-8") if isinstance(csrf_secret, str) else csrf_secret

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    templates = Jinja2Templates(env=env)
    dashboard = Dashboard(
        db,
        templates=templates,
        csrf=Csrf(secret),
        read_only=read_only,
        refresh_interval_s=refresh_interval_s,
        min_update_gap_s=0.25,
        owns_db=owns_db,
    )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_page(dashboard, request, exc.status_code, exc.detail, exc.headers)

    async def database_error(request: Request, exc: Exception) -> Response:
        return _error_page(dashboard, request, 503, f"the database failed: {exc}", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dashboard.stop_streams()
            if owns_db:
                db.close()

    routes: list[BaseRoute] = [
        Route("/", dashboard.overview, methods=["GET"]),
        Route("/events", dashboard.events, methods=["GET"]),
        Route("/workers", dashboard.workers_page, methods=["GET"]),
        Route("/streams/{topic:path}", dashboard.stream_page, methods=["GET"]),
        Route("/queues/{name:path}/jobs/{job_id}/{action}", dashboard.job_action, methods=["POST"]),
        Route("/queues/{name:path}/jobs/{job_id}", dashboard.job_page, methods=["GET"]),
        Route("/queues/{name:path}/{action}", dashboard.queue_action, methods=["POST"]),
        Route("/queues/{name:path}", dashboard.queue_page, methods=["GET"]),
        Route("/schedules/{name:path}/{action}", dashboard.schedule_action, methods=["POST"]),
        Route("/metrics", _metrics_endpoint(db), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessGuard, token=token, allowed_hosts=hosts)],
        exception_handlers={HTTPException: http_error, RuntimeError: database_error},
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app


def _metrics_endpoint(db: honker.Database) -> Any:
    """``GET /metrics``: the database's Prometheus gauges (``honker.metrics``), behind the
    same access guard as every page; 503 with an install hint without ``prometheus_client``."""

    async def metrics(request: Request) -> Response:
        try:
            from honker.metrics import CONTENT_TYPE_LATEST, database_registry, generate_latest
        except ImportError:
            raise HTTPException(
                503, "metrics need prometheus_client: pip install 'honker[metrics]'"
            ) from None
        registry = database_registry(db)
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def _error_page(
    dashboard: Dashboard,
    request: Request,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None,
) -> Response:
    reason = _REASONS.get(status, "Error")
    response = dashboard._render(
        request,
        "error.html",
        {"title": reason, "status": status, "reason": reason, "detail": detail},
        status_code=status,
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class _Server(uvicorn.Server):
    """uvicorn's server, ending the dashboard's event streams as shutdown begins (else
    every open browser tab would hold the shutdown for the whole grace period)."""

    def __init__(self, config: uvicorn.Config, dashboard: Dashboard) -> None:
        super().__init__(config)
        self.dashboard = dashboard

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop the event streams, then shut down as usual."""
        self.dashboard.stop_streams()
        await super().shutdown(sockets=sockets)


@contextlib.contextmanager
def _absorb_stop_signals() -> Iterator[None]:
    """Let SIGINT/SIGTERM stop uvicorn without killing the process afterwards.

    uvicorn re-raises the stop signal once it has shut down; with these no-op handlers in
    place ``serve`` returns normally instead (main thread only; elsewhere a no-op).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ignore(signum: int, frame: Any) -> None:
        return None

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family)


def serve(
    database_path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = False,
) -> int:
    """Serve the dashboard for ``database_path`` until SIGINT/SIGTERM; returns an exit code.

    Binding anything but a loopback address needs a token (``token`` or
    ``$HONKER_DASHBOARD_TOKEN``): without one this prints an error and returns 2, as it
    does for a missing database file or an invalid port. ``port=0`` picks a free port; the
    address actually bound is printed on stdout as ``honker dashboard: serving ... at URL``.
    Returns 1 if the address cannot be bound, 0 after a clean stop.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    path = os.fspath(database_path)
    if token is None and not is_loopback(host):
        print(
            f"honker: error: refusing to serve the dashboard on {host!r} without a token: "
            f"pass --token or set {TOKEN_ENV} (or bind 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    if not is_url(path) and not os.path.isfile(path):
        print(f"honker: error: no database file at {path!r}", file=sys.stderr)
        return 2
    if not 0 <= port <= 65535:
        print(f"honker: error: invalid port {port}", file=sys.stderr)
        return 2
    try:
        sock = _listen(host, port)
    except OSError as exc:
        print(f"honker: error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        db = honker.open(path)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(db, token=token, read_only=read_only)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        server = _Server(config, app.state.dashboard)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host.strip('[]')}]" if ":" in host else host
        mode = " (read-only)" if read_only else ""
        print(
            f"honker dashboard: serving {path} at http://{shown_host}:{bound_port}/{mode}",
            flush=True,
        )
        if token is not None:
            print(
                "honker dashboard: a token is required: open the URL once with "
                "?token=<token>, or send 'Authorization: Bearer <token>'",
                flush=True,
            )
        with _absorb_stop_signals():
            server.run(sockets=[sock])
    finally:
        sock.close()
        db.close()
    print("honker dashboard: stopped", flush=True)
    return 0 if server.started else 1
