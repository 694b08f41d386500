"""End-to-end demo of honker on ./demo.db, left behind to open in the dashboard.

Run with `make demo` (or `python examples/demo.py [PATH]`; PATH defaults to demo.db in the
current directory and is recreated on every run).

1. A listener in another OS process is woken by a committed notification and reports the
   measured wake latency; a notification inside a rolled-back transaction never arrives.
2. An order and its receipt task commit in one transaction; a worker process started with
   `python -m honker worker` runs the task and the caller reads its result. An order that
   rolls back never produces a task.
3. A schedule fires a job every second (leader-elected scheduler).
4. A few stream events, a dead-lettered job and pending jobs are left in the file, so
   `python -m honker dashboard demo.db` has something to show.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
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


def fresh_database(path: str) -> honker.Database:
    """Delete ``path`` and its WAL/SHM/journal files left by an earlier run, then open it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return honker.open(path)


def main() -> None:
    path = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "demo.db")
    db = fresh_database(path)
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
    tasks_and_schedules(path)
    leave_something_to_look_at(path)
    print("demo finished OK")


def tasks_and_schedules(path: str) -> None:
    """Part 2 and 3: transactional task enqueue, a worker process, a schedule."""
    env = dict(os.environ, HONKER_DEMO_DB=path)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    os.environ["HONKER_DEMO_DB"] = path
    sys.path.insert(0, here)
    import demo_tasks  # registers send_receipt on this process's registry too

    db = demo_tasks.db
    print()
    print("starting `python -m honker worker demo_tasks:db` in another process")
    worker = subprocess.Popen(
        [sys.executable, "-m", "honker", "worker", "demo_tasks:db", "--concurrency", "2"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    print(" ", worker.stdout.readline().strip())
    try:
        with db.transaction() as tx:
            tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", [100, 4200])
            result = demo_tasks.send_receipt.apply_async((100, "alice@example.com"), tx=tx)
        try:
            with db.transaction() as tx:
                tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", [101, 999])
                demo_tasks.send_receipt.apply_async((101, "mallory@example.com"), tx=tx)
                raise RuntimeError("card declined")
        except RuntimeError as exc:
            print(f"order 101 rolled back ({exc}): its task was never enqueued")
        started = time.monotonic()
        value = result.get(timeout=20)
        print(" ", worker.stdout.readline().strip())
        print(
            f"task result for order 100 after {1000 * (time.monotonic() - started):.0f} ms: {value}"
        )
        pending = db.query("SELECT COUNT(*) AS n FROM _honker_live")[0]["n"]
        print(f"jobs left in the queue: {pending} (order 101 never produced one)")

        print()
        print("scheduling a heartbeat every second; the scheduler enqueues, a claim loop runs")
        scheduler = honker.Scheduler(db)
        scheduler.add(name="heartbeat", queue="health", schedule=honker.every_s(1))
        asyncio.run(run_schedule(db, scheduler))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        print(" ", worker.stdout.read().strip().splitlines()[-1])
        db.close()


async def run_schedule(db: honker.Database, scheduler: honker.Scheduler) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    beats = 0
    async for job in db.queue("health").claim("health-worker"):
        beats += 1
        print(f"  heartbeat job {job.id} fired at {time.strftime('%H:%M:%S')}")
        job.ack()
        if beats == 3:
            break
    stop.set()
    await runner


def leave_something_to_look_at(path: str) -> None:
    """Part 4: stream events, a dead letter and pending jobs for the dashboard to show."""
    with honker.open(path) as db:
        events = db.stream("order-events")
        with db.transaction() as tx:
            for order_id in (2, 3, 100):
                events.publish({"order_id": order_id, "event": "paid"}, key=str(order_id), tx=tx)
        events.save_offset("mailer", 2)
        webhooks = db.queue("webhooks", max_attempts=3)
        for order_id in (2, 3, 100):
            webhooks.enqueue({"url": "https://shop.example/hooks/paid", "order_id": order_id})
        webhooks.enqueue({"url": "https://shop.example/hooks/daily"}, delay=3600)
        job = webhooks.claim_one("demo-worker")
        assert job is not None
        job.fail("HTTP 410 Gone from https://shop.example/hooks/paid (endpoint removed)")
        stats = webhooks.stats()
        print()
        print(
            f"left in {os.path.basename(path)} for the dashboard: 3 events on stream "
            f"'order-events'; queue 'webhooks' with {stats['pending']} pending, "
            f"{stats['delayed']} delayed and {stats['dead']} dead job(s)"
        )


if __name__ == "__main__":
    main()
