"""Argument checks shared by the public API (ids and SQL parameters)."""

from __future__ import annotations

import math
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_str(value: Any, name: str, *, optional: bool = False) -> Any:
    """``value`` if it is a ``str`` (or ``None`` when ``optional``), else a ``TypeError``.

    Every "must be a str" message of the public API has this one shape:
    ``"<name> must be a str, not <type>"`` (``"a str or None"`` when optional).
    """
    if isinstance(value, str) or (optional and value is None):
        return value
    wanted = "a str or None" if optional else "a str"
    raise TypeError(f"{name} must be {wanted}, not {type(value).__name__}")


def check_int64(value: Any, name: str) -> int:
    """``value`` as an ``int`` that SQLite can store (signed 64-bit), else a clear error.

    Anything ``int()`` accepts is still accepted (e.g. ``"42"``), except ``bool``:
    ``True`` is never a meaningful id or count. Raises ``TypeError`` for a non-number and
    ``ValueError`` naming ``name`` for an integer outside SQLite's range.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    if not isinstance(value, int):
        try:
            value = int(value)
        except OverflowError:  # float('inf')
            raise ValueError(f"{name} must be a finite integer, got {value!r}") from None
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer, got {value}")
    return int(value)


def check_id(value: Any) -> int:
    """A job id: :func:`check_int64` named ``job_id``."""
    return check_int64(value, "job_id")


def check_opt_id(value: Any) -> int | None:
    """A job id or ``None`` (meaning "every job")."""
    return None if value is None else check_int64(value, "job_id")


def check_int64_params(params: Any) -> None:
    """Refuse SQL parameters that are integers SQLite cannot store, naming their index."""
    for index, value in enumerate(params):
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(
                f"SQL parameter {index} must fit in a signed 64-bit integer, got {value}"
            )


def check_unique(unique_key: Any, unique_for_s: Any) -> tuple[str, int | None]:
    """Validate ``unique_key`` / ``unique_for_s``: ``(key, window in whole seconds)``."""
    if unique_key is None:
        raise ValueError("unique_for_s needs a unique_key")
    if not isinstance(unique_key, str):
        raise TypeError(f"unique_key must be a str, not {type(unique_key).__name__}")
    if not unique_key:
        raise ValueError("unique_key must not be empty")
    if unique_for_s is None:
        return unique_key, None
    if isinstance(unique_for_s, bool) or not isinstance(unique_for_s, (int, float)):
        raise TypeError(f"unique_for_s must be a number, not {type(unique_for_s).__name__}")
    if not math.isfinite(unique_for_s) or unique_for_s < 0:
        raise ValueError(f"unique_for_s must be a finite number >= 0, got {unique_for_s!r}")
    return unique_key, math.ceil(unique_for_s)
