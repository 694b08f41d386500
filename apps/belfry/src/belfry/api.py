"""The HTTP API (FastAPI + pydantic): reminders CRUD, delivery history, health.

Every route except ``/health`` and the OpenAPI documents (``/docs``, ``/redoc``,
``/openapi.json``) requires ``Authorization: Bearer <token>`` when a token is configured;
``belfry serve`` refuses to listen beyond loopback without one. Errors are JSON
``{"detail": "<one clear line>"}``; validation errors (422) add ``"errors"``, one entry
per offending field.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from . import __version__, reminders, timeutil
from .errors import BelfryError, InvalidInput
from .store import Belfry

DESCRIPTION = """\
Recurring reminders delivered to an [ntfy](https://ntfy.sh) server, stored with their
delivery history in one SQLite file and driven by honker (queues, retries, schedules).

Times are ISO 8601 with the reminder's UTC offset. A reminder fires once (`at` or `in`)
or repeatedly (`cron` in the reminder's time zone `tz`, or `every`). Authenticate with
`Authorization: Bearer <token>` when the server has a token.
"""


def _check(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a belfry validator, turning its error into the ``ValueError`` pydantic reports."""
    try:
        return fn(*args)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class _Content(BaseModel):
    # strict: a JSON value of the wrong type is an error, never coerced (true is no priority)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    title: str | None = Field(None, description="Notification title (one line).")
    tags: list[str] | None = Field(
        None, description="ntfy tags (emoji short codes such as `warning` become emojis)."
    )
    priority: int | str | None = Field(
        None, description="1-5 or min, low, default, high, max (default: 3).", examples=["high"]
    )
    topic: str | None = Field(
        None,
        description="ntfy topic, `^[-_A-Za-z0-9]{1,64}$` (default: the server's topic).",
        examples=["reminders"],
    )
    click: str | None = Field(None, description="URL opened when the notification is tapped.")
    at: str | None = Field(
        None,
        description="One-off at this time: `2026-12-01T09:00` (in `tz`), with an offset, "
        "or `09:00` (next time the clock shows it).",
    )
    in_: str | None = Field(
        None, alias="in", description="One-off after this long: `90s`, `10m`, `1h30m`, `2d`."
    )
    cron: str | None = Field(
        None,
        description="Recurring, 5-field (or 6 with seconds) cron in `tz`: `0 9 * * 1-5`. "
        "Day-of-month and day-of-week must both match.",
    )
    every: str | None = Field(None, description="Recurring interval: `30m`, `1h`, `1d`.")
    tz: str | None = Field(
        None, description="IANA time zone (default: the server's).", examples=["Europe/Paris"]
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return _check(reminders.check_title, value)  # type: ignore[no-any-return]

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check(reminders.check_tags, value)

    @field_validator("priority", mode="wrap")
    @classmethod
    def _priority(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> int | None:
        try:
            value = handler(value)  # strict int | str | None: refuses true, 3.0...
        except ValidationError:
            _check(reminders.check_priority, value)  # ...with belfry's own message
            raise
        return None if value is None else _check(reminders.check_priority, value)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return None if value is None else _check(reminders.check_topic, value)

    @field_validator("click")
    @classmethod
    def _click(cls, value: str | None) -> str | None:
        return _check(reminders.check_click, value)  # type: ignore[no-any-return]

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check(timeutil.zone, value).key

    @field_validator("in_", "every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            _check(timeutil.parse_duration, value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check(reminders.check_cron, value, "UTC", 0)  # type: ignore[no-any-return]

    def timing_fields(self) -> list[str]:
        """Names of the timing fields given."""
        values = {"at": self.at, "in": self.in_, "cron": self.cron, "every": self.every}
        return [name for name, value in values.items() if value is not None]


class ReminderCreate(_Content):
    """A new reminder: a message and exactly one of `at`, `in`, `cron`, `every`."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"message": "stretch", "every": "1h"},
                {"message": "stand-up", "cron": "0 9 * * 1-5", "tz": "Europe/Paris",
                 "title": "Daily", "tags": ["alarm_clock"], "priority": "high"},
                {"message": "call mum", "at": "2026-12-01T18:00"},
            ]
        },
    )

    message: str = Field(description="The notification text (at most 4,096 bytes).")

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        return _check(reminders.check_message, value)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _one_timing(self) -> ReminderCreate:
        given = self.timing_fields()
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of at, in, cron, every (got {', '.join(given) or 'none'})"
            )
        return self


class ReminderUpdate(_Content):
    """Fields to change; `null` clears `title`/`click`. A timing field replaces the timing."""

    message: str | None = Field(None, description="The notification text (at most 4,096 bytes).")

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return None if value is None else _check(reminders.check_message, value)

    @model_validator(mode="after")
    def _at_most_one_timing(self) -> ReminderUpdate:
        given = self.timing_fields()
        if len(given) > 1:
            raise ValueError(f"give at most one of at, in, cron, every (got {', '.join(given)})")
        return self


class SnoozeRequest(BaseModel):
    """Remind again after `for` (a duration) or at `until` (a time)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        strict=True,
        json_schema_extra={"examples": [{"for": "10m"}]},
    )

    for_: str | None = Field(None, alias="for", description="Duration: `10m`, `1h`.")
    until: str | None = Field(None, description="Time: `2026-12-01T09:00` or `09:00`.")

    @field_validator("for_")
    @classmethod
    def _for(cls, value: str | None) -> str | None:
        if value is not None:
            _check(timeutil.parse_duration, value)
        return value

    @model_validator(mode="after")
    def _one(self) -> SnoozeRequest:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give exactly one of for, until")
        return self


class Delivery(BaseModel):
    """One delivery attempt."""

    id: int
    reminder_id: int
    job_id: int = Field(description="The honker job carrying this delivery.")
    attempt: int
    trigger: Literal["once", "schedule", "snooze", "manual"]
    status: Literal["sending", "delivered", "retrying", "dead", "interrupted", "skipped"]
    http_status: int | None = Field(description="ntfy's HTTP status, if it answered.")
    error: str | None = Field(description="What went wrong, with the server's own error text.")
    ntfy_id: str | None
    started_at: str
    finished_at: str | None
    retry_at: str | None


class Reminder(BaseModel):
    """A reminder with its next delivery and its latest delivery attempt."""

    id: int
    message: str
    title: str | None
    tags: list[str]
    priority: int
    priority_name: str
    topic: str
    click: str | None
    kind: Literal["once", "cron", "every"]
    schedule: str = Field(description="Human summary: `every 1h`, `cron ... (zone)`, `at ...`.")
    cron: str | None
    every_s: int | None
    due_at: str | None
    tz: str
    state: Literal["active", "paused", "done", "failed"]
    next_at: str | None
    snoozed_until: str | None
    created_at: str
    updated_at: str
    delivered_count: int
    last_delivery: Delivery | None
    last_error: str | None = Field(
        description="Error of the latest attempt when it failed (retrying or dead-lettered)."
    )


class Health(BaseModel):
    """Liveness of the process and of its components."""

    status: Literal["ok"]
    version: str
    components: dict[str, bool]


_bearer = HTTPBearer(auto_error=False, description="The token `belfry serve` was given.")


def _summarise(errors: list[Any]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error")
            text = f"not valid JSON ({reason})" if reason else "not valid JSON"
            out.append({"field": "body", "message": text})
            continue
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        message = str(err.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "body", "message": message})
    return out


def create_app(
    belfry: Belfry,
    *,
    token: str | None = None,
    components: Callable[[], dict[str, bool]] | None = None,
) -> FastAPI:
    """The API application over ``belfry``; ``token`` (if set) is required on every
    reminder route; ``components`` reports what else runs in the process (for /health)."""
    app = FastAPI(title="belfry", version=__version__, description=DESCRIPTION)

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if token is None:
            return
        given = "" if credentials is None else credentials.credentials
        if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(BelfryError)
    async def belfry_error(request: Request, exc: BelfryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _summarise(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    auth = [Depends(authorize)]
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or wrong bearer token"},
        404: {"description": "No such reminder"},
        422: {"description": "Invalid input; `detail` says what and why"},
    }

    @app.get("/health", tags=["service"])
    def health() -> Health:
        """Liveness: the database answers, and which components run in this process."""
        belfry.db.query("SELECT 1")
        parts = {"api": True, **(components() if components is not None else {})}
        return Health(status="ok", version=__version__, components=parts)

    @app.post("/reminders", status_code=201, tags=["reminders"], dependencies=auth,
              responses=errors)
    def create_reminder(body: ReminderCreate) -> Reminder:
        """Create a reminder."""
        return Reminder(**belfry.add(body.model_dump(by_alias=True, exclude_none=True)))

    @app.get("/reminders", tags=["reminders"], dependencies=auth, responses=errors)
    def list_reminders(
        state: Annotated[
            Literal["active", "paused", "done", "failed"] | None,
            Query(description="Only reminders in this state."),
        ] = None,
    ) -> list[Reminder]:
        """Every reminder, oldest first."""
        return [Reminder(**r) for r in belfry.list_reminders(state)]

    @app.get("/reminders/{reminder_id}", tags=["reminders"], dependencies=auth,
             responses=errors)
    def get_reminder(reminder_id: int) -> Reminder:
        """One reminder."""
        return Reminder(**belfry.get(reminder_id))

    @app.patch("/reminders/{reminder_id}", tags=["reminders"], dependencies=auth,
               responses=errors)
    def update_reminder(reminder_id: int, body: ReminderUpdate) -> Reminder:
        """Change some fields of a reminder."""
        changes = body.model_dump(by_alias=True, exclude_unset=True)
        return Reminder(**belfry.edit(reminder_id, changes))

    @app.delete("/reminders/{reminder_id}", status_code=204, tags=["reminders"],
                dependencies=auth, responses=errors)
    def delete_reminder(reminder_id: int) -> Response:
        """Delete a reminder, its schedule, pending deliveries and history."""
        belfry.delete(reminder_id)
        return Response(status_code=204)

    @app.post("/reminders/{reminder_id}/pause", tags=["reminders"], dependencies=auth,
              responses=errors)
    def pause_reminder(reminder_id: int) -> Reminder:
        """Stop deliveries until resumed."""
        return Reminder(**belfry.pause(reminder_id))

    @app.post("/reminders/{reminder_id}/resume", tags=["reminders"], dependencies=auth,
              responses=errors)
    def resume_reminder(reminder_id: int) -> Reminder:
        """Deliver again (occurrences missed while paused are skipped)."""
        return Reminder(**belfry.resume(reminder_id))

    @app.post("/reminders/{reminder_id}/snooze", tags=["reminders"], dependencies=auth,
              responses=errors)
    def snooze_reminder(reminder_id: int, body: SnoozeRequest) -> Reminder:
        """Remind again later (a one-off moves; a recurring one gets one extra delivery)."""
        return Reminder(**belfry.snooze(reminder_id, for_=body.for_, until=body.until))

    @app.post("/reminders/{reminder_id}/send", tags=["reminders"], dependencies=auth,
              responses=errors)
    def send_reminder(reminder_id: int) -> Reminder:
        """Deliver once more, right now."""
        return Reminder(**belfry.send_now(reminder_id))

    @app.post("/reminders/{reminder_id}/retry", tags=["reminders"], dependencies=auth,
              responses=errors)
    def retry_reminder(reminder_id: int) -> Reminder:
        """Requeue the reminder's dead-lettered deliveries (after fixing their cause)."""
        return Reminder(**belfry.retry_dead(reminder_id))

    @app.get("/reminders/{reminder_id}/deliveries", tags=["reminders"], dependencies=auth,
             responses=errors)
    def list_deliveries(
        reminder_id: int,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    ) -> list[Delivery]:
        """Delivery attempts of a reminder, newest first."""
        return [Delivery(**d) for d in belfry.deliveries(reminder_id, limit)]

    return app
