"""A small, faithful stand-in for an ntfy server, for tests and demos.

Implements the parts of ntfy's HTTP protocol belfry uses, with ntfy's status codes,
error bodies (``{"code": 40101, "http": 401, "error": "unauthorized", "link": ...}``) and
message fields:

* Publishing: ``POST``/``PUT /<topic>`` with the message as the body and the headers
  (or query parameters) ``X-Title``/``Title``/``ti``/``t``,
  ``X-Priority``/``Priority``/``prio``/``p``, ``X-Tags``/``Tags``/``tag``/``ta``,
  ``X-Click``/``Click``, ``X-Message``/``Message``/``m``; RFC 2047 encoded header values
  are decoded. Or ``POST``/``PUT /`` with a JSON body ``{"topic", "message", "title",
  "tags", "priority", "click"}``. The answer is the stored message as JSON.
* Topics must match ``^[-_A-Za-z0-9]{1,64}$`` (ntfy's reserved names are refused).
* Access control: users (Basic auth), access tokens (Bearer, or Basic with an empty user
  name), per-user topic permissions and a default access for everyone else. Bad
  credentials → 401; valid (or no) credentials without permission → 403.
* Messages over 4,096 bytes → 413 (a server without attachment storage).
* Reading back: ``GET /<topic>/json?poll=1`` (several topics: ``/a,b/json``) returns the
  cached messages as newline-delimited JSON; ``since=all|latest|none|<id>|<unix>|<10m>``
  as in ntfy. Without ``poll=1`` the response streams (an ``open`` event, then messages
  as they are published, with keepalives).
* ``GET /v1/health`` → ``{"healthy": true}``.

Fault injection (not part of ntfy), through ``FakeNtfy.inject_fault`` or HTTP:
``POST /v1/fake/faults`` with ``{"status": 429, "count": 1, "retry_after": "2",
"topic": null, "stall_s": 0}`` makes the next ``count`` publishes (optionally only to
``topic``) answer ``status`` (with a ``Retry-After`` header when given); ``stall_s``
holds each such request that long first — with ``status`` null the request is then
processed normally, and a stalled request whose client hangs up is dropped, not stored.
``GET /v1/fake/requests`` lists the publish requests received (method, path, headers,
body, status; ``in_flight`` while stalled); ``DELETE /v1/fake/messages`` forgets
everything. Run it with ``python -m belfry.fake_ntfy --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import email.errors
import email.header
import json
import re
import secrets
import signal
import string
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ._http import EmbeddedServer, bind_socket, bound_port, url_host

TOPIC_RE = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
#: Names ntfy refuses as topics (they are paths of its web app and API).
RESERVED_TOPICS = frozenset(
    {"docs", "static", "file", "app", "metrics", "account", "settings", "signup", "login", "v1"}
)
MESSAGE_LIMIT = 4096
CACHE_DURATION_S = 12 * 3600
KEEPALIVE_S = 45.0
_ID_ALPHABET = string.ascii_letters + string.digits

_PERMISSIONS = {
    "rw": (True, True),
    "read-write": (True, True),
    "ro": (True, False),
    "read-only": (True, False),
    "wo": (False, True),
    "write-only": (False, True),
    "deny": (False, False),
    "deny-all": (False, False),
}

_ERRORS: dict[str, tuple[int, int, str, str]] = {
    "unauthorized": (40101, 401, "unauthorized", "https://ntfy.sh/docs/publish/#authentication"),
    "forbidden": (40301, 403, "forbidden", "https://ntfy.sh/docs/publish/#authentication"),
    "not_found": (40401, 404, "page not found", ""),
    "priority": (
        40007,
        400,
        "invalid request: priority invalid",
        "https://ntfy.sh/docs/publish/#message-priority",
    ),
    "topic": (40009, 400, "invalid request: topic invalid", ""),
    "json": (40017, 400, "invalid request: request body must be message JSON", ""),
    "since": (40008, 400, "invalid request: since parameter invalid", ""),
    "body": (40036, 400, "invalid request: message body must be UTF-8", ""),
    "too_large": (
        41301,
        413,
        "too large for the attachment cache, or attachments are not allowed",
        "https://ntfy.sh/docs/publish/#attachments",
    ),
    "rate": (
        42901,
        429,
        "limit reached: too many requests",
        "https://ntfy.sh/docs/publish/#limitations",
    ),
    "internal": (50001, 500, "internal server error", ""),
}


def error_response(kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """ntfy's JSON error body for error ``kind``."""
    code, status, text, link = _ERRORS[kind]
    body: dict[str, Any] = {"code": code, "http": status, "error": text}
    if link:
        body["link"] = link
    return JSONResponse(body, status_code=status, headers=headers)


def _status_error(status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    kinds = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
             429: "rate", 500: "internal"}
    if status in kinds:
        return error_response(kinds[status], headers)
    body = {"code": status * 100 + 1, "http": status, "error": f"injected error {status}"}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Fault:
    """An injected answer for the next ``count`` publishes (to ``topic``, or any)."""

    status: int | None = 500
    count: int = 1
    retry_after: str | None = None
    topic: str | None = None
    stall_s: float = 0.0


@dataclass
class Access:
    """``user`` (``*``: everyone) may read/write topics matching ``pattern``."""

    user: str
    pattern: str
    read: bool
    write: bool


@dataclass
class FakeNtfy:
    """State and HTTP app of the fake server (use :attr:`app` with any ASGI server)."""

    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    access: list[Access] = field(default_factory=list)
    default_access: str = "read-write"
    message_limit: int = MESSAGE_LIMIT
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.default_access not in _PERMISSIONS:
            raise ValueError(f"unknown default access {self.default_access!r}")
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._subscribers: list[tuple[set[str], asyncio.Queue[dict[str, Any]]]] = []
        self.app = self._build_app()

    # -- Python API ------------------------------------------------------------------------
    def messages(self, topic: str | None = None) -> list[dict[str, Any]]:
        """Stored messages (of ``topic``), oldest first."""
        with self._lock:
            return [dict(m) for m in self._messages if topic is None or m["topic"] == topic]

    def requests(self) -> list[dict[str, Any]]:
        """Publish requests received so far, oldest first."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def inject_fault(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already waiting."""
        with self._lock:
            self.faults.append(fault)

    def reset(self) -> None:
        """Forget messages, requests and faults."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self.faults.clear()

    # -- protocol --------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> tuple[str | None, bool]:
        """``(user, ok)``; ``user`` is ``None`` for anonymous requests."""
        header = request.headers.get("authorization")
        if header is None:
            auth_param = request.query_params.get("auth")
            if auth_param:
                try:
                    header = base64.b64decode(auth_param + "==").decode()
                except (binascii.Error, UnicodeDecodeError):
                    return None, False
        if not header:
            return None, True
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            user = self.tokens.get(credentials)
            return user, user is not None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None, False
            name, sep, password = decoded.partition(":")
            if not sep:
                return None, False
            if name == "":
                user = self.tokens.get(password)
                return user, user is not None
            if name in self.users and secrets.compare_digest(self.users[name], password):
                return name, True
            return None, False
        return None, False

    def _permitted(self, user: str | None, topic: str, write: bool) -> bool:
        for wanted in ([user] if user is not None else []) + ["*"]:
            for rule in self.access:
                if rule.user == wanted and fnmatchcase(topic, rule.pattern):
                    return rule.write if write else rule.read
        readable, writable = _PERMISSIONS[self.default_access]
        return writable if write else readable

    def _check_access(
        self, request: Request, topics: Sequence[str], write: bool
    ) -> JSONResponse | None:
        user, ok = self._authenticate(request)
        if not ok:
            return error_response("unauthorized")
        if not all(self._permitted(user, t, write) for t in topics):
            return error_response("forbidden")
        return None

    def _take_fault(self, topic: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.topic is None or fault.topic == topic:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _store(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append(message)
            subscribers = list(self._subscribers)
        for topics, queue in subscribers:
            if message["topic"] in topics:
                queue.put_nowait(message)

    def _new_message(
        self,
        topic: str,
        text: str,
        title: str | None,
        tags: list[str],
        priority: int,
        click: str | None,
    ) -> dict[str, Any]:
        now = int(time.time())
        message: dict[str, Any] = {
            "id": "".join(secrets.choice(_ID_ALPHABET) for _ in range(12)),
            "time": now,
            "expires": now + CACHE_DURATION_S,
            "event": "message",
            "topic": topic,
            "message": text,
        }
        if title:
            message["title"] = title
        if tags:
            message["tags"] = tags
        if priority:
            message["priority"] = priority
        if click:
            message["click"] = click
        return message

    async def _publish(self, request: Request, topic: str | None) -> Response:
        body = await request.body()
        record: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body[:8192].decode("utf-8", "replace"),
            "status": None,
            "in_flight": True,
        }
        with self._lock:
            self._requests.append(record)
        try:
            response = await self._handle_publish(request, topic, body)
        finally:
            record["in_flight"] = False
        record["status"] = response.status_code if response is not None else 499
        return response if response is not None else Response(status_code=499)

    async def _handle_publish(
        self, request: Request, path_topic: str | None, body: bytes
    ) -> Response | None:
        data: dict[str, Any] = {}
        if path_topic is None:
            try:
                data = json.loads(body)
            except ValueError:
                return error_response("json")
            if not isinstance(data, dict) or not isinstance(data.get("topic"), str):
                return error_response("json")
            topic = data["topic"]
        else:
            topic = path_topic
        if not TOPIC_RE.fullmatch(topic) or topic in RESERVED_TOPICS:
            return error_response("topic" if path_topic is None else "not_found")
        fault = self._take_fault(topic)
        if fault is not None:
            if fault.stall_s > 0 and not await _stall(request, fault.stall_s):
                return None  # the client hung up: dropped, never stored
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return _status_error(fault.status, headers)
        denied = self._check_access(request, [topic], write=True)
        if denied is not None:
            return denied
        if path_topic is None:
            return self._publish_json(topic, data)
        if len(body) > self.message_limit:
            return error_response("too_large")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return error_response("body")
        text = _param(request, "x-message", "message", "m") or text
        if len(text.encode("utf-8")) > self.message_limit:
            return error_response("too_large")
        priority = _parse_priority(_param(request, "x-priority", "priority", "prio", "p"))
        if priority is None:
            return error_response("priority")
        tags_text = _param(request, "x-tags", "tags", "tag", "ta")
        tags = [t.strip() for t in tags_text.split(",") if t.strip()] if tags_text else []
        message = self._new_message(
            topic,
            text or "triggered",
            _param(request, "x-title", "title", "ti", "t"),
            tags,
            priority,
            _param(request, "x-click", "click"),
        )
        self._store(message)
        return JSONResponse(message)

    def _publish_json(self, topic: str, data: dict[str, Any]) -> Response:
        text = data.get("message", "")
        title = data.get("title")
        tags = data.get("tags", [])
        priority = data.get("priority", 0)
        click = data.get("click")
        if (
            not isinstance(text, str)
            or (title is not None and not isinstance(title, str))
            or (click is not None and not isinstance(click, str))
            or not isinstance(tags, list)
            or not all(isinstance(t, str) for t in tags)
        ):
            return error_response("json")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 5:
            return error_response("priority")
        if len(text.encode("utf-8")) > self.message_limit:
            return error_response("too_large")
        message = self._new_message(topic, text or "triggered", title, tags, priority, click)
        self._store(message)
        return JSONResponse(message)

    def _since(self, value: str | None, poll: bool) -> tuple[str, Any] | None:
        if value is None or value == "":
            return ("all", None) if poll else ("none", None)
        if value in ("all", "latest", "none"):
            return value, None
        if value.isdigit():
            return "time", int(value)
        match = re.fullmatch(r"(\d+)([smhd])", value)
        if match:
            seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[
                match.group(2)
            ]
            return "time", int(time.time()) - seconds
        if re.fullmatch(r"[A-Za-z0-9]{1,64}", value):
            return "id", value
        return None

    def _select(self, topics: set[str], since: tuple[str, Any]) -> list[dict[str, Any]]:
        kind, arg = since
        with self._lock:
            chosen = [m for m in self._messages if m["topic"] in topics]
        if kind == "none":
            return []
        if kind == "latest":
            return chosen[-1:]
        if kind == "time":
            return [m for m in chosen if m["time"] >= arg]
        if kind == "id":
            ids = [m["id"] for m in chosen]
            return chosen[ids.index(arg) + 1 :] if arg in ids else chosen
        return chosen

    async def _subscribe(self, request: Request, topics_text: str) -> Response:
        topics = topics_text.split(",")
        if not all(TOPIC_RE.fullmatch(t) and t not in RESERVED_TOPICS for t in topics):
            return error_response("not_found")
        denied = self._check_access(request, topics, write=False)
        if denied is not None:
            return denied
        poll = request.query_params.get("poll", "") in ("1", "true", "yes")
        since = self._since(request.query_params.get("since"), poll)
        if since is None:
            return error_response("since")
        backlog = self._select(set(topics), since)
        if poll:
            text = "".join(_line(m) for m in backlog)
            return Response(text, media_type="application/x-ndjson; charset=utf-8")
        return StreamingResponse(
            self._stream(request, topics, backlog),
            media_type="application/x-ndjson; charset=utf-8",
        )

    async def _stream(
        self, request: Request, topics: list[str], backlog: list[dict[str, Any]]
    ) -> AsyncIterator[str]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        entry = (set(topics), queue)
        with self._lock:
            self._subscribers.append(entry)
        joined = ",".join(topics)
        try:
            yield _line(_event("open", joined))
            for message in backlog:
                yield _line(message)
            while not await request.is_disconnected():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield _line(_event("keepalive", joined))
                    continue
                yield _line(message)
        finally:
            with self._lock:
                self._subscribers.remove(entry)

    # -- the app ---------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake ntfy", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/v1/health")
        async def health() -> dict[str, bool]:
            return {"healthy": True}

        @app.get("/v1/fake/requests")
        async def list_requests() -> list[dict[str, Any]]:
            return self.requests()

        @app.delete("/v1/fake/requests")
        async def clear_requests() -> Response:
            with self._lock:
                self._requests.clear()
            return Response(status_code=204)

        @app.get("/v1/fake/messages")
        async def list_messages(topic: str | None = None) -> list[dict[str, Any]]:
            return self.messages(topic)

        @app.delete("/v1/fake/messages")
        async def reset() -> Response:
            self.reset()
            return Response(status_code=204)

        @app.get("/v1/fake/faults")
        async def list_faults() -> list[dict[str, Any]]:
            with self._lock:
                return [asdict(f) for f in self.faults]

        @app.post("/v1/fake/faults")
        async def add_fault(request: Request) -> Response:
            try:
                data = await request.json()
                fault = Fault(**data)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
            self.inject_fault(fault)
            return JSONResponse(asdict(fault), status_code=201)

        @app.delete("/v1/fake/faults")
        async def clear_faults() -> Response:
            with self._lock:
                self.faults.clear()
            return Response(status_code=204)

        @app.api_route("/", methods=["POST", "PUT"])
        async def publish_json(request: Request) -> Response:
            return await self._publish(request, None)

        @app.api_route("/{topic}", methods=["POST", "PUT"])
        async def publish(topic: str, request: Request) -> Response:
            return await self._publish(request, topic)

        @app.get("/{topics}/json")
        async def subscribe(topics: str, request: Request) -> Response:
            return await self._subscribe(request, topics)

        return app


def _line(obj: dict[str, Any]) -> str:
    """One line of ntfy's newline-delimited JSON (compact, UTF-8 as is)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _event(kind: str, topic: str) -> dict[str, Any]:
    return {
        "id": "".join(secrets.choice(_ID_ALPHABET) for _ in range(12)),
        "time": int(time.time()),
        "event": kind,
        "topic": topic,
    }


def _param(request: Request, *names: str) -> str | None:
    """First non-empty header or query parameter among ``names`` (RFC 2047 decoded)."""
    for name in names:
        value = request.headers.get(name)
        if value is None:
            value = request.query_params.get(name)
        if value is not None and value.strip():
            return _decode_header(value.strip())
    return None


def _decode_header(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value


def _parse_priority(value: str | None) -> int | None:
    """ntfy's priority parsing: ``None`` when invalid, 0 when absent."""
    if value is None:
        return 0
    word = value.strip().lower()
    levels = {"1": 1, "min": 1, "2": 2, "low": 2, "3": 3, "default": 3, "4": 4, "high": 4,
              "5": 5, "max": 5, "urgent": 5}
    if word in levels:
        return levels[word]
    if word.startswith("u="):  # RFC 9218 HTTP Priority header, ignored by ntfy
        return 3
    return None


async def _stall(request: Request, seconds: float) -> bool:
    """Hold the request for ``seconds``; ``False`` as soon as the client disconnects."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(0.05)
    return True


# -- running it ------------------------------------------------------------------------------
def _config(fake: FakeNtfy, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        fake.app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )


class FakeNtfyServer:
    """Runs a :class:`FakeNtfy` on a background thread (``with FakeNtfyServer() as s:``)."""

    def __init__(self, fake: FakeNtfy | None = None, host: str = "127.0.0.1", port: int = 0):
        self.fake = fake or FakeNtfy()
        self.host = host
        self._sock = bind_socket(host, port)
        self.port = bound_port(self._sock)
        self._server = EmbeddedServer(_config(self.fake, "warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{url_host(self.host)}:{self.port}"

    def start(self) -> FakeNtfyServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake ntfy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeNtfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(fake: FakeNtfy | None = None, port: int = 0) -> Iterator[FakeNtfyServer]:
    """Context manager running a fake ntfy on 127.0.0.1 in a thread."""
    with FakeNtfyServer(fake, port=port) as server:
        yield server


def _parse_access(text: str) -> Access:
    user, sep, rest = text.partition(":")
    pattern, sep2, perm = rest.rpartition(":")
    if not sep or not sep2 or perm not in _PERMISSIONS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected USER:TOPIC_PATTERN:PERMISSION (rw, ro, wo, deny)"
        )
    read, write = _PERMISSIONS[perm]
    return Access(user, pattern, read, write)


def _parse_fault(text: str) -> Fault:
    parts = text.split(":")
    try:
        status = int(parts[0])
        count = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected STATUS[:COUNT[:RETRY_AFTER]]"
        ) from None
    retry_after = parts[2] if len(parts) > 2 and parts[2] else None
    return Fault(status=status, count=count, retry_after=retry_after)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:VALUE")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m belfry.fake_ntfy``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m belfry.fake_ntfy",
        description="A fake ntfy server for tests and demos (see the module docstring).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--user", action="append", type=_pair, default=[], metavar="NAME:PASS")
    parser.add_argument(
        "--token", action="append", type=_pair, default=[], metavar="TOKEN:USER",
        help="an access token belonging to USER",
    )
    parser.add_argument(
        "--access", action="append", type=_parse_access, default=[],
        metavar="USER:PATTERN:PERM", help="topic permission (USER * = everyone)",
    )
    parser.add_argument(
        "--default-access", default="read-write", choices=sorted(_PERMISSIONS),
        help="access for topics no rule covers (default read-write)",
    )
    parser.add_argument(
        "--fault", action="append", type=_parse_fault, default=[],
        metavar="STATUS[:COUNT[:RETRY_AFTER]]", help="answer the next COUNT publishes so",
    )
    args = parser.parse_args(argv)
    fake = FakeNtfy(
        users=dict(args.user),
        tokens=dict(args.token),
        access=args.access,
        default_access=args.default_access,
        faults=args.fault,
    )
    try:
        sock = bind_socket(args.host, args.port)
    except Exception as exc:
        print(f"fake ntfy: {exc}", file=sys.stderr)
        return 1
    server = EmbeddedServer(_config(fake, "warning"))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(f"fake ntfy listening on http://{url_host(args.host)}:{bound_port(sock)}",
              flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
