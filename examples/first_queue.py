"""The seeds' "Your first queue": open a database, enqueue a job, claim it, ack it."""

import honker

db = honker.open("app.db")  # opens or creates the file
q = db.queue("greetings")

q.enqueue({"name": "world"})

job = q.claim_one("worker-1")
print(f"hello, {job.payload['name']}!")
job.ack()
