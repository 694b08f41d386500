"""The recipe's enqueue helper: the job joins whatever transaction the connection is in."""

from __future__ import annotations

import json
from typing import Any

from django.db import connections


def enqueue(
    queue: str,
    payload: Any,
    *,
    delay: int | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    using: str = "default",
) -> int:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT honker_enqueue(%s, %s, NULL, %s, %s, %s, NULL)",
            [queue, json.dumps(payload), delay, priority, max_attempts],
        )
        job_id: int = cursor.fetchone()[0]
    return job_id
