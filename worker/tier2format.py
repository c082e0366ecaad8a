"""The stored form of a tier-2 entry (worker/tier2.py), a fixed binary layout, never pickle::

    | u32 BE header length | JSON header | data bytes | packbits(valid) | packbits(saturated) |

The header names dtype (from an allow-list: every integer and float type a reader returns, so
no entry is written that would always be rejected) and shape; the reader checks the shape
against what the key's request produces (``xsize``/``ysize``) and every length against both
before building an array. It also carries the frame's level statistics
(:class:`worker.levels.LevelStats`: two small float32 grids, base64), checked field by field.
Another worker of the ESAF wrote what is read here: nothing in it is trusted.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, TypeGuard

import numpy as np

from worker.cache import Key
from worker.levels import LevelStats
from worker.reduce import MAX_SIDE, Reduced

DTYPES = frozenset(
    {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"}
)
HEADER = struct.Struct(">I")
MAX_HEADER = 1 << 20
STAT_COUNTS = ("n", "nSaturated")  # the stats that count pixels: ints
MAX_STAT_INT = 1 << 63  # JSON ints are unbounded; a larger one would overflow float()


class DecodeError(ValueError):
    pass


Entry = tuple[Reduced, dict[str, Any], LevelStats | None]


def encode(
    reduced: Reduced, meta: dict[str, Any], levels: LevelStats | None = None
) -> bytes | None:
    """The stored form, native byte order; None for a dtype ``decode`` would refuse."""
    data = np.ascontiguousarray(reduced.data, reduced.data.dtype.newbyteorder("="))
    if data.dtype.name not in DTYPES:
        return None
    header = json.dumps(
        {
            "dtype": data.dtype.name,
            "shape": list(data.shape),
            "stats": reduced.stats,
            "meta": meta,
            "levels": None if levels is None else levels.to_json(),
        },
        separators=(",", ":"),
    ).encode()
    return b"".join(
        (
            HEADER.pack(len(header)),
            header,
            data.tobytes(),
            np.packbits(reduced.valid).tobytes(),
            np.packbits(reduced.saturated).tobytes(),
        )
    )


def shape_fits(shape: tuple[int, int], key: Key) -> bool:
    """Whether stage 1 of ``key``'s request can have this (h, w): ``xsize`` alone fixes the
    width; with ``ysize`` the image touches one side of the xsize x ysize box (reduce.py)."""
    h, w = shape
    if key.ysize is None:
        return w == key.xsize and 0 < h <= MAX_SIDE
    return (w == key.xsize and 0 < h <= key.ysize) or (h == key.ysize and 0 < w <= key.xsize)


def decode(blob: bytes, key: Key) -> Entry:
    """Check everything before trusting it: another worker of this ESAF wrote it."""
    if len(blob) < HEADER.size:
        raise DecodeError("short value")
    (hlen,) = HEADER.unpack_from(blob)
    if hlen > MAX_HEADER or HEADER.size + hlen > len(blob):
        raise DecodeError("bad header length")
    header = _header(blob[HEADER.size : HEADER.size + hlen])
    dtype, shape = header.get("dtype"), header.get("shape")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DecodeError("bad dtype")
    if not isinstance(shape, list) or len(shape) != 2:
        raise DecodeError("bad shape")
    h, w = shape
    if not all(type(v) is int for v in (h, w)) or not shape_fits((h, w), key):
        raise DecodeError("shape does not match the request")
    n = h * w
    nbytes, nbits = n * np.dtype(dtype).itemsize, (n + 7) // 8
    start = HEADER.size + hlen
    if len(blob) != start + nbytes + 2 * nbits:
        raise DecodeError("length does not match shape")
    data = np.frombuffer(blob, dtype, n, start).reshape(h, w)
    bits = np.frombuffer(blob, np.uint8, 2 * nbits, start + nbytes)
    valid = np.unpackbits(bits[:nbits], count=n).astype(bool).reshape(h, w)
    saturated = np.unpackbits(bits[nbits:], count=n).astype(bool).reshape(h, w)
    stats, meta = header.get("stats"), header.get("meta")
    if not _stats_ok(stats) or not isinstance(meta, dict):
        raise DecodeError("bad stats or meta")
    levels = header.get("levels")
    try:
        level_stats = None if levels is None else LevelStats.from_json(levels)
    except (ValueError, TypeError, OverflowError) as exc:  # an int too large for a float
        raise DecodeError(str(exc)) from None
    return Reduced(data, valid, saturated, stats), meta, level_stats


def _header(text: bytes) -> dict[str, Any]:
    """The JSON header, an object; any other JSON (or none) is one DecodeError."""
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, or nested past the stack
        raise DecodeError("bad header") from None
    if not isinstance(header, dict):
        raise DecodeError("bad header")
    return header


def _stats_ok(stats: Any) -> TypeGuard[dict[str, float | int]]:
    """What reduce.stats writes: pixel counts, and finite numbers (the levels compute with them)."""
    return isinstance(stats, dict) and all(_stat_ok(k, v) for k, v in stats.items())


def _stat_ok(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if name in STAT_COUNTS:
        return isinstance(value, int) and 0 <= value < MAX_STAT_INT
    if isinstance(value, int):
        return abs(value) < MAX_STAT_INT
    return isinstance(value, float) and math.isfinite(value)
