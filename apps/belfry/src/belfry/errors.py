"""Exceptions with messages meant for people (CLI output and HTTP error bodies)."""

from __future__ import annotations


class BelfryError(Exception):
    """A failure to report as one clear line; ``status`` is the matching HTTP status."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(BelfryError):
    """A request or command-line value that cannot be accepted (HTTP 422)."""

    status = 422


class NotFound(BelfryError):
    """No reminder with that id (HTTP 404)."""

    status = 404


class Conflict(BelfryError):
    """The reminder is in a state that does not allow the operation (HTTP 409)."""

    status = 409
