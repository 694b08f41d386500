"""The distribution honker is published as, and the install hints the code prints.

The import package is ``honker`` (source-compatible with the reference implementation), but
the name ``honker`` on PyPI belongs to that reference implementation, so this library is the
distribution ``honker-py``. Every message telling a user to install an extra is built here.
"""

from __future__ import annotations

from . import __version__

DIST_NAME = "honker-py"


def install_hint(extra: str) -> str:
    """How to install the optional dependencies of ``extra``, from PyPI and in a checkout."""
    return (
        f"pip install '{DIST_NAME}[{extra}]' (in a checkout of honker: pip install -e '.[{extra}]')"
    )


def version_line() -> str:
    """``honker <distribution> <version>``, as ``python -m honker --version`` prints it.

    The distribution's version is ``honker.__version__`` (pyproject.toml reads it from
    there), so this is also right when run from a source tree that is not installed.
    """
    return f"honker {DIST_NAME} {__version__}"
