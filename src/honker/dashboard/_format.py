"""Jinja2 filters of the dashboard: timestamps, durations, JSON, URL path segments.

Every filter returns plain text; the templates' autoescaping turns it into HTML.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote


def url_part(value: Any) -> str:
    """``value`` as one URL path segment (``/`` and every reserved character escaped)."""
    return quote(str(value), safe="")


def abs_time(ts: Any) -> str:
    """Unix seconds as ``2026-11-25 12:00:03 UTC`` (empty text for ``None``)."""
    if ts is None:
        return ""
    try:
        moment = datetime.fromtimestamp(int(ts), tz=UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return str(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(ts: Any) -> str:
    """Unix seconds as an ISO 8601 instant for ``<time datetime=...>``."""
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(int(ts), tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError, TypeError):
        return ""


def duration(seconds: Any) -> str:
    """A non-negative number of seconds as ``3 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds is None:
        return ""
    s = abs(int(seconds))
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def rel_time(ts: Any, now: int) -> str:
    """``ts`` relative to ``now``: ``5 s ago``, ``in 2 min``, ``now``."""
    if ts is None:
        return ""
    try:
        delta = int(ts) - int(now)
    except (TypeError, ValueError):
        return ""
    if delta == 0:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def pretty_json(raw: Any) -> str:
    """Indented JSON of a payload stored as JSON text; other text is returned unchanged."""
    if raw is None:
        return "null"
    if not isinstance(raw, (str, bytes)):
        return json.dumps(raw, indent=2, ensure_ascii=False)
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return json.dumps(value, indent=2, ensure_ascii=False)


def truncate(text: Any, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def error_info(text: Any) -> Any:
    """A recorded error split into type, message and traceback (see ``_describe``)."""
    from ._describe import describe_error

    return describe_error(text if isinstance(text, str) else None)


FILTERS = {
    "error_info": error_info,
    "url_part": url_part,
    "abs_time": abs_time,
    "iso_time": iso_time,
    "duration": duration,
    "rel_time": rel_time,
    "pretty_json": pretty_json,
    "truncate_text": truncate,
}
