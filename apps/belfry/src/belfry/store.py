"""Reminders and their delivery history, in the same database as honker's tables: a SQLite
file or a PostgreSQL server (``settings.db`` is then a ``postgresql://`` URL).

Layout:

* ``belfry_reminders``: one row per reminder (content, timing, state).
* ``belfry_deliveries``: one row per delivery *attempt* (status, HTTP status, error).
* A one-off reminder is one delayed honker job on queue ``belfry`` (``run_at`` = due
  time), enqueued in the transaction that writes the reminder.
* A recurring reminder is a honker schedule named ``belfry.reminder.<id>`` that enqueues
  a delivery job on queue ``belfry`` at each boundary, evaluated in the reminder's zone.

Each change to a reminder is one transaction: the reminder row, its honker job or
schedule (honker's ``Queue`` and ``Scheduler`` calls take ``tx=``) and the cancellation of
the jobs it supersedes commit together or not at all, so reminders and schedules cannot
drift apart. Every job still carries the reminder id and is checked against the reminder
before anything is sent: a job enqueued (or claimed) before a later change commits must not
deliver the old version.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import honker

from . import timeutil
from ._sql import Dialect
from .config import Settings
from .errors import Conflict, InvalidInput, NotFound
from .reminders import (
    CONTENT_FIELDS,
    PRIORITY_NAMES,
    TIMING_FIELDS,
    Timing,
    check_click,
    check_message,
    check_priority,
    check_tags,
    check_timing,
    check_title,
    check_topic,
    check_tz,
    describe_timing,
)

QUEUE = "belfry"
SCHEDULE_PREFIX = "belfry.reminder."
STATES = ("active", "paused", "done", "failed")
#: Delivery attempts kept per reminder (older ones are pruned as new ones are recorded).
HISTORY_KEEP = 1000
DELIVERY_STATUSES = ("sending", "delivered", "retrying", "dead", "interrupted", "skipped")
#: Triggers: ``once`` (a one-off's due time), ``schedule`` (a recurring boundary),
#: ``snooze`` (a snoozed repeat of a recurring reminder), ``manual`` (``belfry send``).
TRIGGERS = ("once", "schedule", "snooze", "manual")
#: The largest id SQLite can store (a signed 64-bit integer): a bigger one names nothing.
MAX_ID = 2**63 - 1

def schedule_name(reminder_id: int) -> str:
    """The honker schedule of a recurring reminder."""
    return f"{SCHEDULE_PREFIX}{reminder_id}"


def job_payload(reminder_id: int, trigger: str) -> dict[str, Any]:
    """The payload of a delivery job (the reminder is read when the job runs)."""
    return {"reminder_id": reminder_id, "trigger": trigger}


class Belfry:
    """Reminder operations on one honker database (used by the CLI, the API and workers)."""

    def __init__(self, db: honker.Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.queue = db.queue(
            QUEUE,
            visibility_timeout_s=settings.visibility_timeout_s,
            max_attempts=settings.max_attempts,
        )
        self.scheduler = honker.Scheduler(db)
        self.dialect = Dialect(db.engine.kind)
        with db.transaction() as tx:
            for statement in self.dialect.schema:
                tx.execute(statement)

    def sql(self, statement: str) -> str:
        """``statement``, written with ``?`` placeholders, in this database's style."""
        return self.dialect.sql(statement)

    def prune_history(self, tx: honker.Transaction, reminder_id: int) -> None:
        """Keep only the newest :data:`HISTORY_KEEP` attempts of a reminder."""
        tx.execute(
            self.sql(
                "DELETE FROM belfry_deliveries WHERE reminder_id = ? AND id <= ("
                " SELECT id FROM belfry_deliveries WHERE reminder_id = ?"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)"
            ),
            [reminder_id, reminder_id, HISTORY_KEEP],
        )

    @classmethod
    def open(cls, settings: Settings) -> Belfry:
        """Open (or create) ``settings.db`` and the belfry tables in it."""
        return cls(honker.open(settings.db), settings)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # -- reading -------------------------------------------------------------------------
    def _row(self, reminder_id: int) -> dict[str, Any]:
        row = self.row(reminder_id)
        if row is None:
            raise NotFound(f"reminder {reminder_id} not found")
        return row

    def row(self, reminder_id: int) -> dict[str, Any] | None:
        """The raw ``belfry_reminders`` row, or ``None`` (also for an id SQLite cannot hold)."""
        if not -MAX_ID - 1 <= int(reminder_id) <= MAX_ID:
            return None
        statement = self.sql("SELECT * FROM belfry_reminders WHERE id = ?")
        rows = self.db.query(statement, [int(reminder_id)])
        return rows[0] if rows else None

    def get(self, reminder_id: int) -> dict[str, Any]:
        """One reminder as the API shows it (``NotFound`` if there is none)."""
        row = self._row(reminder_id)
        schedules = self._schedules([row])
        last = self._last_deliveries([row["id"]])
        return self._view(row, schedules, last)

    def list_reminders(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every reminder (optionally only those in ``state``), oldest first."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"must be one of {', '.join(STATES)}", field="state")
        if state is None:
            rows = self.db.query(self.sql("SELECT * FROM belfry_reminders ORDER BY id"))
        else:
            rows = self.db.query(
                self.sql("SELECT * FROM belfry_reminders WHERE state = ? ORDER BY id"), [state]
            )
        schedules = self._schedules(rows)
        last = self._last_deliveries([r["id"] for r in rows])
        return [self._view(r, schedules, last) for r in rows]

    def deliveries(self, reminder_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """The reminder's delivery attempts, newest first."""
        row = self._row(reminder_id)
        rows = self.db.query(
            self.sql(
                "SELECT * FROM belfry_deliveries WHERE reminder_id = ? ORDER BY id DESC LIMIT ?"
            ),
            [row["id"], max(1, min(int(limit), 1000))],
        )
        return [_delivery_view(d, row["tz"]) for d in rows]

    def _schedules(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not any(r["kind"] != "once" for r in rows):
            return {}
        return {
            s["name"]: s for s in self.scheduler.list() if s["name"].startswith(SCHEDULE_PREFIX)
        }

    def _last_deliveries(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        rows = self.db.query(
            self.sql(
                "SELECT d.* FROM belfry_deliveries d JOIN ("
                " SELECT reminder_id, MAX(id) AS id FROM belfry_deliveries"
                f" WHERE {self.dialect.in_json_ids('reminder_id')} GROUP BY reminder_id"
                ") m ON m.id = d.id"
            ),
            [json.dumps(ids)],
        )
        return {d["reminder_id"]: d for d in rows}

    def _view(
        self,
        row: dict[str, Any],
        schedules: Mapping[str, dict[str, Any]],
        last: Mapping[int, dict[str, Any]],
    ) -> dict[str, Any]:
        tz = row["tz"]
        next_at: int | None = None
        if row["state"] == "active":
            if row["kind"] == "once":
                next_at = row["due_at"]
            else:
                sched = schedules.get(schedule_name(row["id"]))
                if sched is not None and sched["enabled"]:
                    next_at = int(sched["next_fire_at"])
            snooze = row["snoozed_until"]
            if snooze is not None and (next_at is None or snooze < next_at):
                next_at = snooze
        last_row = last.get(row["id"])
        last_view = None if last_row is None else _delivery_view(last_row, tz)
        return {
            "id": row["id"],
            "message": row["message"],
            "title": row["title"],
            "tags": json.loads(row["tags"]),
            "priority": row["priority"],
            "priority_name": PRIORITY_NAMES.get(row["priority"], str(row["priority"])),
            "topic": row["topic"],
            "click": row["click"],
            "kind": row["kind"],
            "schedule": describe_timing(
                row["kind"], row["expr"], row["every_s"], row["due_at"], tz
            ),
            "cron": row["expr"] if row["kind"] == "cron" else None,
            "every_s": row["every_s"],
            "due_at": timeutil.iso(row["due_at"], tz),
            "tz": tz,
            "state": row["state"],
            "next_at": timeutil.iso(next_at, tz),
            "snoozed_until": timeutil.iso(row["snoozed_until"], tz),
            "created_at": timeutil.iso(row["created_at"], tz),
            "updated_at": timeutil.iso(row["updated_at"], tz),
            "delivered_count": row["delivered_count"],
            "last_delivery": last_view,
            "last_error": (
                last_view["error"]
                if last_view is not None and last_view["status"] in ("dead", "retrying")
                else None
            ),
        }

    # -- writing -------------------------------------------------------------------------
    # Every change below is one transaction: the reminder row, its honker job or schedule,
    # and the jobs it supersedes commit together or not at all. The row is read inside the
    # transaction, so two changes to one reminder cannot interleave.
    def add(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create a reminder from API-shaped ``data``; returns it as :meth:`get` does.

        Keys: ``message`` (required), ``title``, ``tags``, ``priority``, ``topic``,
        ``click``, ``tz`` and exactly one of ``at``, ``in``, ``cron``, ``every``.
        """
        unknown = set(data) - {*CONTENT_FIELDS, *TIMING_FIELDS, "tz"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        now = time.time()
        priority = check_priority(data.get("priority"))
        content: dict[str, Any] = {
            "message": check_message(data.get("message")),
            "title": check_title(data.get("title")),
            "tags": json.dumps(check_tags(data.get("tags"))),
            "priority": priority,
            "topic": check_topic(data.get("topic"), self.settings.topic),
            "click": check_click(data.get("click")),
        }
        tz = check_tz(data.get("tz"), self.settings.default_tz)
        timing = check_timing(data, tz, now)
        with self.db.transaction() as tx:
            rows = tx.query(
                self.sql(
                    "INSERT INTO belfry_reminders (message, title, tags, priority, topic, click, "
                    "kind, expr, every_s, due_at, tz, state, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?) RETURNING id"
                ),
                [
                    *content.values(),
                    timing.kind,
                    timing.expr,
                    timing.every_s,
                    timing.due_at,
                    timing.tz,
                    now,
                    now,
                ],
            )
            reminder_id = int(rows[0]["id"])
            if timing.recurring:
                self._register(tx, reminder_id, timing, priority, paused=False)
            else:
                self._enqueue_once(tx, reminder_id, timing.due_at, priority)
        return self.get(reminder_id)

    def edit(self, reminder_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the given fields. A new ``at``/``in``/``cron``/``every`` replaces the
        timing (and re-arms a delivered or failed reminder); ``tz`` alone re-evaluates a
        cron reminder in the new zone (a one-off keeps its instant)."""
        unknown = set(changes) - {*CONTENT_FIELDS, *TIMING_FIELDS, "tz"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            now = time.time()
            sets: dict[str, Any] = {}
            checks = {
                "message": check_message,
                "title": check_title,
                "priority": check_priority,
                "click": check_click,
            }
            for name, check in checks.items():
                if name in changes:
                    sets[name] = check(changes[name])
            if "tags" in changes:
                sets["tags"] = json.dumps(check_tags(changes["tags"]))
            if "topic" in changes:
                sets["topic"] = check_topic(changes["topic"], row["topic"])
            tz = row["tz"] if changes.get("tz") is None else check_tz(changes["tz"], row["tz"])
            timing: Timing | None = None
            if any(changes.get(name) is not None for name in TIMING_FIELDS):
                timing = check_timing(changes, tz, now)
            elif tz != row["tz"]:
                if row["kind"] == "once":
                    sets["tz"] = tz
                else:
                    timing = check_timing({"cron": row["expr"]} if row["kind"] == "cron" else {
                        "every": f"{row['every_s']}s"}, tz, now)
            if sets or timing is not None:
                self._apply_edit(tx, row, sets, timing, now)
        return self.get(reminder_id)

    def _apply_edit(
        self,
        tx: honker.Transaction,
        row: Mapping[str, Any],
        sets: dict[str, Any],
        timing: Timing | None,
        now: float,
    ) -> None:
        priority = int(sets.get("priority", row["priority"]))
        old_job = row["job_id"]
        name = schedule_name(row["id"])
        if timing is not None:
            sets.update(
                kind=timing.kind,
                expr=timing.expr,
                every_s=timing.every_s,
                due_at=timing.due_at,
                tz=timing.tz,
            )
            state = "paused" if row["state"] == "paused" else "active"
            sets["state"] = state
            if timing.recurring or state == "paused":
                sets["job_id"] = None
            else:
                sets["job_id"] = self._enqueue_once(tx, row["id"], timing.due_at, priority)
        sets["updated_at"] = now
        assignments = ", ".join(f"{column} = ?" for column in sets)
        tx.execute(
            self.sql(f"UPDATE belfry_reminders SET {assignments} WHERE id = ?"),
            [*sets.values(), row["id"]],
        )
        if timing is not None:
            if timing.recurring:
                self._register(tx, row["id"], timing, priority, paused=row["state"] == "paused")
            elif row["kind"] != "once":
                self.scheduler.remove(name, tx=tx)
            if sets["job_id"] != old_job:
                self._cancel(tx, [old_job])
        elif row["kind"] != "once" and "priority" in sets:
            self.scheduler.update(name, priority=priority, tx=tx)

    def pause(self, reminder_id: int) -> dict[str, Any]:
        """Stop deliveries until :meth:`resume` (idempotent)."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            if row["state"] in ("done", "failed"):
                raise Conflict(
                    f"reminder {reminder_id} is {row['state']}; give it a new time with edit "
                    "or snooze instead"
                )
            if row["state"] != "paused":
                tx.execute(
                    self.sql(
                        "UPDATE belfry_reminders SET state = 'paused', job_id = NULL, "
                        "updated_at = ? WHERE id = ?"
                    ),
                    [time.time(), row["id"]],
                )
                if row["kind"] == "once":
                    self._cancel(tx, [row["job_id"]])
                else:
                    self.scheduler.pause(schedule_name(row["id"]), tx=tx)
        return self.get(reminder_id)

    def resume(self, reminder_id: int) -> dict[str, Any]:
        """Deliver again. Occurrences that fell while paused are skipped; a one-off whose
        time passed while paused is delivered at once."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            if row["state"] == "paused":
                self._resume(tx, row)
            elif row["state"] != "active":
                raise Conflict(f"reminder {reminder_id} is {row['state']}, not paused")
        return self.get(reminder_id)

    def _resume(self, tx: honker.Transaction, row: Mapping[str, Any]) -> None:
        now = time.time()
        tx.execute(
            self.sql(
                "UPDATE belfry_reminders SET state = 'active', job_id = NULL, updated_at = ? "
                "WHERE id = ?"
            ),
            [now, row["id"]],
        )
        if row["kind"] == "once":
            due = max(int(row["due_at"] or 0), int(now))
            self._enqueue_once(tx, row["id"], due, row["priority"])
            return
        name = schedule_name(row["id"])
        # Restart the schedule from now: no catch-up of the boundaries missed while paused
        # (honker's resume alone would fire each of them).
        if not self.scheduler.update(name, schedule=row["expr"], tx=tx):
            # Only in a file written before belfry's changes were single transactions.
            self._register(tx, row["id"], _timing_of(row), row["priority"], paused=True)
        self.scheduler.resume(name, tx=tx)

    def snooze(
        self, reminder_id: int, for_: str | None = None, until: str | None = None
    ) -> dict[str, Any]:
        """Remind again later: a one-off moves to the new time (a delivered or failed one
        is re-armed); a recurring reminder gets one extra delivery then, its schedule
        unchanged. Give ``for_`` (a duration) or ``until`` (a time)."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            if (for_ is None) == (until is None):
                raise InvalidInput("give exactly one of for, until", field="snooze")
            if row["state"] == "paused":
                raise Conflict(f"reminder {reminder_id} is paused; resume it first")
            now = time.time()
            if for_ is not None:
                when = math.ceil(now) + timeutil.parse_duration(
                    for_, field="for", allow_zero=False
                )
            else:
                when = timeutil.parse_when(str(until), row["tz"], now, field="until")
            if row["kind"] == "once":
                job_id = self._enqueue_once(tx, row["id"], when, row["priority"])
                tx.execute(
                    self.sql(
                        "UPDATE belfry_reminders SET due_at = ?, job_id = ?, state = 'active', "
                        "updated_at = ? WHERE id = ?"
                    ),
                    [when, job_id, now, row["id"]],
                )
                self._cancel(tx, [row["job_id"]])
            else:
                job_id = self.queue.enqueue(
                    job_payload(row["id"], "snooze"),
                    tx=tx,
                    run_at=when,
                    priority=row["priority"],
                )
                tx.execute(
                    self.sql(
                        "UPDATE belfry_reminders SET snoozed_until = ?, snooze_job_id = ?, "
                        "updated_at = ? WHERE id = ?"
                    ),
                    [when, job_id, now, row["id"]],
                )
                self._cancel(tx, [row["snooze_job_id"]])
        return self.get(reminder_id)

    def send_now(self, reminder_id: int) -> dict[str, Any]:
        """Enqueue one extra delivery right away (also for paused or finished reminders)."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            self.queue.enqueue(job_payload(row["id"], "manual"), tx=tx, priority=row["priority"])
        return self.get(reminder_id)

    def retry_dead(self, reminder_id: int) -> dict[str, Any]:
        """Put the reminder's dead-lettered deliveries back in the queue (fresh budget)."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            jobs = tx.query(
                self.sql(
                    "SELECT DISTINCT job_id FROM belfry_deliveries WHERE reminder_id = ? "
                    "AND status = 'dead'"
                ),
                [row["id"]],
            )
            # The job states are read outside ``tx``. On SQLite this transaction holds the
            # write lock, so no other commit can change them before ours; on PostgreSQL a
            # worker could, and honker's retry_dead then simply finds no dead job to move.
            dead = []
            for item in jobs:
                found = self.queue.find_job(int(item["job_id"]))
                if found is not None and found["state"] == "dead":
                    dead.append(int(item["job_id"]))
            if not dead:
                raise Conflict(f"reminder {reminder_id} has no dead-lettered delivery to retry")
            if row["state"] == "failed":
                tx.execute(
                    self.sql(
                        "UPDATE belfry_reminders SET state = 'active', updated_at = ? WHERE id = ?"
                    ),
                    [time.time(), row["id"]],
                )
            for job_id in dead:
                self.queue.retry_dead(job_id, tx=tx)
        return self.get(reminder_id)

    def delete(self, reminder_id: int) -> None:
        """Delete the reminder, its schedule, its pending deliveries and its history."""
        with self.db.transaction() as tx:
            row = self._locked_row(tx, reminder_id)
            pending = tx.query(
                self.sql(
                    "SELECT DISTINCT job_id FROM belfry_deliveries WHERE reminder_id = ?"
                ), [row["id"]]
            )
            tx.execute(self.sql("DELETE FROM belfry_deliveries WHERE reminder_id = ?"), [row["id"]])
            tx.execute(self.sql("DELETE FROM belfry_reminders WHERE id = ?"), [row["id"]])
            if row["kind"] != "once":
                self.scheduler.remove(schedule_name(row["id"]), tx=tx)
            jobs = {row["job_id"], row["snooze_job_id"], *(p["job_id"] for p in pending)}
            self._cancel(tx, jobs)
            for job_id in jobs - {None}:
                self.queue.discard_dead(int(job_id), tx=tx)

    # -- helpers -------------------------------------------------------------------------
    def _locked_row(self, tx: honker.Transaction, reminder_id: int) -> dict[str, Any]:
        """The reminder row as ``tx`` sees it (``NotFound`` if there is none)."""
        if -MAX_ID - 1 <= int(reminder_id) <= MAX_ID:
            # Locked until ``tx`` ends (PostgreSQL; SQLite's writer holds the file's lock).
            statement = "SELECT * FROM belfry_reminders WHERE id = ?" + self.dialect.for_update
            rows = tx.query(self.sql(statement), [int(reminder_id)])
            if rows:
                return rows[0]
        raise NotFound(f"reminder {reminder_id} not found")

    def _enqueue_once(
        self, tx: honker.Transaction, reminder_id: int, due_at: int | None, priority: Any
    ) -> int:
        job_id = self.queue.enqueue(
            job_payload(reminder_id, "once"), tx=tx, run_at=due_at, priority=int(priority)
        )
        tx.execute(
            self.sql("UPDATE belfry_reminders SET job_id = ? WHERE id = ?"), [job_id, reminder_id]
        )
        return job_id

    def _register(
        self,
        tx: honker.Transaction,
        reminder_id: int,
        timing: Timing,
        priority: int,
        *,
        paused: bool,
    ) -> None:
        name = schedule_name(reminder_id)
        assert timing.expr is not None
        self.scheduler.add(
            name=name,
            queue=QUEUE,
            schedule=timing.expr,
            payload=job_payload(reminder_id, "schedule"),
            priority=priority,
            max_attempts=self.settings.max_attempts,
            tz=timing.tz,
            tx=tx,
        )
        if paused:
            self.scheduler.pause(name, tx=tx)

    def _cancel(self, tx: honker.Transaction, job_ids: Iterable[int | None]) -> None:
        for job_id in {j for j in job_ids if j is not None}:
            self.queue.cancel(int(job_id), tx=tx)


def _timing_of(row: Mapping[str, Any]) -> Timing:
    return Timing(row["kind"], row["tz"], row["due_at"], row["expr"], row["every_s"])


def _delivery_view(row: Mapping[str, Any], tz: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "reminder_id": row["reminder_id"],
        "job_id": row["job_id"],
        "attempt": row["attempt"],
        "trigger": row["trigger"],
        "status": row["status"],
        "http_status": row["http_status"],
        "error": row["error"],
        "ntfy_id": row["ntfy_id"],
        "started_at": timeutil.iso(row["started_at"], tz),
        "finished_at": timeutil.iso(row["finished_at"], tz),
        "retry_at": timeutil.iso(row["retry_at"], tz),
    }
