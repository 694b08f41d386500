"""A client for a running ``belfry serve`` with the same methods as :class:`~belfry.store.Belfry`.

The CLI talks to either one; both return the API's JSON shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from . import __version__
from .errors import BelfryError, Conflict, InvalidInput, NotFound


class RemoteBelfry:
    """Reminder operations over HTTP (``--url``/``BELFRY_URL``, ``--token``/``BELFRY_TOKEN``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"User-Agent": f"belfry/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(
                method, path, json=None if body is None else dict(body), params=params
            )
        except httpx.HTTPError as exc:
            raise BelfryError(f"cannot reach belfry at {self.url}: {exc}") from None
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            return data
        detail = data.get("detail") if isinstance(data, dict) else None
        message = str(detail) if detail else f"HTTP {response.status_code} {response.text[:200]}"
        errors: dict[int, type[BelfryError]] = {404: NotFound, 409: Conflict, 422: InvalidInput}
        error = errors.get(response.status_code, BelfryError)(message)
        error.status = response.status_code
        raise error

    def add(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /reminders``."""
        return dict(self._call("POST", "/reminders", {k: v for k, v in data.items()
                                                      if v is not None}))

    def list_reminders(self, state: str | None = None) -> list[dict[str, Any]]:
        """``GET /reminders``."""
        return list(self._call("GET", "/reminders", params={"state": state} if state else None))

    def get(self, reminder_id: int) -> dict[str, Any]:
        """``GET /reminders/{id}``."""
        return dict(self._call("GET", f"/reminders/{int(reminder_id)}"))

    def edit(self, reminder_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /reminders/{id}``."""
        return dict(self._call("PATCH", f"/reminders/{int(reminder_id)}", changes))

    def pause(self, reminder_id: int) -> dict[str, Any]:
        """``POST /reminders/{id}/pause``."""
        return dict(self._call("POST", f"/reminders/{int(reminder_id)}/pause"))

    def resume(self, reminder_id: int) -> dict[str, Any]:
        """``POST /reminders/{id}/resume``."""
        return dict(self._call("POST", f"/reminders/{int(reminder_id)}/resume"))

    def snooze(
        self, reminder_id: int, for_: str | None = None, until: str | None = None
    ) -> dict[str, Any]:
        """``POST /reminders/{id}/snooze``."""
        body = {"for": for_} if for_ is not None else {"until": until}
        return dict(self._call("POST", f"/reminders/{int(reminder_id)}/snooze", body))

    def send_now(self, reminder_id: int) -> dict[str, Any]:
        """``POST /reminders/{id}/send``."""
        return dict(self._call("POST", f"/reminders/{int(reminder_id)}/send"))

    def retry_dead(self, reminder_id: int) -> dict[str, Any]:
        """``POST /reminders/{id}/retry``."""
        return dict(self._call("POST", f"/reminders/{int(reminder_id)}/retry"))

    def delete(self, reminder_id: int) -> None:
        """``DELETE /reminders/{id}``."""
        self._call("DELETE", f"/reminders/{int(reminder_id)}")

    def deliveries(self, reminder_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """``GET /reminders/{id}/deliveries``."""
        return list(
            self._call("GET", f"/reminders/{int(reminder_id)}/deliveries", params={"limit": limit})
        )

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return dict(self._call("GET", "/health"))
