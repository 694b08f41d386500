"""End-to-end demo of honker on a temporary database file (run with `make demo`).

1. A listener in another OS process is woken by a committed notification and reports the
   measured wake latency.
2. A notification inside a rolled-back transaction never arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import honker

LISTENER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import honker

    async def main():
        db = honker.open(sys.argv[1])
        listener = db.listen("orders")
        print("READY", flush=True)
        async for note in listener:
            received = time.monotonic()
            print(json.dumps({"payload": note.payload, "received": received}), flush=True)
            if note.payload.get("last"):
                break

    asyncio.run(main())
    """
)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="honker-demo-") as tmp:
        path = os.path.join(tmp, "app.db")
        db = honker.open(path)
        with db.transaction() as tx:
            tx.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        print(f"database: {path}")

        child = subprocess.Popen(
            [sys.executable, "-c", LISTENER, path], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        print(f"listener process {child.pid} is waiting on channel 'orders'")

        # A notification whose transaction rolls back: the order and the note vanish together.
        try:
            with db.transaction() as tx:
                tx.execute("INSERT INTO orders (id, total) VALUES (1, 500)")
                tx.notify("orders", {"order_id": 1, "last": False})
                raise RuntimeError("payment declined")
        except RuntimeError as exc:
            print(f"order 1 rolled back ({exc}): its notification is never delivered")

        # Committed notifications: the listener wakes within about a millisecond.
        latencies = []
        for order_id in range(2, 12):
            time.sleep(0.02)
            last = order_id == 11
            with db.transaction() as tx:
                tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", [order_id, 100])
                sent = time.monotonic()
                tx.notify("orders", {"order_id": order_id, "sent": sent, "last": last})
            message = json.loads(child.stdout.readline())
            payload = message["payload"]
            assert payload["order_id"] == order_id, payload  # order 1 never shows up
            latencies.append((message["received"] - payload["sent"]) * 1000)
        child.wait(timeout=10)

        latencies.sort()
        print("listener received orders 2..11 and never order 1")
        print(
            f"cross-process wake latency over {len(latencies)} commits: "
            f"min {latencies[0]:.2f} ms, median {latencies[len(latencies) // 2]:.2f} ms, "
            f"max {latencies[-1]:.2f} ms"
        )
        rows = db.query("SELECT COUNT(*) AS n FROM orders")
        print(f"orders table holds {rows[0]['n']} committed orders")
        db.close()
    print("demo finished OK")


if __name__ == "__main__":
    main()
