"""honker on PostgreSQL: ``honker.open("postgresql://...")`` (the ``honker[postgres]`` extra).

The same API as on SQLite, on a server that several machines share. This package is
imported only for a PostgreSQL URL, so the core stays dependency-free; without psycopg 3
and psycopg-pool installed it raises an ``ImportError`` that names the extra. See
docs/postgres.md for what differs (server time, ``%s`` placeholders, PgBouncer...).
"""

from __future__ import annotations

from typing import Any

EXTRA_MESSAGE = (
    "honker.open() of a PostgreSQL URL needs the honker[postgres] extra "
    "(psycopg 3 and psycopg-pool): pip install 'honker[postgres]'"
)


def is_url(path: Any) -> bool:
    """Whether ``path`` is a ``postgresql://`` or ``postgres://`` URL."""
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


def engine(
    url: str, schema: str | None = None, pool_size: int = 8, watcher_backend: Any = None
) -> Any:
    """A :class:`PostgresEngine` for ``url`` (``ImportError`` naming the extra without it).

    ``watcher_backend`` is SQLite-only: anything but None is refused with ``ValueError``.
    """
    if watcher_backend is not None:
        raise ValueError(
            f"watcher_backend={watcher_backend!r} is SQLite-only; a PostgreSQL database is "
            "woken by LISTEN/NOTIFY (leave watcher_backend unset)"
        )
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{EXTRA_MESSAGE} ({exc})") from exc
    from ._engine import PostgresEngine

    return PostgresEngine(url, schema=schema, pool_size=pool_size)
