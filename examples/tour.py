"""The seeds' Python quick start, end to end in one script on ./app.db.

Queue with atomic enqueue, a worker loop with retry, Huey-style tasks with results,
a durable stream with a named consumer, notify/listen, and the scheduler.
"""

import asyncio
import os
import time

import honker
from honker import Scheduler, every_s

if os.path.exists("app.db"):
    os.remove("app.db")

db = honker.open("app.db")
emails = db.queue("emails")

# -- Queue: the enqueue commits with the business write -------------------------------
with db.transaction() as tx:
    tx.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, user_id INTEGER)")
with db.transaction() as tx:
    tx.execute("INSERT INTO orders (user_id) VALUES (?)", [42])
    emails.enqueue({"to": "alice@example.com"}, tx=tx)  # atomic with order

sent = []


def send(payload):
    if payload["to"].startswith("bounce"):
        raise ConnectionError("mailbox unavailable")
    sent.append(payload["to"])


async def email_worker():
    async for job in emails.claim("worker-1"):  # wakes on updates or due deadlines
        try:
            send(job.payload)
            job.ack()
        except Exception as e:
            job.retry(delay_s=60, error=str(e))
        return  # one job is enough for this tour; a real worker loops forever


asyncio.run(asyncio.wait_for(email_worker(), 5))
print("emails sent:", sent)

# -- Tasks ------------------------------------------------------------------------------
q = db.queue("default")


@q.task(retries=3, timeout_s=30)
def send_email(to: str, subject: str) -> dict:
    return {"sent_at": time.time(), "to": to, "subject": subject}


async def run_tasks_until(result):
    stop = asyncio.Event()
    workers = asyncio.create_task(db.run_workers(concurrency=2, stop_event=stop))
    value = await result.aget(timeout=10)
    stop.set()
    await workers
    return value


r = send_email("alice@example.com", "Hi")  # enqueues, returns a TaskResult
print("task result:", asyncio.run(run_tasks_until(r))["subject"])

# -- Stream: durable pub/sub with per-consumer offsets --------------------------------------
stream = db.stream("user-events")
with db.transaction() as tx:
    tx.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    tx.execute("INSERT INTO users (id, name) VALUES (?, ?)", [7, "Bob"])
with db.transaction() as tx:
    tx.execute("UPDATE users SET name=? WHERE id=?", ["Robert", 7])
    stream.publish({"user_id": 7, "change": "name"}, tx=tx)


async def dashboard_consumer():
    async for event in stream.subscribe(consumer="dashboard"):
        print("stream event:", event.payload)
        stream.save_offset("dashboard", event.offset)
        return


asyncio.run(dashboard_consumer())

# -- Notify: ephemeral pub/sub ----------------------------------------------------------------


async def listen_once():
    listener = db.listen("orders")
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders (id, user_id) VALUES (?, ?)", [99, 1])
        tx.notify("orders", {"id": 99})
    async for n in listener:
        print("notification:", n.channel, n.payload)
        return


asyncio.run(listen_once())

# -- Scheduler -----------------------------------------------------------------------------
scheduler = Scheduler(db)
scheduler.add(name="heartbeat", queue="health", schedule=every_s(1), payload={"ping": True})


async def one_beat():
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    async for job in db.queue("health").claim("health-worker"):
        print("scheduled job:", job.payload)
        job.ack()
        break
    stop.set()
    await runner


asyncio.run(one_beat())
db.close()
print("tour finished")
