"""Run every benchmark script in bench/ in turn (``make bench``). Prints figures only."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPTS = [
    "wake_latency.py",
    "queue_bench.py",
    "stream_bench.py",
    "tasks_bench.py",
    "sql_bench.py",
    "targets.py",
    "peers.py",
    "postgres_bench.py",
]


def main() -> int:
    failed = 0
    for script in SCRIPTS:
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            continue
        print(f"\n##### {script}", flush=True)
        rc = subprocess.call([sys.executable, path, *sys.argv[1:]], cwd=HERE)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
