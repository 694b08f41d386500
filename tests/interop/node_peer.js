#!/usr/bin/env node
/*
 * Reference Node-binding test peer: one honker operation per invocation.
 *
 *   node tests/interop/node_peer.js --db FILE [--module X.node] [--backend B]
 *        [--poll-ms N] OP ['{"json": "args"}']
 *
 * --module defaults to $HONKER_NODE_MODULE (fetch_reference.py provides it).
 * Argument and output conventions are the same as ext_peer.py: one JSON object
 * argument ("-" = stdin), one JSON line on stdout:
 *   {"ok": true, "op": OP, "result": ...}                       exit 0
 *   {"ok": false, "op": OP, "error": MSG, "error_type": CODE}   exit 1
 *   (exit 2 = listen timeout, exit 64 = usage error)
 * Payload-like arguments (payload, value): a string is stored verbatim (it
 * must already be JSON text); anything else is JSON.stringify'ed (compact).
 *
 * ---------------------------------------------------------------------------
 * WHAT THE MODULE REALLY EXPORTS (honker-node-linux-x64-gnu 0.4.5, verified by
 * probing the binary with node v20; the description we had been given was
 * mostly right, corrections marked "!"):
 *
 *   require(".../honker.linux-x64-gnu.node") ->
 *     { open, Database, Transaction, UpdateEvents }   (classes are not
 *     constructible from JS: `new Database()` throws "Class contains no
 *     `constructor`")
 *
 *   open(path: string, maxReaders?: u32, watcherBackend?: string|null,
 *        watcherPollIntervalMs?: u32) -> Database          (synchronous)
 *     - opens writer + reader pool, sets journal_mode=WAL, busy_timeout=5000,
 *       synchronous=NORMAL(1), foreign_keys=ON; creates _honker_notifications
 *       AND runs the full bootstrap (all nine _honker_* tables) at open.
 *     - backend: null/"polling" ok; "kernel"/"shm" are named in the error text;
 *       anything else -> Error "unknown watcher backend ...". Poll interval 0 ->
 *       Error "watcher poll interval must be positive". Extra args are ignored.
 *     - links against the SYSTEM libsqlite3.so.0 (3.40.1 on Debian 12).
 *
 *   Database
 *     query(sql, params?: any[]) -> Array<object>   (synchronous)
 *       ! runs on a READER connection that has NO honker_* functions and NO
 *         notify() ("no such function: honker_enqueue"); plain SQL only. It
 *         nevertheless accepts writes (INSERT ... RETURNING works, autocommit).
 *       ! row objects have their keys sorted ALPHABETICALLY, not in column
 *         order (SELECT 1 AS z, 2 AS a -> {a: 2, z: 1}).
 *       params must be an array (named/object params -> "Failed to get Array
 *       length"); a count mismatch throws "Wrong number of parameters".
 *     transaction() -> Transaction                  (synchronous)
 *       issues BEGIN IMMEDIATE at once (holds the write lock until commit/
 *       rollback). ! A second transaction() on the SAME Database while one is
 *       open blocks the JS thread forever (deadlock); on another Database it
 *       fails after busy_timeout with "database is locked". A Transaction
 *       that is dropped without commit/rollback keeps the lock until GC.
 *     updateEvents() -> UpdateEvents
 *     pruneNotifications(olderThanS?: number|null, maxKeep?: number|null)
 *       -> number of rows deleted (not in the description we were given).
 *     close() -> undefined (idempotent; later calls throw "Database is closed")
 *
 *   Transaction (the writer connection: honker_* functions ARE registered here)
 *     query(sql, params?) -> Array<object>   (same row/param rules as above)
 *     execute(sql, params?) -> number of changed rows; a statement returning
 *       rows throws "Execute returned results - did you mean to call query?"
 *     notify(channel: string, value: any) -> notification id
 *       ! value is JSON-ENCODED by the binding (compact JSON.stringify-like):
 *         notify("c", "hello") stores the text "\"hello\""; {x:1} -> '{"x":1}'.
 *         undefined throws. Use query("SELECT notify(?, ?)") for verbatim text.
 *     commit() / rollback() -> undefined; after either, query/execute throw
 *       "transaction already finished" (a second commit() is a silent no-op).
 *
 *   UpdateEvents
 *     next() -> Promise<undefined>: resolves once per observed database change
 *       (any commit to the file, by any connection/process, including this
 *       Database's own writes). Changes are buffered from updateEvents()
 *       creation, so a commit that happens before next() is called still
 *       resolves the next next() immediately; bursts coalesce (5 quick commits
 *       -> one resolution). ! Each change resolves ONE outstanding next()
 *       promise (FIFO): an abandoned next() (e.g. lost a Promise.race against
 *       a timer) silently consumes a later event, so keep exactly one
 *       outstanding promise and reuse it. A pending next() keeps the Node
 *       event loop alive.
 *     close() -> undefined; pending and later next() calls reject with
 *       "honker update watcher died or was closed (subscription channel
 *       closed)".
 *
 *   Parameter binding (serde_json based): integers in i32/u32 range bind as
 *   INTEGER, other numbers (including whole numbers >= 2^32) bind as REAL,
 *   booleans as INTEGER 0/1, null as NULL, strings as TEXT, plain objects/
 *   arrays as their JSON TEXT; BigInt, Buffer, undefined and functions throw
 *   InvalidArg. honker_* functions registered by this binding reject ANY REAL
 *   argument ("Invalid function parameter type Real at index N"), unlike the
 *   loadable extension which accepts whole-valued REALs. This peer therefore
 *   wraps integer arguments outside i32/u32 range as CAST(? AS INTEGER).
 *   Results: INTEGER > 2^53 loses precision (JS number); BLOB comes back as a
 *   lowercase hex string.
 * ---------------------------------------------------------------------------
 *
 * Operations (arguments as in ext_peer.py):
 *   enqueue, claim, ack, ack_batch, retry, fail, notify [via="method"|"sql"],
 *   publish, read_since, save_offset, get_offset, result_save, result_get,
 *   get_job, heartbeat, cancel, sweep_expired, next_claim_at,
 *   lock_acquire, lock_renew, lock_release, rate_limit_try, scheduler_register,
 *   scheduler_tick, scheduler_list, scheduler_unregister/pause/resume/soonest,
 *   cron_next_after, prune_notifications
 *   (older_than_s, max_keep), call (fn, args), batch (ops), bootstrap,
 *   sql (sql, params, [via="db"|"tx"]  -- "db" = Database.query on a reader
 *       connection (no honker_* functions), "tx" = inside a Transaction),
 *   listen (channel, [timeout=10 s, count=1, mode="events"|"poll", after])
 *       subscribes with db.updateEvents(), reads the channel's MAX(id), prints
 *       READY on stderr, then waits for `count` newer notifications.
 */
"use strict";

const path = require("path");

const USAGE_EXIT = 64;
const TIMEOUT_EXIT = 2;

class UsageError extends Error {}
class ListenTimeout extends Error {}

function parseArgv(argv) {
  const opts = { db: null, module: process.env.HONKER_NODE_MODULE || null, backend: null, pollMs: null };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--db") opts.db = val();
    else if (a === "--module") opts.module = val();
    else if (a === "--backend") opts.backend = val();
    else if (a === "--poll-ms") opts.pollMs = Number(val());
    else if (a.startsWith("--")) throw new UsageError(`unknown option ${a}`);
    else pos.push(a);
  }
  if (!opts.db) throw new UsageError("--db is required");
  if (!opts.module) throw new UsageError("no module: pass --module or set HONKER_NODE_MODULE");
  if (pos.length < 1 || pos.length > 2) throw new UsageError("usage: OP [JSON-ARGS]");
  return { opts, op: pos[0], rawArgs: pos[1] === undefined ? "{}" : pos[1] };
}

function req(a, key) {
  if (!(key in a)) throw new UsageError(`missing argument '${key}'`);
  return a[key];
}
function opt(a, key, dflt) {
  return key in a ? a[key] : dflt;
}
function text(v) {
  if (v === null || v === undefined || typeof v === "string") return v === undefined ? null : v;
  return JSON.stringify(v);
}

// i32/u32 integers bind as INTEGER; other integers would bind as REAL, which
// the binding's honker_* functions reject: cast them back inside SQL.
function ph(v) {
  if (typeof v === "number" && Number.isInteger(v) && (v < -2147483648 || v > 4294967295)) {
    return "CAST(? AS INTEGER)";
  }
  return "?";
}

class Peer {
  constructor(honker, opts) {
    const dbPath = path.resolve(opts.db);
    const extra = [];
    if (opts.backend !== null || opts.pollMs !== null) {
      extra.push(8, opts.backend, opts.pollMs === null ? undefined : opts.pollMs);
    }
    this.db = honker.open(dbPath, ...extra.filter((x) => x !== undefined));
  }

  // Run fn(tx) inside Database.transaction() (BEGIN IMMEDIATE) and commit.
  write(fn) {
    const tx = this.db.transaction();
    let out;
    try {
      out = fn(tx);
    } catch (e) {
      try {
        tx.rollback();
      } catch (_) {
        /* already finished */
      }
      throw e;
    }
    tx.commit();
    return out;
  }

  // SELECT fn(args...) in a write transaction, return the single value.
  fn(name, args) {
    const sql = `SELECT ${name}(${args.map(ph).join(", ")}) AS v`;
    return this.write((tx) => tx.query(sql, args)[0].v);
  }
}

function decoded(raw) {
  if (typeof raw === "string" && raw !== "") return { result: JSON.parse(raw), raw };
  return { result: raw === "" || raw === undefined ? null : raw, raw };
}

function runOp(p, op, a) {
  if (a === null || typeof a !== "object" || Array.isArray(a)) {
    throw new UsageError("arguments must be a JSON object");
  }
  switch (op) {
    case "bootstrap":
      return { result: p.fn("honker_bootstrap", []) };
    case "enqueue":
      return {
        result: p.fn("honker_enqueue", [
          req(a, "queue"), text(req(a, "payload")), opt(a, "run_at", null), opt(a, "delay", null),
          opt(a, "priority", 0), opt(a, "max_attempts", 3), opt(a, "expires", null),
        ]),
      };
    case "claim":
      return decoded(p.fn("honker_claim_batch", [
        req(a, "queue"), req(a, "worker"), opt(a, "n", 1), opt(a, "visibility", 30),
      ]));
    case "ack":
      return { result: p.fn("honker_ack", [req(a, "id"), req(a, "worker")]) };
    case "ack_batch":
      return { result: p.fn("honker_ack_batch", [JSON.stringify(req(a, "ids")), req(a, "worker")]) };
    case "retry":
      return {
        result: p.fn("honker_retry", [req(a, "id"), req(a, "worker"), opt(a, "delay", 0), opt(a, "error", "")]),
      };
    case "fail":
      return { result: p.fn("honker_fail", [req(a, "id"), req(a, "worker"), opt(a, "error", "")]) };
    case "notify": {
      const channel = req(a, "channel");
      const payload = req(a, "payload");
      let via = opt(a, "via", null);
      let value = payload;
      if (via === null || via === "method") {
        if (typeof payload === "string") {
          try {
            value = JSON.parse(payload);
          } catch (_) {
            if (via === "method") throw new UsageError("via=method needs a JSON payload");
            via = "sql";
          }
        }
        if (via === null) via = "method";
      }
      if (via === "method") return { result: p.write((tx) => tx.notify(channel, value)), via };
      if (via === "sql") return { result: p.fn("notify", [channel, text(payload)]), via };
      throw new UsageError(`bad via ${via}`);
    }
    case "publish":
      return {
        result: p.fn("honker_stream_publish", [req(a, "topic"), opt(a, "key", null), text(req(a, "payload"))]),
      };
    case "read_since":
      return decoded(p.fn("honker_stream_read_since", [
        req(a, "topic"), opt(a, "offset", 0), opt(a, "limit", 100),
      ]));
    case "save_offset":
      return {
        result: p.fn("honker_stream_save_offset", [req(a, "consumer"), req(a, "topic"), req(a, "offset")]),
      };
    case "get_offset":
      return { result: p.fn("honker_stream_get_offset", [req(a, "consumer"), req(a, "topic")]) };
    case "result_save":
      return {
        result: p.fn("honker_result_save", [req(a, "job_id"), text(req(a, "value")), opt(a, "ttl", 0)]),
      };
    case "result_get":
      return { result: p.fn("honker_result_get", [req(a, "job_id")]) };
    case "lock_acquire":
      return { result: p.fn("honker_lock_acquire", [req(a, "name"), req(a, "owner"), opt(a, "ttl", 60)]) };
    case "lock_release":
      return { result: p.fn("honker_lock_release", [req(a, "name"), req(a, "owner")]) };
    case "rate_limit_try":
      return { result: p.fn("honker_rate_limit_try", [req(a, "name"), req(a, "limit"), req(a, "per")]) };
    case "scheduler_register": {
      const base = [
        req(a, "name"), req(a, "queue"), req(a, "cron"), text(req(a, "payload")),
        opt(a, "priority", 0), opt(a, "expires_s", null),
      ];
      if ("max_attempts" in a && a.max_attempts === null) {
        return { result: p.fn("honker_scheduler_register", base) };
      }
      return { result: p.fn("honker_scheduler_register", [...base, opt(a, "max_attempts", 3)]) };
    }
    case "scheduler_tick":
      if (opt(a, "now", null) === null) {
        return decoded(p.write((tx) => tx.query("SELECT honker_scheduler_tick(unixepoch()) AS v")[0].v));
      }
      return decoded(p.fn("honker_scheduler_tick", [a.now]));
    case "scheduler_list":
      return decoded(p.fn("honker_scheduler_list", []));
    case "cron_next_after":
      return { result: p.fn("honker_cron_next_after", [req(a, "expr"), req(a, "from")]) };
    case "get_job":
      return decoded(p.fn("honker_get_job", [req(a, "id")]));
    case "heartbeat":
      return { result: p.fn("honker_heartbeat", [req(a, "id"), req(a, "worker"), req(a, "extend")]) };
    case "cancel":
      return { result: p.fn("honker_cancel", [req(a, "id")]) };
    case "sweep_expired":
      return { result: p.fn("honker_sweep_expired", [req(a, "queue")]) };
    case "next_claim_at":
      return { result: p.fn("honker_queue_next_claim_at", [req(a, "queue")]) };
    case "lock_renew":
      return { result: p.fn("honker_lock_renew", [req(a, "name"), req(a, "owner"), req(a, "ttl")]) };
    case "scheduler_unregister":
    case "scheduler_pause":
    case "scheduler_resume":
      return { result: p.fn(`honker_${op}`, [req(a, "name")]) };
    case "scheduler_soonest":
      return { result: p.fn("honker_scheduler_soonest", []) };
    case "prune_notifications":
      return { result: p.db.pruneNotifications(opt(a, "older_than_s", null), opt(a, "max_keep", null)) };
    case "call": {
      const name = String(req(a, "fn"));
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`bad function name ${name}`);
      return { result: p.fn(name, opt(a, "args", [])) };
    }
    case "sql": {
      const sql = String(req(a, "sql"));
      const params = opt(a, "params", []);
      const via = opt(a, "via", "db");
      if (via === "db") return { result: p.db.query(sql, params) };
      if (via === "tx") return { result: p.write((tx) => tx.query(sql, params)) };
      throw new UsageError(`bad via ${via}`);
    }
    case "batch":
      return { result: req(a, "ops").map((item) => runOp(p, String(req(item, "op")), opt(item, "args", {})).result) };
    default:
      throw new UsageError(`unknown op '${op}'`);
  }
}

async function listen(p, a) {
  const channel = String(req(a, "channel"));
  const timeoutMs = Number(opt(a, "timeout", 10)) * 1000;
  const count = Number(opt(a, "count", 1));
  const mode = opt(a, "mode", "events");
  if (mode !== "events" && mode !== "poll") throw new UsageError(`bad listen mode ${mode}`);
  const deadline = Date.now() + timeoutMs;

  // Subscribe first, then read the starting point: nothing can slip between.
  const ue = mode === "events" ? p.db.updateEvents() : null;
  const start = opt(a, "after", null) !== null
    ? Number(a.after)
    : p.db.query("SELECT COALESCE(MAX(id), 0) AS m FROM _honker_notifications WHERE channel = ?", [channel])[0].m;
  process.stderr.write("READY\n");

  const got = [];
  let last = start;
  let wakes = 0;
  let pending = null; // the single outstanding ue.next() promise (never abandoned)
  try {
    for (;;) {
      const rows = p.db.query(
        "SELECT id, channel, payload, created_at FROM _honker_notifications WHERE channel = ? AND id > ? ORDER BY id",
        [channel, last],
      );
      for (const r of rows) {
        got.push({ id: r.id, channel: r.channel, payload: r.payload, created_at: r.created_at });
        last = r.id;
      }
      if (got.length >= count) break;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new ListenTimeout(`timeout after ${timeoutMs / 1000}s (${got.length}/${count} received)`);
      // cap each wait at 1 s: a re-query safety net if a wake were ever missed
      const slice = Math.min(remaining, mode === "events" ? 1000 : 20);
      let timer;
      const sleep = new Promise((resolve) => { timer = setTimeout(() => resolve("timeout"), slice); });
      if (ue !== null) {
        if (pending === null) pending = ue.next().then(() => "event");
        const r = await Promise.race([pending, sleep]);
        clearTimeout(timer);
        if (r === "event") {
          pending = null;
          wakes++;
        }
      } else {
        await sleep;
      }
    }
  } finally {
    if (ue !== null) {
      if (pending !== null) pending.catch(() => {});
      ue.close();
    }
  }
  return { result: count > 0 ? got.slice(0, count) : got, start_id: start, wake: mode, wakes };
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function main() {
  let op = "?";
  let p = null;
  let code = 0;
  try {
    const parsed = parseArgv(process.argv.slice(2));
    op = parsed.op;
    const raw = parsed.rawArgs === "-" ? require("fs").readFileSync(0, "utf8") : parsed.rawArgs;
    let args;
    try {
      args = JSON.parse(raw);
    } catch (e) {
      throw new UsageError(`arguments are not valid JSON: ${e.message}`);
    }
    const honker = require(path.resolve(parsed.opts.module));
    p = new Peer(honker, parsed.opts);
    const out = op === "listen" ? await listen(p, args) : runOp(p, op, args);
    emit({ ok: true, op, ...out });
  } catch (e) {
    if (e instanceof UsageError) {
      emit({ ok: false, op, error: e.message, error_type: "UsageError" });
      code = USAGE_EXIT;
    } else if (e instanceof ListenTimeout) {
      emit({ ok: false, op, error: "timeout", detail: e.message, error_type: "Timeout" });
      code = TIMEOUT_EXIT;
    } else {
      emit({ ok: false, op, error: String(e && e.message !== undefined ? e.message : e), error_type: (e && e.code) || (e && e.name) || "Error" });
      code = 1;
    }
  } finally {
    if (p !== null) {
      try {
        p.db.close();
      } catch (_) {
        /* ignore */
      }
    }
  }
  // stdout/stderr are synchronous for files and pipes on Linux
  process.exit(code);
}

main();
