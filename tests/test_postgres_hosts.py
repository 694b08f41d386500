"""Several "hosts" sharing one PostgreSQL server: workers in their own network namespaces.

Each host is a network namespace joined to the test's own namespace by a veth pair with
its own addresses; the server listens on the test-side addresses only, so every worker
reaches it over a network interface, not loopback. Needs root (``ip netns``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

import honker
import pg
from helpers import python_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

OCTET = 100 + os.getpid() % 100  # distinct subnets for parallel test sessions


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    """Namespaces ``a`` and ``b``; host X reaches the server at ``server_addr[X]``."""

    def __init__(self) -> None:
        tag = f"hk{os.getpid() % 100000}"
        self.ns = {h: f"{tag}{h}" for h in "ab"}
        self.server_addr = {h: f"10.{OCTET}.{i}.1" for i, h in enumerate("ab", 1)}
        self.own_addr = {h: f"10.{OCTET}.{i}.2" for i, h in enumerate("ab", 1)}
        self._links = {h: (f"{tag}{h}0", f"{tag}{h}1") for h in "ab"}

    def up(self) -> None:
        self.down()  # leftovers of an earlier run that was killed (same pid)
        for h in "ab":
            outer, inner = self._links[h]
            _ip("netns", "add", self.ns[h])
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", self.ns[h])
            _ip("addr", "add", f"{self.server_addr[h]}/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", self.ns[h], "addr", "add", f"{self.own_addr[h]}/24", "dev", inner)
            _ip("-n", self.ns[h], "link", "set", inner, "up")
            _ip("-n", self.ns[h], "link", "set", "lo", "up")

    def down(self) -> None:
        for h in "ab":
            subprocess.run(["ip", "netns", "del", self.ns[h]], capture_output=True)
            subprocess.run(["ip", "link", "del", self._links[h][0]], capture_output=True)

    def spawn(self, host: str, code: str, *args: str) -> subprocess.Popen[str]:
        """A Python process inside ``host``'s namespace."""
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns[host],
                sys.executable,
                "-c",
                textwrap.dedent(code),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Hosts, pg.Cluster]]:
    """Two host namespaces and a cluster listening only on their server-side addresses."""
    try:
        pg.check_client()
    except pg.Unavailable as exc:
        if os.environ.get(pg.REQUIRED_ENV) == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    net = Hosts()
    try:
        net.up()
        cluster = pg.Cluster(listen=tuple(net.server_addr.values()))
        try:
            cluster.start()
            yield net, cluster
        finally:
            cluster.stop()
    finally:
        net.down()


def _setup(
    hosts: tuple[Hosts, pg.Cluster],
) -> tuple[Hosts, str, dict[str, str], honker.Database]:
    """A fresh schema: its name, each host's server URL, and a Database on it (via host a)."""
    net, cluster = hosts
    schema = "h_" + uuid.uuid4().hex[:12]
    urls = {h: cluster.url_at(net.server_addr[h]) for h in "ab"}
    return net, schema, urls, honker.open(urls["a"], schema=schema)


# Takes jobs in batches and records each in a business table in the same transaction as
# its ack: a job whose claim lapsed (another host took it over) rolls back, so every job is
# recorded exactly once however workers die.
WORKER = """
import sys, time, honker
url, schema, name = sys.argv[1], sys.argv[2], sys.argv[3]
db = honker.open(url, schema=schema)
q = db.queue("work", visibility_timeout_s=2)

class Lapsed(Exception):
    pass

print("READY", flush=True)
idle_since = None
while True:
    jobs = q.claim_batch(name, 16)
    if not jobs:
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > 4:
            break
        time.sleep(0.05)
        continue
    idle_since = None
    for job in jobs:
        try:
            with db.transaction() as tx:
                tx.execute("INSERT INTO done (n, host) VALUES (%s, %s)", [job.payload, name])
                if not q.ack(job.id, name, tx=tx):
                    raise Lapsed
        except Lapsed:
            pass
db.close()
print("EXIT", flush=True)
"""


def test_four_workers_on_two_hosts_drain_exactly_once_while_one_host_dies(
    hosts: tuple[Hosts, pg.Cluster],
) -> None:
    net, schema, urls, db = _setup(hosts)
    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE done (n INTEGER PRIMARY KEY, host TEXT NOT NULL)")
        q = db.queue("work", visibility_timeout_s=2)
        for start in range(0, 10_000, 500):
            with db.transaction() as tx:
                for n in range(start, start + 500):
                    q.enqueue(n, tx=tx)
        workers = {
            (h, i): net.spawn(h, WORKER, urls[h], schema, f"{h}{i}") for h in "ab" for i in (1, 2)
        }
        try:
            for proc in workers.values():
                assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
            deadline = time.monotonic() + 60
            while db.query("SELECT count(*) AS n FROM done")[0]["n"] < 2000:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.05)
            for (h, _), proc in workers.items():
                if h == "a":
                    os.kill(proc.pid, signal.SIGKILL)  # host a dies mid-batch
            for (h, _), proc in workers.items():
                out, err = proc.communicate(timeout=120)
                if h == "b":
                    assert proc.returncode == 0 and "EXIT" in out, err
        finally:
            for proc in workers.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        counts = db.query("SELECT count(*) AS n, count(DISTINCT n) AS d FROM done")[0]
        assert counts == {"n": 10_000, "d": 10_000}
        by_host = {r["h"] for r in db.query("SELECT left(host, 1) AS h FROM done")}
        assert by_host == {"a", "b"}  # both hosts did work before a died
        assert db.query("SELECT count(*) AS n FROM _honker_live") == [{"n": 0}]
        assert db.query("SELECT count(*) AS n FROM _honker_dead") == [{"n": 0}]
    finally:
        db.close()


LEADER = """
import asyncio, sys, honker
from honker import Scheduler, every_s

async def main():
    db = honker.open(sys.argv[1], schema=sys.argv[2])
    s = Scheduler(db, heartbeat_interval=0.5, lock_ttl=2, owner="host-" + sys.argv[3])
    s.add(name="beat", queue="beat", schedule=every_s(1))
    print("READY", flush=True)
    await s.run(standby=True, exit_when_idle=False)

asyncio.run(main())
"""


def test_scheduler_leader_fails_over_across_hosts_without_double_fire(
    hosts: tuple[Hosts, pg.Cluster],
) -> None:
    """SIGKILL the leader's host: the other host takes over, fires every boundary once."""
    net, schema, urls, db = _setup(hosts)
    procs = {h: net.spawn(h, LEADER, urls[h], schema, h) for h in "ab"}
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"

        def leader_host() -> str | None:
            rows = db.query("SELECT owner FROM _honker_locks WHERE name = 'honker-scheduler'")
            return str(rows[0]["owner"]).removeprefix("host-") if rows else None

        def fires() -> int:
            return int(db.query("SELECT count(*) AS n FROM _honker_live")[0]["n"])

        deadline = time.monotonic() + 30
        while fires() < 3 or leader_host() is None:
            assert time.monotonic() < deadline, "nobody fired"
            time.sleep(0.1)
        victim = leader_host()
        assert victim is not None
        survivor = "b" if victim == "a" else "a"
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].communicate()
        before = fires()
        deadline = time.monotonic() + 30
        while fires() < before + 3 or leader_host() != survivor:
            assert time.monotonic() < deadline, "the surviving host never took over"
            time.sleep(0.1)
        # One job per second boundary over the whole run: a double fire would make about
        # twice as many, boundaries missed during the takeover and not caught up fewer.
        row = db.query(
            "SELECT count(*) AS fired, max(created_at) - min(created_at) + 1 AS span "
            "FROM _honker_live"
        )[0]
        assert row["span"] - 1 <= row["fired"] <= row["span"] + 1, row
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        db.close()
