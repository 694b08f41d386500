"""belfry: a recurring-reminder service built on honker.

Reminders live in your SQLite file next to honker's tables: recurring reminders are honker
schedules, every delivery is a honker job posted to an ntfy server, with retries, backoff
and a dead-letter table for errors that retrying cannot fix. ``belfry serve`` runs the
HTTP API, the delivery workers and the scheduler in one process; ``belfry`` on the command
line works on the database directly or against a running server.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
