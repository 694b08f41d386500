"""Tasks for `make demo` (the database path comes from $HONKER_DEMO_DB)."""

from __future__ import annotations

import os

import honker

db = honker.open(os.environ["HONKER_DEMO_DB"])
emails = db.queue("emails")


@emails.task(name="send_receipt", retries=3, retry_delay_s=1)
def send_receipt(order_id: int, to: str) -> dict[str, object]:
    """Pretend to e-mail a receipt; the return value is stored as the task result."""
    print(f"  [worker pid {os.getpid()}] sending receipt for order {order_id} to {to}", flush=True)
    return {"order_id": order_id, "to": to, "status": "sent"}
