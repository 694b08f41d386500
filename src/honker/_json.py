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


class LazyPayload:
    """Base of objects carrying stored JSON text, decoded on first access and cached."""

    __slots__ = ("_decoded", "_payload", "_raw")

    _raw: str | None
    _decoded: bool
    _payload: Any

    def _decode(self, raw: str | None) -> Any:
        return loads(raw)

    @property
    def payload(self) -> Any:
        """The decoded JSON payload (decoded on first access, then cached)."""
        if not self._decoded:
            self._payload = self._decode(self._raw)
            self._decoded = True
        return self._payload
