"""Access control of the dashboard: host allow-list, access token, CSRF, response headers.

* ``AccessGuard`` is pure ASGI middleware in front of every route (pages, the event
  stream, static files). It rejects requests whose ``Host`` is not allowed (DNS-rebinding
  defence for a token-less dashboard on loopback), demands the access token when one is
  configured, and adds security headers (a strict Content-Security-Policy: scripts,
  styles and connections only from the dashboard itself) to every response.
* ``Csrf`` issues and checks the per-browser form tokens (signed double-submit cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUTH_COOKIE = "honker_dashboard_auth"
CSRF_COOKIE = "honker_dashboard_csrf"
CSRF_FIELD = "csrf_token"
TOKEN_PARAM = "token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

LOOPBACK_NAMES = frozenset({"localhost"})


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header, lower-cased, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, no port) is a loopback address."""
    name = host_name(host) if host.startswith("[") else host.strip().lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_path(scope: Scope) -> str:
    """The path the dashboard's cookies are scoped to (its mount point, or ``/``)."""
    root = str(scope.get("root_path", "")).rstrip("/")
    return root + "/" if root else "/"


def request_path(scope: Scope) -> str:
    """The request's path as the client sent it: percent-encoded, mount prefix included."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("ascii", "replace").partition("?")[0]
    return quote(str(scope.get("path", "/")), safe="/:@!$&'()*+,;=-._~")


def _bearer(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class AccessGuard:
    """ASGI middleware: ``Host`` allow-list, access token and security headers.

    With a ``token`` every request must carry it: ``Authorization: Bearer <token>``, the
    HttpOnly cookie set after a first visit with ``?token=<token>`` (that visit is
    redirected to the same URL without the token), or ``?token=`` on a non-GET request.
    ``allowed_hosts`` of ``None`` accepts any ``Host`` header; otherwise the header must
    name a loopback address (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or one of
    the given host names.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, allowed_hosts: Iterable[str] | None
    ) -> None:
        self.app = app
        self.token = token or None
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        )
        self.cookie_value = (
            None
            if self.token is None
            else hmac.new(
                self.token.encode("utf-8"), b"honker-dashboard-session", hashlib.sha256
            ).hexdigest()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and not self._host_allowed(headers.get("host", "")):
            response: Response = HTMLResponse(
                "<!doctype html><title>Invalid host</title><p>Invalid Host header.</p>",
                status_code=400,
            )
            await response(scope, receive, send)
            return
        if self.token is not None:
            denied = self._authenticate(scope, headers)
            if denied is not None:
                await denied(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_allowed(self, header: str) -> bool:
        assert self.allowed_hosts is not None
        name = host_name(header)
        return name in self.allowed_hosts or is_loopback(name)

    def _authenticate(self, scope: Scope, headers: Headers) -> Response | None:
        """``None`` when the request carries the token, else the response to send."""
        assert self.token is not None and self.cookie_value is not None
        bearer = _bearer(headers)
        if bearer is not None and _equal(bearer, self.token):
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == TOKEN_PARAM]
        if given:
            if not all(_equal(v, self.token) for v in given):
                return _unauthorized()
            if scope["method"] not in ("GET", "HEAD"):
                return None
            rest = urlencode([(k, v) for k, v in query if k != TOKEN_PARAM])
            path = request_path(scope)
            redirect = RedirectResponse(path + ("?" + rest if rest else ""), status_code=303)
            redirect.set_cookie(
                AUTH_COOKIE,
                self.cookie_value,
                path=cookie_path(scope),
                httponly=True,
                samesite="lax",
                secure=scope.get("scheme") == "https",
            )
            return redirect
        cookie = Request(scope).cookies.get(AUTH_COOKIE)
        if cookie is not None and _equal(cookie, self.cookie_value):
            return None
        return _unauthorized()

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        static_prefix = str(scope.get("root_path", "")) + "/static/"
        is_static = str(scope.get("path", "")).startswith(static_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("cache-control", "no-cache" if is_static else "no-store")
            await send(message)

        return send_with_headers


def _unauthorized() -> Response:
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>honker dashboard: token required</title>"
        "<h1>Token required</h1><p>This dashboard needs its access token: open it once as "
        "<code>…/?token=&lt;token&gt;</code> (a cookie then keeps you signed in) or send "
        "<code>Authorization: Bearer &lt;token&gt;</code>.</p>",
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="honker dashboard"'},
    )


class Csrf:
    """Per-browser CSRF tokens: an HttpOnly nonce cookie plus ``HMAC(secret, nonce)`` in
    every form. A POST is accepted only when the form's token matches its cookie."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    @staticmethod
    def new_nonce() -> str:
        """A fresh random cookie value."""
        return secrets.token_urlsafe(32)

    def token_for(self, nonce: str) -> str:
        """The form token that goes with cookie value ``nonce``."""
        return hmac.new(self.secret, nonce.encode("utf-8"), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` (from the form) belongs to ``nonce`` (from the cookie)."""
        if not nonce or not token:
            return False
        return _equal(self.token_for(nonce), token)
