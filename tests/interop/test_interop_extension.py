"""``honker.load_extension`` loads the reference's compiled extension when
``HONKER_EXTENSION_PATH`` points at it (run by an interpreter whose ``sqlite3`` can load
extensions: Debian's ``python3``), and the extension then works on a file we made."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fetch_reference import ReferencePeers

import honker
from helpers import ROOT

SCRIPT = """
import json, sqlite3, sys
import honker
path, entry = honker.extension_info()
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
honker.load_extension(conn)
conn.execute("BEGIN IMMEDIATE")
out = {
    "info": [path, entry],
    "bootstrap": conn.execute("SELECT honker_bootstrap()").fetchone()[0],
    "next": conn.execute("SELECT honker_cron_next_after('@every 5s', 0)").fetchone()[0],
    "claim": json.loads(conn.execute("SELECT honker_claim_batch('q', 'ext', 5, 60)").fetchone()[0]),
}
conn.execute("COMMIT")
try:
    conn.execute("SELECT load_extension(?, ?)", (path, entry))
    out["still_enabled"] = True
except sqlite3.Error:
    out["still_enabled"] = False  # loading was switched off again
print(json.dumps(out))
"""


def test_load_extension_with_the_reference_artifact(
    reference: ReferencePeers, db: honker.Database, db_path: str
) -> None:
    if not reference.ext_ok:
        pytest.skip(f"reference extension unavailable: {reference.ext_missing_reason()}")
    assert reference.ext_python is not None
    job_id = db.queue("q").enqueue({"from": "us"})
    env = {
        **os.environ,
        "HONKER_EXTENSION_PATH": str(reference.ext_path),
        "PYTHONPATH": str(ROOT / "src"),
    }
    proc = subprocess.run(
        [reference.ext_python, "-c", SCRIPT, db_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["info"] == [str(reference.ext_path), "sqlite3_honkerext_init"]
    assert out["bootstrap"] == 1 and out["next"] == 5
    assert [(j["id"], json.loads(j["payload"])) for j in out["claim"]] == [(job_id, {"from": "us"})]
    assert out["still_enabled"] is False
