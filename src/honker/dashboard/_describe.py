"""What the dashboard shows of a job row: its task, its arguments and its last error.

A task's job stores its call as ``{"__honker_task__": {"task": name, "args": [...],
"kwargs": {...}}}``; lists show the task name and the call's arguments instead of that
envelope. A worker records a failure as ``"<message>\\n<traceback>"``; lists show the
exception type and message, the job page the traceback as well.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from honker.tasks import ENVELOPE_KEY

_TRACEBACK_HEAD = "Traceback (most recent call last):"
# The last line of a traceback: ``module.ExcType: message`` or just ``ExcType``.
_EXC_LINE = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::\s?(.*))?")
# Without a traceback, ``Name: message`` counts as an exception only when the name looks
# like one (``TimeoutError: ...``), not for any ``Note: ...``.
_EXC_NAME = re.compile(
    r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning|Cancelled|"
    r"Timeout|Refused|Failed|Failure)"
)


@dataclass(frozen=True)
class ErrorInfo:
    """A recorded error split up: exception type (if known), message, traceback (if any)."""

    type: str | None
    message: str
    traceback: str | None

    @property
    def headline(self) -> str:
        """``Type: first line of the message`` (or the first line alone)."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        if self.type is None:
            return first
        return f"{self.type}: {first}" if first else self.type


def describe_error(text: str | None) -> ErrorInfo | None:
    """Split a job's ``last_error`` into type, message and traceback (``None`` if empty)."""
    if not text or not text.strip():
        return None
    at = text.find(_TRACEBACK_HEAD)
    if at < 0:
        first, _, rest = text.strip().partition("\n")
        name, sep, message = first.partition(":")
        if sep and _EXC_NAME.fullmatch(name.strip()):
            body = message.strip() + ("\n" + rest if rest else "")
            return ErrorInfo(name.strip(), body, None)
        return ErrorInfo(None, text.strip(), None)
    head, tb = text[:at].strip(), text[at:].rstrip()
    exc_type, tail = None, ""
    for line in reversed(tb.splitlines()):
        if line and not line[0].isspace() and line != _TRACEBACK_HEAD:
            match = _EXC_LINE.fullmatch(line)
            if match:
                exc_type, tail = match.group(1), (match.group(2) or "")
            break
    return ErrorInfo(exc_type, head or tail, tb)


@dataclass(frozen=True)
class TaskCall:
    """A task job's call: the task name and its arguments as JSON values."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]

    @property
    def signature(self) -> str:
        """The arguments as ``("a", 2, retries=3)``."""
        parts = [_compact(a) for a in self.args]
        parts += [f"{k}={_compact(v)}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"

    @property
    def arguments_json(self) -> str:
        """``{"args": [...], "kwargs": {...}}`` indented, for the job page."""
        return json.dumps({"args": self.args, "kwargs": self.kwargs}, indent=2, ensure_ascii=False)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def task_call(raw_payload: Any) -> TaskCall | None:
    """The task call in a stored payload, or ``None`` for a raw (non-task) payload."""
    if not isinstance(raw_payload, (str, bytes)):
        return None
    try:
        payload = json.loads(raw_payload)
    except ValueError:
        return None
    envelope = payload.get(ENVELOPE_KEY) if isinstance(payload, dict) else None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("task"), str):
        return None
    args = envelope.get("args")
    kwargs = envelope.get("kwargs")
    return TaskCall(
        envelope["task"],
        args if isinstance(args, list) else [],
        kwargs if isinstance(kwargs, dict) else {},
    )


def describe_job(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` (a row of ``list_jobs``/``find_job``) plus ``call`` and ``error`` entries."""
    return {
        **job,
        "call": task_call(job.get("payload")),
        "error": describe_error(job.get("last_error")),
    }
