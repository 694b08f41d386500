"""Self-check: the two reference peers interoperate on one .db file.

    python tests/interop/selfcheck.py [--keep] [--cache-dir DIR]

Fetches the peers (fetch_reference.ensure_reference), then runs each scenario
on a fresh database file in a temporary directory, driving the loadable
extension (ext_peer.py) and the Node binding (node_peer.js) against each
other.  It does not touch src/honker.  Prints one line per check and a final
"N passed, N failed" line; exits 1 on any failure (2 if a peer is missing).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_reference import ensure_reference
from peers import ExtPeer, NodePeer, PeerError, PeerUnavailable

P = TypeVar("P", ExtPeer, NodePeer)
Check = Callable[[ExtPeer, NodePeer], str | None]
CHECKS: list[tuple[str, Check]] = []


def check(fn: Check) -> Check:
    CHECKS.append((fn.__name__, fn))
    return fn


def expect(cond: object, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


@check
def ext_enqueue_node_claim_ack(ext: ExtPeer, node: NodePeer) -> str:
    jid = ext("enqueue", queue="emails", payload={"to": "alice"}, priority=3)
    jobs = node("claim", queue="emails", worker="node-w", n=5, visibility=60)
    expect(len(jobs) == 1 and jobs[0]["id"] == jid, f"claimed {jobs}")
    expect(jobs[0]["payload"] == '{"to": "alice"}', "payload text must round-trip verbatim")
    expect(json.loads(jobs[0]["payload"]) == {"to": "alice"}, "payload decode")
    expect(jobs[0]["attempts"] == 1 and jobs[0]["worker_id"] == "node-w", f"{jobs[0]}")
    expect(node("ack", id=jid, worker="ext-w") == 0, "ack by the wrong worker must fail")
    expect(node("ack", id=jid, worker="node-w") == 1, "ack")
    left = ext("sql", sql="SELECT count(*) AS n FROM _honker_live WHERE queue='emails'")
    expect(left == [{"n": 0}], f"live rows left: {left}")
    return f"job {jid}"


@check
def node_enqueue_ext_claim_retry_fail(ext: ExtPeer, node: NodePeer) -> str:
    jid = node("enqueue", queue="work", payload={"n": 1}, max_attempts=2)
    [job] = ext("claim", queue="work", worker="ext-w")
    expect(job["id"] == jid and job["payload"] == '{"n":1}', f"{job}")
    expect(ext("retry", id=jid, worker="ext-w", delay=0, error="boom") == 1, "retry")
    [job] = node("claim", queue="work", worker="node-w")
    expect(job["attempts"] == 2, f"attempts after 2nd claim: {job}")
    expect(node("retry", id=jid, worker="node-w", delay=0, error="final") == 1, "retry->dead")
    dead = ext("sql", sql="SELECT id, last_error, attempts FROM _honker_dead WHERE id=?",
               params=[jid])
    expect(dead == [{"id": jid, "last_error": "final", "attempts": 2}], f"dead: {dead}")
    return f"job {jid} dead-lettered"


@check
def node_notify_wakes_ext_listen(ext: ExtPeer, node: NodePeer) -> str:
    out = []
    for mode in ("watcher", "poll"):
        with ext.listen("orders", timeout=10, count=2, mode=mode) as w:
            t0 = time.monotonic()
            node("notify", channel="orders", payload={"id": 1})
            node("notify", channel="other", payload={"id": 0})
            node("notify", channel="orders", payload="hello")  # not JSON -> via SQL verbatim
        resp = w.wait()
        dt = time.monotonic() - t0
        rows = resp["result"]
        expect([r["payload"] for r in rows] == ['{"id":1}', "hello"], f"{mode}: {rows}")
        expect(resp["wake"] == mode and resp["wakes"] >= 1, f"{resp}")
        out.append(f"{mode} {dt * 1000:.0f}ms")
    return ", ".join(out)


@check
def ext_notify_wakes_node_listen(ext: ExtPeer, node: NodePeer) -> str:
    out = []
    for mode in ("events", "poll"):
        with node.listen("jobs", timeout=10, mode=mode) as w:
            t0 = time.monotonic()
            nid = ext("notify", channel="jobs", payload={"k": "v"})
        rows = w.result()
        dt = time.monotonic() - t0
        expect(len(rows) == 1 and rows[0]["id"] == nid and rows[0]["payload"] == '{"k": "v"}',
               f"{mode}: {rows}")
        out.append(f"{mode} {dt * 1000:.0f}ms")
    return ", ".join(out)


@check
def listen_starts_at_current_max(ext: ExtPeer, node: NodePeer) -> str:
    ext("notify", channel="replay", payload=1)
    node("notify", channel="replay", payload=2)
    for peer in (ext, node):
        with peer.listen("replay", timeout=1.0) as w:
            pass
        try:
            w.result()
        except PeerError as e:
            expect(e.error == "timeout", f"{peer.kind}: {e}")
        else:
            raise AssertionError(f"{peer.kind} listener replayed old notifications")
    return "no replay on either side"


@check
def streams_both_ways(ext: ExtPeer, node: NodePeer) -> str:
    o1 = ext("publish", topic="t", payload={"i": 1}, key="k1")
    o2 = node("publish", topic="t", payload={"i": 2})
    o3 = ext("publish", topic="u", payload={"i": 3})
    o4 = node("publish", topic="t", payload={"i": 4})
    expect(o1 < o2 < o3 < o4, f"offsets {o1, o2, o3, o4}")
    a = ext("read_since", topic="t", offset=0, limit=10)
    b = node("read_since", topic="t", offset=0, limit=10)
    expect(a == b, f"ext {a} != node {b}")
    expect([e["offset"] for e in a] == [o1, o2, o4], f"{a}")
    expect(a[0]["key"] == "k1" and a[1]["key"] is None, f"keys {a}")
    expect(node("read_since", topic="t", offset=o2, limit=1)[0]["offset"] == o4, "offset/limit")
    expect(node("save_offset", consumer="c", topic="t", offset=o2) == 1, "save")
    expect(ext("save_offset", consumer="c", topic="t", offset=o1) == 0, "never rewinds")
    expect(ext("get_offset", consumer="c", topic="t") == o2, "get_offset")
    return f"offsets {o1},{o2},{o3},{o4}"


@check
def scheduler_register_ext_tick_node(ext: ExtPeer, node: NodePeer) -> str:
    ext("scheduler_register", name="beat", queue="sched", cron="@every 10s",
        payload={"tick": True}, priority=2, expires_s=None, max_attempts=4)
    [s] = node("scheduler_list")
    expect(s["name"] == "beat" and s["enabled"] is True and s["max_attempts"] == 4, f"{s}")
    fires = node("scheduler_tick", now=s["next_fire_at"] + 10)
    expect([f["fire_at"] for f in fires] == [s["next_fire_at"], s["next_fire_at"] + 10],
           f"fires {fires}")
    jobs = ext("claim", queue="sched", worker="w", n=10)
    expect(sorted(j["id"] for j in jobs) == sorted(f["job_id"] for f in fires), f"{jobs}")
    expect(all(j["payload"] == '{"tick": true}' for j in jobs), f"{jobs}")
    row = node("sql", sql="SELECT max_attempts, priority FROM _honker_live WHERE id=?",
               params=[fires[0]["job_id"]])
    expect(row == [{"max_attempts": 4, "priority": 2}], f"{row}")
    [s2] = ext("scheduler_list")
    expect(s2["next_fire_at"] == s["next_fire_at"] + 20, f"advanced next_fire_at {s2}")
    return f"{len(fires)} fires"


@check
def scheduler_register_node_tick_ext(ext: ExtPeer, node: NodePeer) -> str:
    node("scheduler_register", name="cron", queue="sched2", cron="*/2 * * * * *",
         payload={"c": 1}, max_attempts=None)  # 6-argument form
    [s] = ext("scheduler_list")
    expect(s["next_fire_at"] % 2 == 0 and s["max_attempts"] == 3, f"{s}")
    expect(ext("scheduler_tick", now=s["next_fire_at"] - 1) == [], "nothing due yet")
    fires = ext("scheduler_tick", now=s["next_fire_at"])
    expect(len(fires) == 1 and fires[0]["name"] == "cron", f"{fires}")
    [job] = node("claim", queue="sched2", worker="w")
    expect(job["id"] == fires[0]["job_id"] and job["payload"] == '{"c":1}', f"{job}")
    return "ok"


@check
def locks_rate_limits_results(ext: ExtPeer, node: NodePeer) -> str:
    expect(ext("lock_acquire", name="L", owner="ext", ttl=60) == 1, "ext acquires")
    expect(node("lock_acquire", name="L", owner="node", ttl=60) == 0, "node blocked")
    expect(node("lock_release", name="L", owner="node") == 0, "wrong owner release")
    expect(ext("lock_release", name="L", owner="ext") == 1, "release")
    expect(node("lock_acquire", name="L", owner="node", ttl=60) == 1, "node acquires")
    expect(ext("rate_limit_try", name="R", limit=2, per=3600) == 1, "rl 1")
    expect(node("rate_limit_try", name="R", limit=2, per=3600) == 1, "rl 2")
    expect(ext("rate_limit_try", name="R", limit=2, per=3600) == 0, "rl 3 denied")
    node("result_save", job_id=99, value={"r": [1, 2]}, ttl=0)
    expect(ext("result_get", job_id=99) == '{"r":[1,2]}', "result text")
    expect(node("result_get", job_id=12345) is None, "missing result")
    return "ok"


@check
def cron_agrees(ext: ExtPeer, node: NodePeer) -> str:
    cases = [("0 3 * * *", 0), ("*/15 * * * *", 1_700_000_000), ("@every 90s", 100),
             ("0 12 * * 1", 1_700_000_000), ("@every 1s", 5_000_000_000)]
    for expr, frm in cases:
        a = ext("cron_next_after", {"expr": expr, "from": frm})
        b = node("cron_next_after", {"expr": expr, "from": frm})
        expect(a == b, f"{expr} from {frm}: ext {a} node {b}")
    for bad in ("@daily", "0 0 31 2 *", "@every 0s", "* * * * 7"):
        for peer in (ext, node):
            try:
                peer("cron_next_after", {"expr": bad, "from": 0})
            except PeerError:
                continue
            raise AssertionError(f"{peer.kind} accepted {bad!r}")
    return f"{len(cases)} exprs"


def _schema(peer: ExtPeer) -> list[object]:
    tables = peer("sql", sql="SELECT name FROM sqlite_master WHERE type='table' "
                             "AND name LIKE '\\_honker\\_%' ESCAPE '\\' ORDER BY name")
    out: list[object] = []
    for t in tables:
        name = t["name"]
        out.append(peer("sql", sql="SELECT * FROM pragma_table_info(?)", params=[name]))
        out.append(peer("sql", sql="SELECT name, \"unique\", partial FROM pragma_index_list(?) "
                                   "ORDER BY name", params=[name]))
    return [tables, *out]


@check
def schema_node_open_equals_ext_bootstrap(ext: ExtPeer, node: NodePeer) -> str:
    d = Path(ext.db).parent
    n_db, e_db = d / "schema-node.db", d / "schema-ext.db"
    n_peer, e_peer = _sibling(node, n_db), _sibling(ext, e_db)
    n_peer("sql", sql="SELECT 1 AS x")  # node open() creates + bootstraps everything
    e_peer("bootstrap")
    a, b = _schema(_sibling(ext, n_db)), _schema(e_peer)
    expect(a == b, f"schemas differ:\nnode: {a}\next: {b}")
    return f"{len(b[0])} tables"  # type: ignore[arg-type]


def _sibling(peer: P, db: Path) -> P:
    p = copy.copy(peer)
    p.db = str(db)
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary databases")
    ap.add_argument("-v", dest="verbose", action="store_true", help="print tracebacks")
    ap.add_argument("-k", dest="pattern", default="", help="run checks whose name contains this")
    ns = ap.parse_args(argv)

    t0 = time.monotonic()
    ref = ensure_reference(ns.cache_dir)
    print(f"reference peers ready in {time.monotonic() - t0:.2f}s (fetched={ref.fetched}, "
          f"python={ref.ext_python}, sqlite={ref.ext_python_sqlite_version}, "
          f"node={ref.node_version})")
    tmp = Path(tempfile.mkdtemp(prefix="honker-interop-"))
    passed = failed = 0
    try:
        for name, fn in CHECKS:
            if ns.pattern not in name:
                continue
            case_dir = tmp / name
            case_dir.mkdir()
            db = case_dir / "shared.db"
            try:
                ext, node = ExtPeer(ref, db), NodePeer(ref, db)
            except PeerUnavailable as e:
                print(f"peer unavailable: {e}")
                return 2
            t1 = time.monotonic()
            try:
                # a raw-SQL host must bootstrap: loading the extension only
                # creates _honker_notifications
                ext("bootstrap")
                note = fn(ext, node)
            except (AssertionError, PeerError) as e:
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - t1:.2f}s): {e}")
                if ns.verbose:
                    traceback.print_exc()
            else:
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t1:.2f}s) {note or ''}")
    finally:
        if ns.keep:
            print(f"databases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"selfcheck: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
