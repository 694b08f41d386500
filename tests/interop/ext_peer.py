"""Reference-extension test peer: one honker operation per invocation.

Runs under a Python whose ``sqlite3`` can load extensions (Debian's
``/usr/bin/python3``), standard library only, Python >= 3.10 (Debian 12 has 3.11).

    /usr/bin/python3 tests/interop/ext_peer.py --db FILE [--ext SO] OP ['{"json": "args"}']

* ``--ext`` defaults to ``$HONKER_EXT_PATH`` (``fetch_reference.py`` provides it).
* The argument is one JSON object (``-`` = read it from stdin); omitted = ``{}``.
* The connection gets ``PRAGMA journal_mode=WAL`` and ``PRAGMA busy_timeout``
  (``--busy-timeout``, default 5000 ms), then loads the extension, which
  creates ``_honker_notifications`` and registers ``notify()`` / ``honker_*``.
* Loading the extension creates only ``_honker_notifications``: run the
  ``bootstrap`` op (or pass ``--bootstrap``) before using queue/stream/
  scheduler/lock/result tables on a fresh file, as any raw-SQL host must.
* Every write runs inside ``BEGIN IMMEDIATE ... COMMIT`` (``ROLLBACK`` on error).
* Output: exactly one JSON line on stdout,
  ``{"ok": true, "op": OP, "result": ...}`` (exit 0) or
  ``{"ok": false, "op": OP, "error": MSG, "error_type": CLS}`` (exit 1;
  exit 2 for a ``listen`` timeout, exit 64 for usage errors).
  Functions that return JSON text (claim, read_since, scheduler_tick,
  scheduler_list, get_job) are decoded once: ``result`` is the array/object,
  whose ``payload`` members are still the stored payload *text*;
  ``raw`` carries the undecoded text.

Payload-like arguments (``payload``, ``value``): a JSON string is stored
verbatim (it must already be JSON text, e.g. ``"{\\"a\\": 1}"``); any other
JSON value is encoded with ``json.dumps`` (Python defaults, like the Python
binding).

Operations (arguments with defaults in brackets):

    bootstrap
    enqueue          queue, payload, [run_at=null, delay=null, priority=0,
                     max_attempts=3, expires=null]                 -> id
    claim            queue, worker, [n=1, visibility=30]          -> [job, ...]
    ack              id, worker                                    -> 0|1
    ack_batch        ids (list), worker                            -> count
    retry            id, worker, [delay=0, error=""]              -> 0|1
    fail             id, worker, [error=""]                       -> 0|1
    heartbeat        id, worker, extend                            -> 0|1
    cancel           id                                            -> 0|1
    get_job          id                                            -> object | null ('' miss)
    sweep_expired    queue                                         -> count
    next_claim_at    queue                                         -> ts | 0
    notify           channel, payload                              -> id
    publish          topic, payload, [key=null]                    -> offset
    read_since       topic, [offset=0, limit=100]                 -> [event, ...]
    save_offset      consumer, topic, offset                       -> 0|1
    get_offset       consumer, topic                               -> offset
    result_save      job_id, value, [ttl=0]                       -> 1
    result_get       job_id                                        -> text | null
    lock_acquire     name, owner, [ttl=60]                        -> 0|1
    lock_renew       name, owner, ttl                              -> 0|1
    lock_release     name, owner                                   -> 0|1
    rate_limit_try   name, limit, per                              -> 0|1
    scheduler_register name, queue, cron, payload, [priority=0, expires_s=null,
                     max_attempts=3]   (7-arg form; "max_attempts": null -> 6-arg form)
    scheduler_tick   [now=unixepoch()]                             -> [fire, ...]
    scheduler_list                                                 -> [schedule, ...]
    scheduler_unregister / scheduler_pause / scheduler_resume  name
    scheduler_soonest                                              -> ts | 0
    cron_next_after  expr, from                                    -> ts
    call             fn, [args=[], write=true]  (any SQL function: SELECT fn(?, ...))
    sql              sql, [params=[], write=false]                 -> [row-object, ...]
    batch            ops: [{"op": ..., "args": {...}}, ...]  (one process, each op
                     in its own transaction; stops at the first error)
    listen           channel, [timeout=10 (s), count=1, mode="auto"|"watcher"|"poll",
                     after=null, backend=null, poll_ms=null]
        Subscribes first (update watcher via honker_update_watcher_open(db,
        backend, poll_ms)/_wait -- this extension build only has the polling
        backend -- falling back, in mode "auto", to a PRAGMA data_version
        poll loop every 10 ms if the watcher cannot open or dies), takes the channel's
        MAX(id) as the starting point (or ``after`` if given), prints ``READY``
        on stderr (flushed), then waits until ``count`` notifications with a
        larger id exist and prints them (rows of _honker_notifications, id
        order).  Timeout -> ok:false, error "timeout", exit 2.

Rows returned by ``sql`` are JSON objects in column order; BLOBs become
``{"$blob": "<hex>"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

EXT_ENTRYPOINT = "sqlite3_honkerext_init"

USAGE_EXIT = 64
TIMEOUT_EXIT = 2


class UsageError(Exception):
    pass


class ListenTimeout(Exception):
    pass


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$blob": bytes(v).hex()}
    return v


def _text(v: Any) -> str | None:
    """Payload-like argument: strings verbatim, anything else json.dumps'ed."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v)


class Peer:
    def __init__(self, db: str, ext: str, busy_timeout: int) -> None:
        self.db_path = os.path.abspath(db)
        self.conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=busy_timeout / 1000)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout)}").fetchall()
        self.conn.enable_load_extension(True)
        # Debian's Connection.load_extension takes no entrypoint kwarg: use SQL.
        self.conn.execute("SELECT load_extension(?, ?)", (ext, EXT_ENTRYPOINT)).fetchall()
        self.conn.enable_load_extension(False)

    # -- plumbing ---------------------------------------------------------
    def write(self, fn: Callable[[], Any]) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return out

    def scalar(self, sql: str, params: list[Any]) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def wscalar(self, sql: str, *params: Any) -> Any:
        return self.write(lambda: self.scalar(sql, list(params)))

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description] if cur.description else []
        return [{c: _jsonable(v) for c, v in zip(cols, r, strict=True)} for r in cur.fetchall()]


def _req(a: dict[str, Any], key: str) -> Any:
    if key not in a:
        raise UsageError(f"missing argument {key!r}")
    return a[key]


def _decoded(raw: Any) -> dict[str, Any]:
    """For functions returning JSON text: decode once, keep the raw text."""
    if isinstance(raw, str) and raw != "":
        return {"result": json.loads(raw), "raw": raw}
    return {"result": None if raw in ("", None) else raw, "raw": raw}


def op_simple(p: Peer, op: str, a: dict[str, Any]) -> Any:
    w = p.wscalar
    if op == "bootstrap":
        return w("SELECT honker_bootstrap()")
    if op == "enqueue":
        return w("SELECT honker_enqueue(?, ?, ?, ?, ?, ?, ?)",
                 _req(a, "queue"), _text(_req(a, "payload")), a.get("run_at"), a.get("delay"),
                 a.get("priority", 0), a.get("max_attempts", 3), a.get("expires"))
    if op == "ack":
        return w("SELECT honker_ack(?, ?)", _req(a, "id"), _req(a, "worker"))
    if op == "ack_batch":
        return w("SELECT honker_ack_batch(?, ?)", json.dumps(_req(a, "ids")), _req(a, "worker"))
    if op == "retry":
        return w("SELECT honker_retry(?, ?, ?, ?)", _req(a, "id"), _req(a, "worker"),
                 a.get("delay", 0), a.get("error", ""))
    if op == "fail":
        return w("SELECT honker_fail(?, ?, ?)", _req(a, "id"), _req(a, "worker"),
                 a.get("error", ""))
    if op == "heartbeat":
        return w("SELECT honker_heartbeat(?, ?, ?)", _req(a, "id"), _req(a, "worker"),
                 _req(a, "extend"))
    if op == "cancel":
        return w("SELECT honker_cancel(?)", _req(a, "id"))
    if op == "sweep_expired":
        return w("SELECT honker_sweep_expired(?)", _req(a, "queue"))
    if op == "next_claim_at":
        return w("SELECT honker_queue_next_claim_at(?)", _req(a, "queue"))
    if op == "notify":
        return w("SELECT notify(?, ?)", _req(a, "channel"), _text(_req(a, "payload")))
    if op == "publish":
        return w("SELECT honker_stream_publish(?, ?, ?)", _req(a, "topic"), a.get("key"),
                 _text(_req(a, "payload")))
    if op == "save_offset":
        return w("SELECT honker_stream_save_offset(?, ?, ?)", _req(a, "consumer"),
                 _req(a, "topic"), _req(a, "offset"))
    if op == "get_offset":
        return w("SELECT honker_stream_get_offset(?, ?)", _req(a, "consumer"), _req(a, "topic"))
    if op == "result_save":
        return w("SELECT honker_result_save(?, ?, ?)", _req(a, "job_id"), _text(_req(a, "value")),
                 a.get("ttl", 0))
    if op == "result_get":
        return w("SELECT honker_result_get(?)", _req(a, "job_id"))
    if op == "lock_acquire":
        return w("SELECT honker_lock_acquire(?, ?, ?)", _req(a, "name"), _req(a, "owner"),
                 a.get("ttl", 60))
    if op == "lock_renew":
        return w("SELECT honker_lock_renew(?, ?, ?)", _req(a, "name"), _req(a, "owner"),
                 _req(a, "ttl"))
    if op == "lock_release":
        return w("SELECT honker_lock_release(?, ?)", _req(a, "name"), _req(a, "owner"))
    if op == "rate_limit_try":
        return w("SELECT honker_rate_limit_try(?, ?, ?)", _req(a, "name"), _req(a, "limit"),
                 _req(a, "per"))
    if op == "scheduler_register":
        base = [_req(a, "name"), _req(a, "queue"), _req(a, "cron"), _text(_req(a, "payload")),
                a.get("priority", 0), a.get("expires_s")]
        if "max_attempts" in a and a["max_attempts"] is None:
            return w("SELECT honker_scheduler_register(?, ?, ?, ?, ?, ?)", *base)
        return w("SELECT honker_scheduler_register(?, ?, ?, ?, ?, ?, ?)", *base,
                 a.get("max_attempts", 3))
    if op == "scheduler_unregister":
        return w("SELECT honker_scheduler_unregister(?)", _req(a, "name"))
    if op == "scheduler_pause":
        return w("SELECT honker_scheduler_pause(?)", _req(a, "name"))
    if op == "scheduler_resume":
        return w("SELECT honker_scheduler_resume(?)", _req(a, "name"))
    if op == "scheduler_soonest":
        return w("SELECT honker_scheduler_soonest()")
    if op == "cron_next_after":
        return p.scalar("SELECT honker_cron_next_after(?, ?)", [_req(a, "expr"), _req(a, "from")])
    raise UsageError(f"unknown op {op!r}")


JSON_OPS = {"claim", "read_since", "scheduler_tick", "scheduler_list", "get_job"}


def run_op(p: Peer, op: str, a: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(a, dict):
        raise UsageError("arguments must be a JSON object")
    if op in JSON_OPS:
        if op == "claim":
            raw = p.wscalar("SELECT honker_claim_batch(?, ?, ?, ?)", _req(a, "queue"),
                            _req(a, "worker"), a.get("n", 1), a.get("visibility", 30))
        elif op == "read_since":
            raw = p.wscalar("SELECT honker_stream_read_since(?, ?, ?)", _req(a, "topic"),
                            a.get("offset", 0), a.get("limit", 100))
        elif op == "scheduler_tick":
            if a.get("now") is None:
                raw = p.wscalar("SELECT honker_scheduler_tick(unixepoch())")
            else:
                raw = p.wscalar("SELECT honker_scheduler_tick(?)", a["now"])
        elif op == "scheduler_list":
            raw = p.wscalar("SELECT honker_scheduler_list()")
        else:
            raw = p.wscalar("SELECT honker_get_job(?)", _req(a, "id"))
        return _decoded(raw)
    if op == "call":
        fn = str(_req(a, "fn"))
        if not fn.replace("_", "").isalnum():
            raise UsageError(f"bad function name {fn!r}")
        args = list(a.get("args", []))
        sql = f"SELECT {fn}({', '.join('?' * len(args))})"
        if a.get("write", True):
            return {"result": p.wscalar(sql, *args)}
        return {"result": p.scalar(sql, args)}
    if op == "sql":
        sql, params = str(_req(a, "sql")), a.get("params", [])
        if a.get("write", False):
            return {"result": p.write(lambda: p.rows(sql, params))}
        return {"result": p.rows(sql, params)}
    if op == "batch":
        results = []
        for item in _req(a, "ops"):
            results.append(run_op(p, str(_req(item, "op")), item.get("args", {}))["result"])
        return {"result": results}
    if op == "listen":
        return listen(p, a)
    return {"result": op_simple(p, op, a)}


def listen(p: Peer, a: dict[str, Any]) -> dict[str, Any]:
    channel = str(_req(a, "channel"))
    timeout = float(a.get("timeout", 10))
    count = int(a.get("count", 1))
    mode = a.get("mode", "auto")
    deadline = time.monotonic() + timeout

    handle = None
    wake = "poll"
    if mode in ("auto", "watcher"):
        try:
            handle = p.scalar("SELECT honker_update_watcher_open(?, ?, ?)",
                              [p.db_path, a.get("backend"), a.get("poll_ms")])
            wake = "watcher"
        except sqlite3.Error:
            if mode == "watcher":
                raise
    elif mode != "poll":
        raise UsageError(f"bad listen mode {mode!r}")
    # Subscribe first, then take the starting point: nothing can slip between.
    if a.get("after") is not None:
        start = int(a["after"])
    else:
        start = p.scalar(
            "SELECT COALESCE(MAX(id), 0) FROM _honker_notifications WHERE channel = ?", [channel])
    last_version = p.scalar("PRAGMA data_version", [])
    sys.stderr.write("READY\n")
    sys.stderr.flush()

    got: list[dict[str, Any]] = []
    last = start
    wakes = 0
    try:
        while True:
            new = p.rows(
                "SELECT id, channel, payload, created_at FROM _honker_notifications "
                "WHERE channel = ? AND id > ? ORDER BY id", [channel, last])
            for r in new:
                got.append(r)
                last = r["id"]
            if len(got) >= count:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ListenTimeout(f"timeout after {timeout}s ({len(got)}/{count} received)")
            if handle is not None:
                # cap each wait so a dead watcher cannot hang us past the deadline
                ms = max(1, min(int(remaining * 1000), 1000))
                r = p.scalar("SELECT honker_update_watcher_wait(?, ?)", [handle, ms])
                if r == 1:
                    wakes += 1
                elif r == -1:  # watcher died: fall back to polling
                    handle, wake = None, "poll(fallback)"
            else:
                time.sleep(min(0.01, max(remaining, 0)))
                v = p.scalar("PRAGMA data_version", [])
                if v != last_version:
                    last_version = v
                    wakes += 1
    finally:
        if handle is not None:
            p.scalar("SELECT honker_update_watcher_close(?)", [handle])
    return {"result": got[:count] if count > 0 else got, "start_id": start, "wake": wake,
            "wakes": wakes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="honker reference-extension test peer")
    ap.add_argument("--db", required=True, help="SQLite database file")
    ap.add_argument("--ext", default=os.environ.get("HONKER_EXT_PATH"),
                    help="path to libhonker_ext.so (default $HONKER_EXT_PATH)")
    ap.add_argument("--bootstrap", action="store_true",
                    help="run honker_bootstrap() (own transaction) before the operation")
    ap.add_argument("--busy-timeout", type=int, default=5000, help="ms (default 5000)")
    ap.add_argument("op")
    ap.add_argument("args", nargs="?", default="{}", help="JSON object, or - for stdin")
    ns = ap.parse_args(argv)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        if not ns.ext:
            raise UsageError("no extension: pass --ext or set HONKER_EXT_PATH")
        raw_args = sys.stdin.read() if ns.args == "-" else ns.args
        try:
            args = json.loads(raw_args)
        except ValueError as e:
            raise UsageError(f"arguments are not valid JSON: {e}") from None
        peer = Peer(ns.db, ns.ext, ns.busy_timeout)
        try:
            if ns.bootstrap:
                peer.wscalar("SELECT honker_bootstrap()")
            out = run_op(peer, ns.op, args)
        finally:
            peer.conn.close()
    except UsageError as e:
        emit({"ok": False, "op": ns.op, "error": str(e), "error_type": "UsageError"})
        return USAGE_EXIT
    except ListenTimeout as e:
        emit({"ok": False, "op": ns.op, "error": "timeout", "detail": str(e),
              "error_type": "Timeout"})
        return TIMEOUT_EXIT
    except Exception as e:  # report every SQLite/other error as JSON
        emit({"ok": False, "op": ns.op, "error": str(e), "error_type": type(e).__name__})
        return 1
    emit({"ok": True, "op": ns.op, **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
