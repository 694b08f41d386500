"""Compatibility path: the reference keeps its classes in ``honker._honker``."""

from ._database import Database, Transaction, open
from ._errors import LeadershipLost, LockHeld, Retryable
from .locks import _Lock
from .notify import Listener, Notification
from .outbox import (
    DEFAULT_OUTBOX_BASE_BACKOFF_S,
    DEFAULT_OUTBOX_MAX_ATTEMPTS,
    DEFAULT_OUTBOX_VISIBILITY_TIMEOUT_S,
    Outbox,
)
from .queue import DEFAULT_MAX_ATTEMPTS, DEFAULT_VISIBILITY_TIMEOUT_S, Job, Queue
from .stream import Event, Stream

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_OUTBOX_BASE_BACKOFF_S",
    "DEFAULT_OUTBOX_MAX_ATTEMPTS",
    "DEFAULT_OUTBOX_VISIBILITY_TIMEOUT_S",
    "DEFAULT_VISIBILITY_TIMEOUT_S",
    "Database",
    "Event",
    "Job",
    "LeadershipLost",
    "Listener",
    "LockHeld",
    "Notification",
    "Outbox",
    "Queue",
    "Retryable",
    "Stream",
    "Transaction",
    "_Lock",
    "open",
]
