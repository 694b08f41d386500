"""honker: queues, tasks, streams, pub/sub and cron inside your application's SQLite file.

``honker.open("app.db")`` returns a :class:`Database`. Jobs, events and notifications are
rows in the same file as your data, written inside your transactions, and workers in any
process wake within about a millisecond of the commit.
"""

from ._database import Database, open
from ._database import Transaction as Transaction
from ._errors import (
    JobCancelled,
    LeadershipLost,
    LockHeld,
    Retryable,
    Snooze,
    TaskCancelled,
    TaskFailed,
    UnknownTaskError,
)
from ._extension import EXTENSION_ENTRYPOINT, extension_info, load_extension
from ._jobcontext import JobContext, current_job
from ._sqlfunctions import attach as attach
from ._watcher import UpdateEvents as UpdateEvents
from .notify import Listener, Notification
from .outbox import Outbox
from .queue import Job, Queue
from .retention import Retention
from .scheduler import CronSchedule, Scheduler, crontab, every_s
from .stream import Event, Stream
from .tasks import TaskResult, registry, run_workers

__version__ = "0.4.0"

__all__ = [
    "EXTENSION_ENTRYPOINT",
    "CronSchedule",
    "Database",
    "Event",
    "Job",
    "JobCancelled",
    "JobContext",
    "LeadershipLost",
    "Listener",
    "LockHeld",
    "Notification",
    "Outbox",
    "Queue",
    "Retention",
    "Retryable",
    "Scheduler",
    "Snooze",
    "Stream",
    "TaskCancelled",
    "TaskFailed",
    "TaskResult",
    "UnknownTaskError",
    "crontab",
    "current_job",
    "every_s",
    "extension_info",
    "load_extension",
    "open",
    "registry",
    "run_workers",
]

# Also importable, though not in __all__ (like the reference): Transaction, UpdateEvents,
# attach (re-exported explicitly with "as" so type checkers accept honker.Transaction).
