"""JSON encoding of user values: standard ``json.dumps`` text, strict about what is JSON."""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(allow_nan=False)


def dumps(value: Any, what: str = "payload") -> str:
    """Encode ``value`` as JSON text, or raise before anything is written.

    ``TypeError`` for values JSON cannot represent (datetime, set, custom objects) and
    ``ValueError`` for NaN/Infinity, which other languages' JSON parsers reject.
    """
    try:
        return _encoder.encode(value)
    except TypeError as exc:
        raise TypeError(f"{what} is not JSON-serializable: {exc}") from None
    except ValueError as exc:
        raise ValueError(
            f"{what} is not valid JSON: {exc} (NaN and Infinity are rejected)"
        ) from None


def loads(text: str | bytes | None) -> Any:
    """Strictly decode stored JSON text; empty or missing text decodes to ``None``."""
    if text is None or text == "" or text == b"":
        return None
    return json.loads(text)
