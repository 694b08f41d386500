"""belfry end to end on a temporary database (run with `make demo`).

1. Starts the fake ntfy server (`python -m belfry.fake_ntfy`) and `belfry serve` (HTTP
   API + delivery worker + scheduler) on a fresh SQLite file.
2. Adds a one-off reminder due in one second and a recurring one every second, through
   the running server's API (`belfry --url ... add`).
3. Waits until the fake server has received them, prints what it received and the
   reminders as `belfry list` shows them, then stops both processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOPIC = "belfry-demo"


def env_with(**extra: str) -> dict[str, str]:
    """The environment for belfry's processes (belfry is installed: `make demo` does it)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start(
    args: list[str], env: dict[str, str], marker: str, log: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m <args>``; returns it and the URL ending its first stdout line."""
    stderr = None if log is None else log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
    )
    if stderr is not None:
        stderr.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        raise SystemExit(f"{args[0]} did not start: {line!r}")
    return proc, line.split()[-1]


def belfry(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "belfry", *args], env=env, capture_output=True, text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise SystemExit(f"belfry {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="belfry-demo-") as tmp:
        env = env_with()
        fake, fake_url = start(["belfry.fake_ntfy", "--port", "0"], env, "listening on")
        print(f"fake ntfy server: {fake_url}")
        serve_env = env_with(
            BELFRY_DB=os.path.join(tmp, "belfry.db"),
            BELFRY_NTFY_URL=fake_url,
            BELFRY_TOPIC=TOPIC,
        )
        serve = None
        try:
            serve, api_url = start(
                ["belfry", "serve", "--port", "0"], serve_env, "API on", Path(tmp, "serve.log")
            )
            print(f"belfry serve:     {api_url}")
            client_env = env_with(BELFRY_URL=api_url)
            print(belfry(client_env, "add", "Tea is ready", "--in", "1s", "--title", "Kettle",
                         "--tag", "tea", "--priority", "high").rstrip())
            print(belfry(client_env, "add", "stretch", "--every", "1s").rstrip())
            deadline = time.monotonic() + 10
            received: list[dict[str, object]] = []
            while time.monotonic() < deadline:
                response = httpx.get(f"{fake_url}/{TOPIC}/json", params={"poll": "1"}, timeout=5)
                received = [json.loads(line) for line in response.text.splitlines() if line]
                texts = [m["message"] for m in received]
                if "Tea is ready" in texts and texts.count("stretch") >= 2:
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"not delivered in time; the fake server has {received}")
            print("\nthe fake ntfy server received:")
            for message in received:
                shown = {k: message[k] for k in ("topic", "title", "message", "tags", "priority")
                         if k in message}
                print("  " + json.dumps(shown, ensure_ascii=False))
            print("\n" + belfry(client_env, "list").rstrip())
        finally:
            if serve is not None:
                stop(serve)
                print("\nbelfry serve's log:")
                print(Path(tmp, "serve.log").read_text().rstrip())
            stop(fake)
    print(f"\nbelfry demo finished OK in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
