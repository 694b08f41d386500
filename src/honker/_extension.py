"""Locating and loading the reference's compiled SQLite extension (optional).

This library is pure Python and ships no native code; these helpers exist so code written
for the reference keeps working when the user brings the compiled ``libhonker_ext``
(for example to give a ``sqlite3`` CLI session the same ``honker_*`` functions).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

EXTENSION_ENTRYPOINT = "sqlite3_honkerext_init"


def _filename() -> str:
    if sys.platform == "win32":
        return "honker_ext.dll"
    if sys.platform == "darwin":
        return "libhonker_ext.dylib"
    return "libhonker_ext.so"


def extension_info() -> tuple[str, str]:
    """``(path to the loadable extension, entry point)``.

    Looks at ``$HONKER_EXTENSION_PATH``, then ``<package>/_lib/``, then
    ``target/release/`` of every ancestor directory. Raises ``FileNotFoundError`` when
    nothing is found (the usual case for this pure-Python package).
    """
    env = os.environ.get("HONKER_EXTENSION_PATH")
    if env:
        if os.path.isfile(env):
            return env, EXTENSION_ENTRYPOINT
        raise FileNotFoundError(f"HONKER_EXTENSION_PATH points at a missing file: {env}")
    package_dir = Path(__file__).resolve().parent
    name = _filename()
    candidates = [package_dir / "_lib" / name]
    candidates += [parent / "target" / "release" / name for parent in package_dir.parents]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate), EXTENSION_ENTRYPOINT
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        "Honker SQLite extension not found; searched: "
        f"{searched} (set HONKER_EXTENSION_PATH to a compiled libhonker_ext; this "
        "pure-Python package does not need it: see honker.attach())"
    )


def load_extension(conn: Any) -> None:
    """Load the compiled extension into a DB-API connection (e.g. ``sqlite3.Connection``)."""
    path, entry = extension_info()
    enable = getattr(conn, "enable_load_extension", None)
    try:
        if enable is not None:
            enable(True)
        loader = getattr(conn, "load_extension", None)
        if loader is None:
            conn.execute("SELECT load_extension(?, ?)", (path, entry))
        else:
            try:
                loader(path, entrypoint=entry)
            except TypeError:
                conn.execute("SELECT load_extension(?, ?)", (path, entry))
    finally:
        if enable is not None:
            enable(False)
