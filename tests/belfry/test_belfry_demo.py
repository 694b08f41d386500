"""``examples/belfry_demo.py`` (what ``make demo`` shows) runs as written, quickly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT, python_env


def test_belfry_demo(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "belfry_demo.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"title": "Kettle", "message": "Tea is ready"' in out.stdout
    assert out.stdout.count('"message": "stretch"') >= 2
    assert "belfry demo finished OK" in out.stdout
