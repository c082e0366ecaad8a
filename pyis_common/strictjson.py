"""Strict, canonical JSON for every hop: the client protocol and the internal channels alike.

``dumps`` writes what the C server wrote (jansson's JSON_SORT_KEYS|JSON_COMPACT), so replies
compare byte for byte; ``loads`` refuses NaN and Infinity, which RFC 8259 does not allow and a
hostile peer would otherwise slip into a size or a level.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A number too large for a double (``1e999``) would parse as infinity: refused too."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:32]} is out of range for a number")
    return value


def loads(data: bytes | str) -> Any:
    """Strict JSON: NaN and Infinity are refused, as RFC 8259 says, and so is a number that
    overflows to infinity. (``json.loads`` itself,
    given options, builds a new decoder for every call: ours is made once.)"""
    if isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    elif not isinstance(data, str):
        raise TypeError(f"JSON must be str or bytes, not {type(data).__name__}")
    if data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return _DECODER.decode(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON with sorted keys, the C server's JSON_SORT_KEYS|JSON_COMPACT."""
    return _ENCODER.encode(obj).encode()


def _jsonable(obj: Any) -> Any:
    """numpy scalars and the like become plain numbers; anything else is a bug."""
    if hasattr(obj, "item"):
        value = obj.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable
)
