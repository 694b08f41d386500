"""Python-side handles for the reference peers (``ext_peer.py``, ``node_peer.js``).

Standard library only; meant to be imported by interop tests and by
``selfcheck.py``::

    from fetch_reference import ensure_reference
    from peers import ExtPeer, NodePeer

    ref = ensure_reference()
    ext = ExtPeer(ref, db_path)           # raises PeerUnavailable with a reason
    node = NodePeer(ref, db_path)
    job_id = ext("enqueue", queue="q", payload={"a": 1})
    jobs = node("claim", queue="q", worker="w", n=1)       # decoded JSON array
    node("ack", id=jobs[0]["id"], worker="w")
    ext("cron_next_after", {"expr": "@every 5s", "from": 0})  # dict form for keywords

    with ext.listen("chan", timeout=5) as waiter:   # returns once READY was seen
        node("notify", channel="chan", payload={"n": 1})
    rows = waiter.result()                          # list of notification rows

Calling a peer returns ``response["result"]``; ``peer.run(...)`` returns the
whole response dict (``ok``, ``result``, ``raw``, ...).  A response with
``ok: false`` raises :class:`PeerError` (``.response`` has the details,
``.error`` the message).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

try:
    from fetch_reference import ReferencePeers
except ImportError:  # imported as a package module (tests.interop.peers)
    from .fetch_reference import ReferencePeers  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
EXT_PEER = HERE / "ext_peer.py"
NODE_PEER = HERE / "node_peer.js"


class PeerUnavailable(RuntimeError):
    """The reference peer cannot run on this machine (message says why)."""


class PeerError(RuntimeError):
    def __init__(self, op: str, response: dict[str, Any], returncode: int, stderr: str) -> None:
        self.op = op
        self.response = response
        self.returncode = returncode
        self.stderr = stderr
        self.error = str(response.get("error", ""))
        super().__init__(f"{op}: {response.get('error_type')}: {self.error} (rc={returncode})"
                         + (f"\nstderr: {stderr.strip()}" if stderr.strip() else ""))


def _parse(op: str, stdout: str, stderr: str, rc: int) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise PeerError(op, {"error": "no output", "error_type": "NoOutput"}, rc, stderr)
    try:
        resp = json.loads(lines[-1])
    except ValueError:
        raise PeerError(op, {"error": f"bad output {stdout!r}", "error_type": "BadOutput"},
                        rc, stderr) from None
    if not isinstance(resp, dict):
        raise PeerError(op, {"error": f"bad output {stdout!r}", "error_type": "BadOutput"},
                        rc, stderr)
    if not resp.get("ok"):
        raise PeerError(op, resp, rc, stderr)
    return resp


def _merge(args: dict[str, Any] | None, kw: dict[str, Any]) -> dict[str, Any]:
    out = dict(args or {})
    out.update(kw)
    return out


class Listening:
    """A running ``listen`` subprocess; construction blocks until READY."""

    def __init__(self, argv: list[str], env: dict[str, str], op_timeout: float,
                 ready_timeout: float = 15.0) -> None:
        self._op_timeout = op_timeout
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self._ready = threading.Event()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout):
            out = self._finish(kill=True)
            raise PeerError("listen", {"error": f"no READY within {ready_timeout}s: {out!r}",
                                       "error_type": "NotReady"}, self.proc.returncode or -1,
                            "".join(self._stderr))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            if line.strip() == "READY":
                self._ready.set()
        self._ready.set()  # EOF: the process ended (maybe without READY)

    def _finish(self, kill: bool = False, timeout: float | None = None) -> str:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self._reader.join(5)
        return out or ""

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the listener to exit; return its whole response."""
        out = self._finish(timeout=timeout if timeout is not None else self._op_timeout)
        return _parse("listen", out, "".join(self._stderr), self.proc.returncode)

    def result(self, timeout: float | None = None) -> list[dict[str, Any]]:
        return list(self.wait(timeout)["result"])

    def close(self) -> None:
        if self.proc.returncode is None:
            self._finish(kill=True)

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *exc: object) -> None:
        # leave the process running so .result() can be called after the block,
        # unless the block raised.
        if exc[0] is not None:
            self.close()


class _Peer:
    kind = "?"

    def __init__(self, argv: list[str], db: str | os.PathLike[str], env: dict[str, str],
                 timeout: float = 60.0) -> None:
        self.db = str(Path(db).resolve())
        self._argv = argv
        self._env = {**os.environ, **env}
        self.timeout = timeout

    def argv(self, op: str, args: dict[str, Any]) -> list[str]:
        return [*self._argv, "--db", self.db, op, json.dumps(args)]

    def run(self, op: str, args: dict[str, Any] | None = None, /, **kw: Any) -> dict[str, Any]:
        argv = self.argv(op, _merge(args, kw))
        cp = subprocess.run(argv, env=self._env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=self.timeout, check=False)
        return _parse(op, cp.stdout, cp.stderr, cp.returncode)

    def __call__(self, op: str, args: dict[str, Any] | None = None, /, **kw: Any) -> Any:
        return self.run(op, args, **kw)["result"]

    def listen(self, channel: str, timeout: float = 10.0, count: int = 1,
               **kw: Any) -> Listening:
        args = _merge({"channel": channel, "timeout": timeout, "count": count}, kw)
        return Listening(self.argv("listen", args), self._env, op_timeout=timeout + 30)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} db={self.db}>"


class ExtPeer(_Peer):
    """The reference loadable extension driven by ``ext_peer.py``."""

    kind = "ext"

    def __init__(self, ref: ReferencePeers, db: str | os.PathLike[str],
                 timeout: float = 60.0) -> None:
        if not ref.ext_ok:
            raise PeerUnavailable(ref.ext_missing_reason() or "extension peer unavailable")
        assert ref.ext_python is not None and ref.ext_path is not None
        super().__init__([ref.ext_python, "-I", str(EXT_PEER), "--ext", str(ref.ext_path)], db,
                         ref.env(), timeout)


class NodePeer(_Peer):
    """The reference Node binding driven by ``node_peer.js``."""

    kind = "node"

    def __init__(self, ref: ReferencePeers, db: str | os.PathLike[str],
                 timeout: float = 60.0) -> None:
        if not ref.node_ok:
            raise PeerUnavailable(ref.node_missing_reason() or "node peer unavailable")
        assert ref.node is not None and ref.node_module is not None
        super().__init__([ref.node, str(NODE_PEER), "--module", str(ref.node_module)], db,
                         ref.env(), timeout)
