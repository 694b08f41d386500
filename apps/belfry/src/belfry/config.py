"""Settings from environment variables (``BELFRY_*``), overridable by command-line flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import timeutil
from .errors import InvalidInput
from .reminders import check_topic

DEFAULT_DB = "belfry.db"
DEFAULT_NTFY_URL = "https://ntfy.sh"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8484


@dataclass(frozen=True)
class Settings:
    """Everything belfry can be configured with. Environment variable in brackets.

    * ``db`` [BELFRY_DB]: the SQLite file (default ``belfry.db``), or a ``postgresql://``
      URL (needs the ``honker[postgres]`` extra; belfry's tables go next to honker's).
    * ``url`` / ``token`` [BELFRY_URL, BELFRY_TOKEN]: a running server to talk to (CLI);
      ``token`` is also the bearer token ``belfry serve`` requires.
    * ``ntfy_url`` [BELFRY_NTFY_URL]: ntfy base URL (default ``https://ntfy.sh``).
    * ``topic`` [BELFRY_TOPIC]: default topic for reminders created without one.
    * ``ntfy_token`` [BELFRY_NTFY_TOKEN]: ntfy access token (Bearer auth), or
      ``ntfy_user``/``ntfy_password`` [BELFRY_NTFY_USER, BELFRY_NTFY_PASSWORD] (Basic).
    * ``ntfy_format`` [BELFRY_NTFY_FORMAT]: ``headers`` (POST to ``/<topic>`` with Title,
      Priority, Tags, Click headers; the default) or ``json`` (POST JSON to ``/``).
    * ``tz`` [BELFRY_TZ]: time zone for reminders created without one (default: local).
    * ``host``/``port`` [BELFRY_HOST, BELFRY_PORT]: where ``belfry serve`` listens.
    * ``max_attempts`` [BELFRY_MAX_ATTEMPTS]: delivery attempts before dead-lettering (5).
    * ``retry_delay_s``/``retry_max_delay_s`` [BELFRY_RETRY_DELAY, BELFRY_RETRY_MAX_DELAY]:
      backoff base and cap in seconds (10, 900): 10, 20, 40 ... when the server gives no
      ``Retry-After``.
    * ``http_timeout_s`` [BELFRY_HTTP_TIMEOUT]: seconds one ntfy request may take (15).
    * ``visibility_timeout_s`` [BELFRY_VISIBILITY_TIMEOUT]: how long a crashed worker's
      delivery stays claimed before another worker retries it (60).
    * ``concurrency`` [BELFRY_CONCURRENCY]: deliveries in flight per process (4).
    """

    db: str = DEFAULT_DB
    url: str | None = None
    token: str | None = None
    ntfy_url: str = DEFAULT_NTFY_URL
    topic: str | None = None
    ntfy_token: str | None = None
    ntfy_user: str | None = None
    ntfy_password: str | None = None
    ntfy_format: str = "headers"
    tz: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_attempts: int = 5
    retry_delay_s: float = 10.0
    retry_max_delay_s: float = 900.0
    http_timeout_s: float = 15.0
    visibility_timeout_s: int = 60
    concurrency: int = 4

    @property
    def default_tz(self) -> str:
        """The zone for reminders created without ``tz``."""
        return self.tz or timeutil.local_zone_name()

    def replace(self, **changes: Any) -> Settings:
        """A copy with the non-``None`` ``changes`` applied and validated."""
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **given).validated()

    def validated(self) -> Settings:
        """``self`` after checking values; ``InvalidInput`` naming the setting otherwise."""
        if self.ntfy_format not in ("headers", "json"):
            raise InvalidInput("must be 'headers' or 'json'", field="ntfy format")
        if not self.ntfy_url.startswith(("http://", "https://")):
            raise InvalidInput(f"{self.ntfy_url!r} must start with http:// or https://",
                               field="ntfy url")
        if self.topic is not None:
            check_topic(self.topic)
        if self.tz is not None:
            timeutil.zone(self.tz, field="BELFRY_TZ")
        if self.max_attempts < 1:
            raise InvalidInput("must be at least 1", field="max attempts")
        if self.retry_delay_s < 0 or self.retry_max_delay_s < self.retry_delay_s:
            raise InvalidInput("need 0 <= retry delay <= retry max delay", field="retry delay")
        if self.http_timeout_s <= 0:
            raise InvalidInput("must be positive", field="http timeout")
        if self.visibility_timeout_s < 2:
            raise InvalidInput("must be at least 2 seconds", field="visibility timeout")
        if self.concurrency < 1:
            raise InvalidInput("must be at least 1", field="concurrency")
        if not 0 <= self.port <= 65535:
            raise InvalidInput("must be 0-65535", field="port")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``BELFRY_*`` variables of ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        def number(name: str, kind: type[int] | type[float]) -> Any:
            value = text(name)
            if value is None:
                return None
            try:
                return kind(value)
            except ValueError:
                raise InvalidInput(f"{value!r} is not a number", field=name) from None

        return cls().replace(
            db=text("BELFRY_DB"),
            url=text("BELFRY_URL"),
            token=text("BELFRY_TOKEN"),
            ntfy_url=text("BELFRY_NTFY_URL"),
            topic=text("BELFRY_TOPIC"),
            ntfy_token=text("BELFRY_NTFY_TOKEN"),
            ntfy_user=text("BELFRY_NTFY_USER"),
            ntfy_password=text("BELFRY_NTFY_PASSWORD"),
            ntfy_format=text("BELFRY_NTFY_FORMAT"),
            tz=text("BELFRY_TZ"),
            host=text("BELFRY_HOST"),
            port=number("BELFRY_PORT", int),
            max_attempts=number("BELFRY_MAX_ATTEMPTS", int),
            retry_delay_s=number("BELFRY_RETRY_DELAY", float),
            retry_max_delay_s=number("BELFRY_RETRY_MAX_DELAY", float),
            http_timeout_s=number("BELFRY_HTTP_TIMEOUT", float),
            visibility_timeout_s=number("BELFRY_VISIBILITY_TIMEOUT", int),
            concurrency=number("BELFRY_CONCURRENCY", int),
        )
