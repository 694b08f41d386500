"""honker: queues, tasks, streams, pub/sub and cron inside your application's SQLite file.

``honker.open("app.db")`` returns a :class:`Database`. Jobs, events and notifications are
rows in the same file as your data, written inside your transactions, and workers in any
process wake within about a millisecond of the commit.
"""

from ._database import Database, Transaction, open
from ._errors import LeadershipLost, LockHeld, Retryable, UnknownTaskError
from ._watcher import UpdateEvents
from .notify import Listener, Notification
from .outbox import Outbox
from .queue import Job, Queue
from .scheduler import CronSchedule, Scheduler, crontab, every_s
from .stream import Event, Stream

__version__ = "0.4.0"

__all__ = [
    "CronSchedule",
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
    "Scheduler",
    "Stream",
    "Transaction",
    "UnknownTaskError",
    "UpdateEvents",
    "crontab",
    "every_s",
    "open",
]
