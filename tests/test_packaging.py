"""Both distributions build, install by name into fresh venvs and work outside the checkout.

The library is the distribution ``honker-py`` (import package ``honker``); belfry is
``honker-belfry`` in apps/belfry (import package and command ``belfry``), which depends on
the library. Each wheel is installed into a new venv, and everything runs from an empty
directory with no PYTHONPATH, so nothing can come from this repository's source tree.
Building uses hatchling and installing belfry's dependencies uses PyPI (or pip's cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import honker
from helpers import BELFRY_SRC, ROOT

LIBRARY, APP = "honker-py", "honker-belfry"


def run(args: list[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with no PYTHONPATH; with ``check``, fail showing both streams."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert out.returncode == 0, f"{args} exited {out.returncode}:\n{out.stdout}{out.stderr}"
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The two wheels, built from this checkout with ``pip wheel --no-deps``."""
    out = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out,
         ROOT, BELFRY_SRC.parent], cwd=out)  # hatchling from PyPI (or pip's cache)
    built = {p.name.split("-")[0].replace("_", "-"): p for p in out.glob("*.whl")}
    assert set(built) == {LIBRARY, APP}, sorted(out.iterdir())
    yield built


def top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/", 1)[0] for name in archive.namelist()}


def metadata(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(f".dist-info/{member}")]
        return archive.read(name).decode()


def fresh_venv(where: Path, *wheels: Path) -> Path:
    """A new venv with these wheel files installed (their other dependencies from PyPI).

    Wheels are given as files, never as names, so pip cannot pick a same-named
    distribution from the index instead of the one just built.
    """
    venv = where / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=where)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", *wheels],
        cwd=where)
    return python


def test_wheels_ship_one_distribution_each(wheels: dict[str, Path]) -> None:
    version = honker.__version__
    assert wheels[LIBRARY].name == f"honker_py-{version}-py3-none-any.whl"
    assert top_level(wheels[LIBRARY]) == {"honker", f"honker_py-{version}.dist-info"}
    assert "belfry" not in top_level(wheels[LIBRARY])
    requires = [line for line in metadata(wheels[LIBRARY], "METADATA").splitlines()
                if line.startswith("Requires-Dist:")]
    assert requires and all("extra ==" in line for line in requires), requires  # no deps

    app_meta = metadata(wheels[APP], "METADATA")
    assert f"Requires-Dist: {LIBRARY}>=" in app_meta
    assert {n for n in top_level(wheels[APP]) if not n.endswith(".dist-info")} == {"belfry"}
    assert "belfry = belfry.cli:main" in metadata(wheels[APP], "entry_points.txt")


def test_library_installs_by_name_and_runs_outside_the_checkout(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    python = fresh_venv(tmp_path, wheels[LIBRARY])
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = run([python, "-c", "import honker; print(honker.__file__)"], cwd=cwd).stdout
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where
    assert run([python, "-m", "honker", "--version"], cwd=cwd).stdout.strip() == (
        f"honker {LIBRARY} {honker.__version__}"
    )
    run([python, "-c", "import honker; honker.open('app.db').close()"], cwd=cwd)
    assert (cwd / "app.db").exists()
    # belfry is not part of the library, and the dashboard extra is not installed: the
    # CLI's hint names this distribution's extra.
    missing = run([python, "-c", "import belfry"], cwd=cwd, check=False)
    assert "No module named 'belfry'" in missing.stderr
    dash = run([python, "-m", "honker", "dashboard", "app.db"], cwd=cwd, check=False)
    assert dash.returncode == 2, dash.stderr
    assert f"pip install '{LIBRARY}[dashboard]'" in dash.stderr
    assert "pip install -e '.[dashboard]'" in dash.stderr


def test_belfry_installs_with_the_library(wheels: dict[str, Path], tmp_path: Path) -> None:
    python = fresh_venv(tmp_path, wheels[APP], wheels[LIBRARY])
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = run(
        [python, "-c", "import belfry, honker; print(belfry.__file__); print(honker.__file__)"],
        cwd=cwd,
    ).stdout
    for line in where.split():
        assert Path(line).is_relative_to(tmp_path / "venv"), where
    usage = run([tmp_path / "venv" / "bin" / "belfry", "--help"], cwd=cwd).stdout
    assert usage.startswith("usage: belfry"), usage
    assert "serve" in usage
    version = run([python, "-m", "honker", "--version"], cwd=cwd).stdout
    assert version.startswith(f"honker {LIBRARY} "), version
