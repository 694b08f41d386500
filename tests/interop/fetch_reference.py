"""Fetch and locate the reference honker peers used by the interop tests.

Standard library only.  Run it as a script::

    python tests/interop/fetch_reference.py [--cache-dir DIR] [--force] [--json]

or import it::

    from fetch_reference import ensure_reference
    peers = ensure_reference(Path(".cache/reference"))

What it provides (all from package registries, never anything else):

* the reference SQLite loadable extension ``libhonker_ext.so`` (entry point
  ``sqlite3_honkerext_init``), extracted from the ``honker==0.5.0`` wheel on
  PyPI (``pip download``).  Only ``honker/_lib/libhonker_ext.so`` is taken;
  ``ldd`` shows it needs nothing beyond glibc/libgcc_s, so the wheel's bundled
  ``honker.libs/libsqlite3-*.so*`` is not extracted (the code still extracts
  any wheel-bundled library that ``ldd`` reports as "not found");
* the reference Node native module ``honker.linux-x64-gnu.node`` from the npm
  package ``@russellthehippo/honker-node-linux-x64-gnu@0.4.5`` (``npm pack``).
  It links against the *system* ``libsqlite3.so.0`` (Debian: libsqlite3-0);
* a Python interpreter whose ``sqlite3`` supports ``enable_load_extension``
  and can actually load the extension (Debian's ``/usr/bin/python3`` can;
  pyenv builds usually cannot);
* the ``node`` executable (path + version) and proof that it can ``require()``
  the native module.

Downloads go to a temporary directory inside the cache and are moved into
place with ``os.replace``; a ``marker.json`` records what was extracted (with
SHA-256 digests) so a warm run does no network I/O.  A file lock
(``.lock``) serialises concurrent callers (e.g. pytest-xdist workers).

Environment overrides: ``HONKER_REFERENCE_CACHE`` (cache dir),
``HONKER_EXT_PYTHON`` (interpreter to try first), ``HONKER_NODE`` (node binary).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

HONKER_PYPI_VERSION = "0.5.0"
WHEEL_PLATFORM = "manylinux_2_38_x86_64"
EXT_MEMBER = "honker/_lib/libhonker_ext.so"
EXT_ENTRYPOINT = "sqlite3_honkerext_init"
NODE_PACKAGE = "@russellthehippo/honker-node-linux-x64-gnu"
NODE_PACKAGE_VERSION = "0.4.5"
NODE_MEMBER = "package/honker.linux-x64-gnu.node"
MARKER_FORMAT = 2

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "reference"

_SUBPROCESS_TIMEOUT = 300


class FetchError(RuntimeError):
    """A registry download or extraction failed."""


@dataclasses.dataclass(frozen=True)
class ReferencePeers:
    """Where the reference peers are, or why they are missing.

    Every ``*_reason`` is ``None`` exactly when the matching path is set.
    """

    cache_dir: Path
    ext_path: Path | None
    ext_reason: str | None
    node_module: Path | None
    node_module_reason: str | None
    ext_python: str | None
    ext_python_reason: str | None
    ext_python_sqlite_version: str | None
    node: str | None
    node_version: str | None
    node_reason: str | None
    fetched: bool  # True when this call hit the network

    @property
    def ext_ok(self) -> bool:
        """The extension peer (``ext_peer.py``) can run."""
        return self.ext_path is not None and self.ext_python is not None

    @property
    def node_ok(self) -> bool:
        """The Node peer (``node_peer.js``) can run."""
        return self.node_module is not None and self.node is not None

    def ext_missing_reason(self) -> str | None:
        return self.ext_reason or self.ext_python_reason

    def node_missing_reason(self) -> str | None:
        return self.node_module_reason or self.node_reason

    def env(self) -> dict[str, str]:
        """Environment variables understood by ext_peer.py / node_peer.js."""
        out: dict[str, str] = {}
        if self.ext_path is not None:
            out["HONKER_EXT_PATH"] = str(self.ext_path)
        if self.node_module is not None:
            out["HONKER_NODE_MODULE"] = str(self.node_module)
        return out

    def as_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
        return d


# --------------------------------------------------------------------------
# small helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = _SUBPROCESS_TIMEOUT,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_atomic(dest: Path, data: bytes, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _load_marker(cache_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((cache_dir / "marker.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _marker_entry_valid(cache_dir: Path, entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    rel, digest = entry.get("path"), entry.get("sha256")
    if not isinstance(rel, str) or not isinstance(digest, str):
        return False
    p = cache_dir / rel
    return p.is_file() and _sha256(p) == digest


def _pip_command() -> list[str]:
    """The first pip that runs: this interpreter's, pip3/pip on PATH, Debian's."""
    cands: list[list[str]] = [[sys.executable, "-m", "pip"]]
    for name in ("pip3", "pip"):
        w = shutil.which(name)
        if w:
            cands.append([w])
    if os.path.exists("/usr/bin/python3"):
        cands.append(["/usr/bin/python3", "-m", "pip"])
    for cand in cands:
        try:
            if _run([*cand, "--version"], timeout=60).returncode == 0:
                return cand
        except (OSError, subprocess.SubprocessError):
            continue
    raise FetchError("no working pip found (tried: "
                     + ", ".join(" ".join(c) for c in cands) + ")")


def _tail(text: str, n: int = 3) -> str:
    return " / ".join(ln.strip() for ln in text.strip().splitlines()[-n:])


# --------------------------------------------------------------------------
# the reference wheel -> libhonker_ext.so


def _record_hashes(zf: zipfile.ZipFile) -> dict[str, str]:
    """member -> hex sha256, from the wheel's RECORD file."""
    out: dict[str, str] = {}
    for name in zf.namelist():
        if name.endswith(".dist-info/RECORD"):
            for line in zf.read(name).decode().splitlines():
                parts = line.rsplit(",", 2)
                if len(parts) == 3 and parts[1].startswith("sha256="):
                    b64 = parts[1][len("sha256="):]
                    raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
                    out[parts[0]] = raw.hex()
    return out


def _extract_member(zf: zipfile.ZipFile, member: str, dest: Path,
                    record: dict[str, str]) -> str:
    data = zf.read(member)
    digest = hashlib.sha256(data).hexdigest()
    expected = record.get(member)
    if expected is not None and expected != digest:
        raise FetchError(f"{member}: sha256 {digest} does not match the wheel RECORD {expected}")
    _write_atomic(dest, data, 0o755)
    return digest


def _missing_libs(so: Path) -> list[str]:
    """Shared libraries ``ldd`` reports as "not found" (empty if ldd is absent)."""
    ldd = shutil.which("ldd")
    if not ldd:
        return []
    cp = _run([ldd, str(so)], timeout=60)
    missing = []
    for line in cp.stdout.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+not found", line)
        if m:
            missing.append(m.group(1))
    return missing


def _fetch_wheel(cache_dir: Path, downloads: Path) -> Path:
    pattern = f"honker-{HONKER_PYPI_VERSION}-*{WHEEL_PLATFORM}*.whl"
    existing = sorted(downloads.glob(pattern))
    for whl in existing:
        if zipfile.is_zipfile(whl):
            return whl
    downloads.mkdir(parents=True, exist_ok=True)
    pip = _pip_command()
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".pip-"))
    try:
        cp = _run([
            *pip, "download", f"honker=={HONKER_PYPI_VERSION}", "--no-deps",
            "--only-binary=:all:", "--platform", WHEEL_PLATFORM,
            "--disable-pip-version-check", "--no-input", "-q", "--timeout", "30",
            "--retries", "1", "-d", str(tmp),
        ])
        wheels = sorted(tmp.glob(pattern))
        if cp.returncode != 0 or not wheels or not zipfile.is_zipfile(wheels[0]):
            raise FetchError(f"{' '.join(pip)} download failed rc={cp.returncode}: "
                             f"{_tail(cp.stderr)}")
        dest = downloads / wheels[0].name
        os.replace(wheels[0], dest)
        return dest
    except (OSError, subprocess.SubprocessError) as e:
        raise FetchError(f"{' '.join(pip)} download failed: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_ext(cache_dir: Path, wheel: Path) -> dict[str, object]:
    base = cache_dir / f"honker-{HONKER_PYPI_VERSION}"
    dest = base / EXT_MEMBER
    with zipfile.ZipFile(wheel) as zf:
        record = _record_hashes(zf)
        if EXT_MEMBER not in zf.namelist():
            raise FetchError(f"{wheel.name} has no {EXT_MEMBER}")
        digest = _extract_member(zf, EXT_MEMBER, dest, record)
        extra: list[str] = []
        missing = _missing_libs(dest)
        bundled = [n for n in zf.namelist() if n.startswith("honker.libs/")]
        for lib in missing:
            stem = lib.split(".so")[0]
            for member in bundled:
                if Path(member).name.startswith(stem):
                    # keep the wheel layout so an $ORIGIN rpath would resolve,
                    # and also put a copy under the soname next to the .so.
                    _extract_member(zf, member, base / member, record)
                    _extract_member(zf, member, dest.parent / lib, record)
                    extra.append(member)
        still = _missing_libs(dest)
    return {
        "path": str(dest.relative_to(cache_dir)),
        "sha256": digest,
        "wheel": wheel.name,
        "bundled_libs_extracted": extra,
        "ldd_missing": still,
    }


# --------------------------------------------------------------------------
# the npm package -> honker.linux-x64-gnu.node


def _fetch_npm(cache_dir: Path, downloads: Path) -> Path:
    tgz_name = (NODE_PACKAGE.lstrip("@").replace("/", "-") + f"-{NODE_PACKAGE_VERSION}.tgz")
    dest = downloads / tgz_name
    if dest.is_file() and tarfile.is_tarfile(dest):
        return dest
    npm = shutil.which("npm")
    if not npm:
        raise FetchError("npm not found on PATH")
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".npm-"))
    try:
        # --prefer-offline: an exact version never changes, so npm's own
        # (integrity-checked) cache may serve it; bounded retries so an
        # unreachable registry fails in about a minute instead of minutes.
        cp = _run([npm, "pack", f"{NODE_PACKAGE}@{NODE_PACKAGE_VERSION}", "--json",
                   "--pack-destination", str(tmp), "--prefer-offline", "--fetch-retries=1",
                   "--fetch-timeout=30000", "--no-audit", "--no-fund"], cwd=tmp)
        if cp.returncode != 0:
            raise FetchError(f"npm pack failed rc={cp.returncode}: {_tail(cp.stderr, 5)}")
        tgzs = sorted(tmp.glob("*.tgz"))
        if not tgzs or not tarfile.is_tarfile(tgzs[0]):
            raise FetchError(f"npm pack produced no tarball: {cp.stdout[-500:]}")
        os.replace(tgzs[0], dest)
        return dest
    except (OSError, subprocess.SubprocessError) as e:
        raise FetchError(f"npm pack failed: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_node(cache_dir: Path, tgz: Path) -> dict[str, object]:
    dest = cache_dir / f"honker-node-{NODE_PACKAGE_VERSION}" / Path(NODE_MEMBER).name
    with tarfile.open(tgz, "r:gz") as tf:
        try:
            member = tf.getmember(NODE_MEMBER)
        except KeyError:
            raise FetchError(f"{tgz.name} has no {NODE_MEMBER}") from None
        f = tf.extractfile(member)
        if f is None:
            raise FetchError(f"{NODE_MEMBER} is not a regular file")
        data = f.read()
    _write_atomic(dest, data, 0o755)
    return {
        "path": str(dest.relative_to(cache_dir)),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tarball": tgz.name,
        "ldd_missing": _missing_libs(dest),
    }


# --------------------------------------------------------------------------
# local tools: a load_extension-capable python, node


_PY_PROBE = r"""
import json, sqlite3, sys
out = {"version": list(sys.version_info[:3]), "sqlite": sqlite3.sqlite_version}
ok = hasattr(sqlite3.Connection, "enable_load_extension")
out["has_enable_load_extension"] = ok
if ok and len(sys.argv) > 1:
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.execute("SELECT load_extension(?, ?)", (sys.argv[1], sys.argv[2]))
    out["probe"] = c.execute("SELECT honker_cron_next_after('@every 5s', 100)").fetchone()[0]
    c.close()
print(json.dumps(out))
"""


def _python_candidates() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []

    def add(p: str | None) -> None:
        if not p or not os.path.isfile(p) or not os.access(p, os.X_OK):
            return
        real = os.path.realpath(p)
        if real in seen:
            return
        seen.add(real)
        out.append(p)

    add(os.environ.get("HONKER_EXT_PYTHON"))
    add("/usr/bin/python3")
    for p in sorted(glob.glob("/usr/bin/python3.*")):
        if re.fullmatch(r"python3\.\d+", os.path.basename(p)):
            add(p)
    for p in sorted(glob.glob("/usr/local/bin/python3*")):
        if re.fullmatch(r"python3(\.\d+)?", os.path.basename(p)):
            add(p)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        add(os.path.join(d, "python3"))
    add(sys.executable)
    return out


def _find_ext_python(ext: Path | None) -> tuple[str | None, str | None, str | None]:
    """-> (interpreter, sqlite version, reason-if-none)."""
    notes: list[str] = []
    for cand in _python_candidates():
        args = [cand, "-I", "-c", _PY_PROBE]
        if ext is not None:
            args += [str(ext), EXT_ENTRYPOINT]
        try:
            cp = _run(args, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            notes.append(f"{cand}: {e}")
            continue
        if cp.returncode != 0:
            last = (cp.stderr.strip().splitlines() or ["?"])[-1]
            notes.append(f"{cand}: {last}")
            continue
        try:
            info = json.loads(cp.stdout)
        except ValueError:
            notes.append(f"{cand}: unparsable probe output")
            continue
        if not info.get("has_enable_load_extension"):
            notes.append(f"{cand}: sqlite3 built without enable_load_extension")
            continue
        if tuple(info["version"]) < (3, 10):
            notes.append(f"{cand}: Python {info['version']} too old (need >= 3.10)")
            continue
        if ext is not None and info.get("probe") != 105:
            notes.append(f"{cand}: extension probe returned {info.get('probe')!r}")
            continue
        return cand, str(info["sqlite"]), None
    return None, None, "no Python with a load_extension-capable sqlite3: " + "; ".join(notes)


def _find_node(module: Path | None) -> tuple[str | None, str | None, str | None]:
    node = os.environ.get("HONKER_NODE") or shutil.which("node") or shutil.which("nodejs")
    if not node:
        return None, None, "node executable not found on PATH"
    try:
        cp = _run([node, "--version"], timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return None, None, f"{node} --version failed: {e}"
    if cp.returncode != 0:
        return None, None, f"{node} --version failed: {cp.stderr.strip()}"
    version = cp.stdout.strip()
    m = re.match(r"v(\d+)", version)
    if not m or int(m.group(1)) < 20:
        return None, version, f"node {version} is too old (module needs >= 20)"
    if module is not None:
        script = "const m=require(process.argv[1]);if(typeof m.open!=='function')process.exit(3)"
        cp = _run([node, "-e", script, str(module)], timeout=60)
        if cp.returncode != 0:
            tail = (cp.stderr.strip().splitlines() or ['?'])[-1]
            return None, version, f"node cannot require {module}: {tail}"
    return node, version, None


# --------------------------------------------------------------------------
# entry point


def _obtain(downloads: Path, pattern: str, force: bool,
            fetch: Callable[[], Path],
            extract: Callable[[Path], dict[str, object]]) -> tuple[dict[str, object], bool]:
    """Extract from the kept download if there is a good one; otherwise (or if
    that extraction fails, e.g. a truncated file) delete it, download again and
    extract.  Returns (marker entry, whether the network was used)."""
    cached = sorted(downloads.glob(pattern))
    if cached and not force:
        try:
            return extract(fetch()), False  # fetch() returns the cached file
        except Exception:
            pass
    for old in cached:
        old.unlink(missing_ok=True)
    return extract(fetch()), True



def _peer_artifact(
    cache_dir: Path,
    downloads: Path,
    force: bool,
    marker: dict[str, object],
    new_marker: dict[str, object],
    key: str,
    *,
    pattern: str,
    fetch: Callable[[], Path],
    extract: Callable[[Path], dict[str, object]],
    label: str,
    missing_libs_hint: str,
) -> tuple[Path | None, str | None, bool]:
    """One cached peer artifact: ``(path or None, reason when missing, network used)``."""
    hit_network = False
    reason: str | None = None
    entry = marker.get(key)
    if not _marker_entry_valid(cache_dir, entry):
        try:
            entry, hit_network = _obtain(downloads, pattern, force, fetch, extract)
        except Exception as e:
            entry = None
            reason = f"{label} unavailable: {type(e).__name__}: {e}"
    if not isinstance(entry, dict):
        return None, reason, hit_network
    new_marker[key] = entry
    path = cache_dir / str(entry["path"])
    if entry.get("ldd_missing"):
        missing = entry["ldd_missing"]
        return None, f"{path} has unresolved libraries {missing}{missing_libs_hint}", hit_network
    return path, None, hit_network


def ensure_reference(cache_dir: Path | None = None, *, force: bool = False) -> ReferencePeers:
    """Fetch (if needed) and locate the reference peers.  Never raises for a
    missing peer: the reason is reported in the returned dataclass."""
    if cache_dir is None:
        env = os.environ.get("HONKER_REFERENCE_CACHE")
        cache_dir = Path(env) if env else DEFAULT_CACHE_DIR
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    downloads = cache_dir / "downloads"
    fetched = False

    with _file_lock(cache_dir / ".lock"):
        marker = {} if force else (_load_marker(cache_dir) or {})
        if marker.get("format") != MARKER_FORMAT or marker.get("versions") != {
            "honker": HONKER_PYPI_VERSION, "node": NODE_PACKAGE_VERSION,
        }:
            marker = {}
        new_marker: dict[str, object] = {
            "format": MARKER_FORMAT,
            "versions": {"honker": HONKER_PYPI_VERSION, "node": NODE_PACKAGE_VERSION},
        }

        ext_path, ext_reason, hit = _peer_artifact(
            cache_dir, downloads, force, marker, new_marker, "ext",
            pattern=f"honker-{HONKER_PYPI_VERSION}-*.whl",
            fetch=lambda: _fetch_wheel(cache_dir, downloads),
            extract=lambda p: _extract_ext(cache_dir, p),
            label="reference extension",
            missing_libs_hint="",
        )
        fetched = fetched or hit
        node_module, node_module_reason, hit = _peer_artifact(
            cache_dir, downloads, force, marker, new_marker, "node_module",
            pattern=f"*honker-node-linux-x64-gnu-{NODE_PACKAGE_VERSION}.tgz",
            fetch=lambda: _fetch_npm(cache_dir, downloads),
            extract=lambda p: _extract_node(cache_dir, p),
            label="reference Node module",
            missing_libs_hint=(
                " (it needs the system libsqlite3.so.0: apt-get install libsqlite3-0)"
            ),
        )
        fetched = fetched or hit

        if new_marker != marker:
            new_marker["written_at"] = int(time.time())
            _write_atomic(cache_dir / "marker.json",
                          (json.dumps(new_marker, indent=2) + "\n").encode())

    ext_python, sqlite_version, ext_python_reason = _find_ext_python(ext_path)
    node, node_version, node_reason = _find_node(node_module)
    return ReferencePeers(
        cache_dir=cache_dir,
        ext_path=ext_path,
        ext_reason=ext_reason,
        node_module=node_module,
        node_module_reason=node_module_reason,
        ext_python=ext_python,
        ext_python_reason=ext_python_reason,
        ext_python_sqlite_version=sqlite_version,
        node=node,
        node_version=node_version,
        node_reason=node_reason,
        fetched=fetched,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help=f"cache folder (default {DEFAULT_CACHE_DIR} or $HONKER_REFERENCE_CACHE)")
    ap.add_argument("--force", action="store_true", help="ignore the marker and re-download")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    peers = ensure_reference(args.cache_dir, force=args.force)
    elapsed = time.monotonic() - t0
    if args.json:
        print(json.dumps({**peers.as_dict(), "elapsed_s": round(elapsed, 3)}, indent=2))
    else:
        for k, v in peers.as_dict().items():
            print(f"{k:28} {v}")
        print(f"{'elapsed_s':28} {elapsed:.3f}")
    return 0 if (peers.ext_ok and peers.node_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
