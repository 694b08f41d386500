"""Publishing to ntfy, and sorting every answer into delivered / retry later / give up.

Two publish forms, both from ntfy's documentation:

* ``headers`` (default): ``POST <base>/<topic>`` with the message as the body and the
  ``Title``, ``Priority``, ``Tags`` and ``Click`` headers. Header values that are not
  ASCII are sent as RFC 2047 encoded words (``=?UTF-8?B?...?=``), which ntfy decodes.
* ``json``: ``POST <base>/`` with ``{"topic", "message", "title", "tags", "priority",
  "click"}``.

Authentication is a Bearer access token or Basic user/password. A message larger than
4,096 bytes is refused before anything is sent.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from . import __version__
from .reminders import MAX_MESSAGE_BYTES, message_bytes

#: Statuses that a later attempt may turn into a success.
TRANSIENT_STATUSES = frozenset({408, 425, 429})
#: Longest ``Retry-After`` honoured as given (longer ones are capped to this).
MAX_RETRY_AFTER_S = 86400

Outcome = Literal["delivered", "retry", "permanent"]


@dataclass(frozen=True)
class NtfyConfig:
    """Where and how to publish."""

    base_url: str = "https://ntfy.sh"
    token: str | None = None
    user: str | None = None
    password: str | None = None
    form: Literal["headers", "json"] = "headers"
    timeout_s: float = 15.0


@dataclass(frozen=True)
class Notification:
    """One message for one topic."""

    topic: str
    message: str
    title: str | None = None
    tags: list[str] = field(default_factory=list)
    priority: int = 3
    click: str | None = None


@dataclass(frozen=True)
class PublishResult:
    """What happened: ``outcome``, the HTTP status (if any answer came), an error text
    for people, the server's ``Retry-After`` in seconds and ntfy's message id."""

    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    ntfy_id: str | None = None


def _header_value(value: str) -> str:
    """ASCII as is; anything else as one RFC 2047 base64 encoded word."""
    if value.isascii() and value.isprintable():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER_S))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return float(min(max(0.0, seconds), MAX_RETRY_AFTER_S))


def describe_error(response: httpx.Response) -> str:
    """``HTTP 401 Unauthorized: unauthorized (ntfy error 40101, https://...)`` from ntfy's
    JSON error body, or the start of whatever text the server sent."""
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        extra = [f"ntfy error {body['code']}"] if "code" in body else []
        if isinstance(body.get("link"), str):
            extra.append(body["link"])
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{status}: {body['error']}{suffix}"
    text = " ".join(response.text.split())[:500]
    return f"{status}: {text}" if text else status


class NtfyPublisher:
    """Publishes :class:`Notification` objects with one shared ``httpx.AsyncClient``."""

    def __init__(self, config: NtfyConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        auth: httpx.Auth | None = None
        if config.token is None and config.user is not None:
            auth = httpx.BasicAuth(config.user, config.password or "")
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=config.timeout_s,
            auth=auth,
            headers={"User-Agent": f"belfry/{__version__}"},
            follow_redirects=False,
        )

    def build_request(self, note: Notification) -> httpx.Request:
        """The HTTP request that publishes ``note`` (nothing is sent)."""
        base = self.config.base_url.rstrip("/")
        headers: dict[str, str] = {}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token}"
        if self.config.form == "json":
            body: dict[str, Any] = {"topic": note.topic, "message": note.message}
            if note.title:
                body["title"] = note.title
            if note.tags:
                body["tags"] = list(note.tags)
            if note.priority != 3:
                body["priority"] = note.priority
            if note.click:
                body["click"] = note.click
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, ensure_ascii=False).encode("utf-8")
            return self.client.build_request("POST", base + "/", headers=headers, content=content)
        if note.title:
            headers["Title"] = _header_value(note.title)
        if note.priority != 3:
            headers["Priority"] = str(note.priority)
        if note.tags:
            headers["Tags"] = _header_value(",".join(note.tags))
        if note.click:
            headers["Click"] = _header_value(note.click)
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return self.client.build_request(
            "POST", f"{base}/{note.topic}", headers=headers, content=note.message.encode("utf-8")
        )

    async def publish(self, note: Notification) -> PublishResult:
        """Send ``note`` once and classify the result (never raises for HTTP failures).

        2xx → delivered. 408, 425, 429, 5xx, timeouts and connection errors → retry
        (with the server's ``Retry-After`` when it sent one). Everything else — 400, 401,
        403, 413, other 4xx, redirects, a message over 4,096 bytes, a bad URL — is
        permanent: retrying the same request cannot succeed.
        """
        size = message_bytes(note.message)
        if size > MAX_MESSAGE_BYTES:
            return PublishResult(
                "permanent",
                error=f"message is {size} bytes; ntfy accepts at most {MAX_MESSAGE_BYTES} "
                "bytes (not sent)",
            )
        try:
            request = self.build_request(note)
            response = await self.client.send(request)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return PublishResult("permanent", error=f"bad ntfy URL {self.config.base_url!r}: {exc}")
        except httpx.TimeoutException as exc:
            return PublishResult(
                "retry",
                error=f"no answer from {self.config.base_url} within "
                f"{self.config.timeout_s:g}s ({type(exc).__name__})",
            )
        except httpx.HTTPError as exc:
            return PublishResult(
                "retry",
                error=f"could not reach {self.config.base_url}: {type(exc).__name__}: {exc}",
            )
        status = response.status_code
        if 200 <= status < 300:
            ntfy_id = None
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("id"), str):
                    ntfy_id = body["id"]
            except (ValueError, UnicodeDecodeError):
                pass
            return PublishResult("delivered", http_status=status, ntfy_id=ntfy_id)
        error = describe_error(response)
        if status in TRANSIENT_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return PublishResult("retry", status, error, retry_after)
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            error = f"{error} (redirect to {location}; set BELFRY_NTFY_URL to the final URL)"
        return PublishResult("permanent", status, error)

    async def aclose(self) -> None:
        """Close the HTTP client if this publisher created it."""
        if self._owns_client:
            await self.client.aclose()
