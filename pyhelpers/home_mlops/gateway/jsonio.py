"""JSON in and out of the front door: orjson where it is installed (the images pin it), else the stdlib.

orjson parses and writes several times faster than ``json``; it is stricter on two
things the stdlib takes (``NaN``/``Infinity`` literals, integers past 64 bits), so a
body orjson refuses is read again by ``json.loads``: the happy path is fast and a
hostile body gets exactly the answer it got before (a 422 naming the field, not a 400).
"""
from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the images and the venv pin orjson
    orjson = None  # type: ignore[assignment]


class NotSerializable(ValueError):
    """A value JSON cannot carry (a lone surrogate, NaN for the stdlib writer, an unknown type)."""


if orjson is not None:
    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)  # NaN, 1e999, big integers; raises ValueError on real junk

    def dumps(value: Any) -> bytes:
        """Compact JSON bytes; numpy arrays and scalars as lists and numbers, NaN as null."""
        try:
            return orjson.dumps(value, option=_OPTIONS)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise NotSerializable(str(exc)) from None
else:  # pragma: no cover
    def loads(text: str | bytes) -> Any:
        return json.loads(text)

    def dumps(value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_tolist).encode()
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise NotSerializable(str(exc)) from None

    def _tolist(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "isoformat"):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
