"""Validation of reminder fields, shared by the CLI, the HTTP API and the store.

Each ``check_*`` function returns the normalised value or raises
:class:`~belfry.errors.InvalidInput` with a message naming the field, so the CLI and the
API report the same clear error for the same mistake.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from honker import cron as honker_cron
from honker import every_s

from . import timeutil
from .errors import InvalidInput

#: ntfy's topic rule.
TOPIC_RE = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
#: ntfy refuses (or turns into attachments) message bodies larger than this.
MAX_MESSAGE_BYTES = 4096
MAX_TITLE_CHARS = 1024
MAX_TAGS = 32
MAX_CLICK_CHARS = 2048

PRIORITY_NAMES = {1: "min", 2: "low", 3: "default", 4: "high", 5: "max"}
_PRIORITY_WORDS = {name: level for level, name in PRIORITY_NAMES.items()} | {"urgent": 5}
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

Kind = Literal["once", "cron", "every"]
TIMING_FIELDS = ("at", "in", "cron", "every")
CONTENT_FIELDS = ("message", "title", "tags", "priority", "topic", "click")


def message_bytes(message: str) -> int:
    """Size of ``message`` on the wire (UTF-8)."""
    return len(message.encode("utf-8"))


def check_message(value: Any) -> str:
    """A non-blank message of at most 4,096 UTF-8 bytes."""
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field="message")
    if not value.strip():
        raise InvalidInput("must not be empty", field="message")
    size = message_bytes(value)
    if size > MAX_MESSAGE_BYTES:
        raise InvalidInput(
            f"is {size} bytes; ntfy accepts at most {MAX_MESSAGE_BYTES} bytes", field="message"
        )
    return value


def check_title(value: Any) -> str | None:
    """An optional one-line title (``None`` or blank: no title)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field="title")
    text = str(value).strip()
    if not text:
        return None
    if _CONTROL_RE.search(text):
        raise InvalidInput("must be a single line without control characters", field="title")
    if len(text) > MAX_TITLE_CHARS:
        raise InvalidInput(f"is longer than {MAX_TITLE_CHARS} characters", field="title")
    return text


def check_tags(value: Any) -> list[str]:
    """A list of tags (a comma-separated string is split); no commas inside a tag."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        raise InvalidInput("must be a list of strings", field="tags")
    tags: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidInput("must be a list of strings", field="tags")
        tag = item.strip()
        if not tag:
            continue
        if "," in tag or _CONTROL_RE.search(tag):
            raise InvalidInput(f"{tag!r}: a tag cannot contain commas or newlines", field="tags")
        if len(tag) > 128:
            raise InvalidInput(f"{tag[:20]!r}...: a tag is at most 128 characters", field="tags")
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", field="tags")
    return tags


def check_priority(value: Any) -> int:
    """1-5, or min/low/default/high/max (and ntfy's ``urgent``); ``None`` → 3."""
    if value is None:
        return 3
    if isinstance(value, bool):
        raise InvalidInput(_priority_help(value), field="priority")
    if isinstance(value, int):
        if 1 <= value <= 5:
            return value
        raise InvalidInput(_priority_help(value), field="priority")
    if isinstance(value, str):
        word = value.strip().lower()
        if word.isdigit() and 1 <= int(word) <= 5:
            return int(word)
        if word in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[word]
    raise InvalidInput(_priority_help(value), field="priority")


def _priority_help(value: Any) -> str:
    return f"must be 1-5 or one of min, low, default, high, max (got {value!r})"


def check_topic(value: Any, default: str | None = None) -> str:
    """An ntfy topic (``^[-_A-Za-z0-9]{1,64}$``); ``None`` takes ``default``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise InvalidInput(
                "no topic given and no default topic configured "
                "(pass --topic or set BELFRY_TOPIC)",
                field="topic",
            )
        value = default
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field="topic")
    text = str(value).strip()
    if not TOPIC_RE.fullmatch(text):
        raise InvalidInput(
            f"{text!r} is not a valid ntfy topic (1-64 characters from A-Z a-z 0-9 _ -)",
            field="topic",
        )
    return text


def check_click(value: Any) -> str | None:
    """An optional URL opened when the notification is tapped (must have a scheme)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field="click")
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_CLICK_CHARS or not _URI_RE.fullmatch(text):
        raise InvalidInput(
            f"{text[:60]!r} is not a URL (e.g. https://example.com/page)", field="click"
        )
    return text


def check_tz(value: Any, default: str) -> str:
    """An IANA zone name; ``None`` takes ``default``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field="tz")
    return timeutil.zone(value).key


def check_cron(value: Any, tz: str, now: float) -> str:
    """A 5- or 6-field cron expression that has a next occurrence in ``tz``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("must be a cron expression such as '0 9 * * 1-5'", field="cron")
    expr = " ".join(value.split())
    if expr.startswith("@"):
        raise InvalidInput(f"{expr!r}: use 'every' for intervals (e.g. every=1h)", field="cron")
    try:
        honker_cron.next_after_unix(expr, int(now), timeutil.zone(tz))
    except ValueError as exc:
        raise InvalidInput(str(exc), field="cron") from None
    return expr


@dataclass(frozen=True)
class Timing:
    """When a reminder fires: once at ``due_at``, or on a honker schedule ``expr``."""

    kind: Kind
    tz: str
    due_at: int | None = None
    expr: str | None = None
    every_s: int | None = None

    @property
    def recurring(self) -> bool:
        """``True`` for cron and interval reminders (honker schedules)."""
        return self.kind != "once"


def check_timing(data: Mapping[str, Any], tz: str, now: float) -> Timing:
    """Exactly one of ``at``, ``in``, ``cron``, ``every`` → a :class:`Timing` in ``tz``."""
    given = [name for name in TIMING_FIELDS if data.get(name) is not None]
    if len(given) != 1:
        listed = ", ".join(given) if given else "none"
        raise InvalidInput(
            f"give exactly one of at, in, cron, every (got {listed})", field="schedule"
        )
    name = given[0]
    value = data[name]
    if name == "at":
        if not isinstance(value, str):
            raise InvalidInput("must be a string such as 2026-12-01T09:00", field="at")
        return Timing("once", tz, due_at=timeutil.parse_when(value, tz, now, field="at"))
    if name == "in":
        if not isinstance(value, str):
            raise InvalidInput("must be a duration such as 10m", field="in")
        seconds = timeutil.parse_duration(value, field="in")
        return Timing("once", tz, due_at=math.ceil(now) + seconds)
    if name == "cron":
        return Timing("cron", tz, expr=check_cron(value, tz, now))
    if not isinstance(value, str):
        raise InvalidInput("must be a duration such as 1h", field="every")
    seconds = timeutil.parse_duration(value, field="every", allow_zero=False)
    return Timing("every", tz, expr=every_s(seconds).expr, every_s=seconds)


def describe_timing(
    kind: str, expr: str | None, every: int | None, due_at: int | None, tz: str
) -> str:
    """Human summary: ``every 1h``, ``cron 0 9 * * 1-5 (Europe/Paris)``, ``at 2026-…``."""
    if kind == "every" and every is not None:
        return f"every {timeutil.format_duration(every)}"
    if kind == "cron":
        return f"cron {expr} ({tz})"
    return f"at {timeutil.iso(due_at, tz)}"
