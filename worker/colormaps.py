"""Scales and colour maps for the optional ``scale`` and ``colormap`` request fields.

A pixel's position between the white and the black level, ``t`` in [0, 1], goes through the
scale (``linear``, ``sqrt`` or ``log``: more grey levels for the faint end) and then a lookup
table of :data:`STEPS` entries. ``inverted`` (the C server's picture: spots dark on white) and
``grey`` (spots bright on black) are grey ramps; ``viridis`` is a perceptual heat map (lightness
rises monotonically, readable in grey print and by colour-blind users) through five anchors of
matplotlib's viridis, interpolated. Saturated pixels stay red and masked ones white in every
map: viridis holds neither colour, so both stand out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pyis_common.protocol import COLORMAPS, SCALES

__all__ = ["COLORMAPS", "GREYS", "SCALES", "apply", "index", "table"]
STEPS = 1024  # finer than 8 bits out, so the scale's curve does not band
GREYS = frozenset({"inverted", "grey"})  # drawn as one-channel JPEGs when nothing is red
LOG_RANGE = 1000.0  # log: t = 1 is 1000x t = 0.001, three decades of spot intensity
VIRIDIS = np.array(  # (t, r, g, b): dark violet, blue, teal, green, yellow
    [
        (0.00, 68, 1, 84),
        (0.25, 59, 82, 139),
        (0.50, 33, 145, 140),
        (0.75, 94, 201, 98),
        (1.00, 253, 231, 37),
    ]
)


def _curve(scale: str, t: np.ndarray) -> np.ndarray:
    if scale == "linear":
        return t
    if scale == "sqrt":
        return np.sqrt(t)
    if scale == "log":
        return np.log1p(t * (LOG_RANGE - 1)) / np.log(LOG_RANGE)
    raise ValueError(f"unknown scale {scale!r}")


@lru_cache(maxsize=16)
def table(scale: str, colormap: str) -> np.ndarray:
    """(STEPS, 3) uint8: the colour of t = i / (STEPS - 1)."""
    level = _curve(scale, np.linspace(0.0, 1.0, STEPS))
    if colormap == "inverted":
        grey = 255.0 - level * 255.0
    elif colormap == "grey":
        grey = level * 255.0
    elif colormap == "viridis":
        rgb = [np.interp(level, VIRIDIS[:, 0], VIRIDIS[:, c]) for c in (1, 2, 3)]
        return np.round(np.stack(rgb, axis=1)).astype(np.uint8)
    else:
        raise ValueError(f"unknown colormap {colormap!r}")
    grey = np.round(grey).astype(np.uint8)
    return np.repeat(grey[:, None], 3, axis=1)


def index(data: np.ndarray, white: np.ndarray | float, black: np.ndarray | float) -> np.ndarray:
    """(h, w) uint16 table index of ``data`` between ``white`` and ``black`` (scalars, or
    planes of data's shape: automatic levels)."""
    steps = np.float32(STEPS - 1)
    per_count = np.asarray(np.subtract(black, white, dtype=np.float32))  # the levels first,
    np.maximum(per_count, np.float32(1e-12), out=per_count)  # then four passes over the data
    np.divide(steps * np.float32(1 + 2**-20), per_count, out=per_count)  # black stays black
    t = data.astype(np.float32)
    t -= white
    t *= per_count
    np.clip(t, 0.0, steps, out=t)
    return t.astype(np.uint16)


def apply(idx: np.ndarray, lut: np.ndarray, channels: int) -> np.ndarray:
    """(h, w, channels) uint8: one ``take`` per channel from a 1-D table (a (STEPS, 3) fancy
    index is 4x slower)."""
    out = np.empty((*idx.shape, channels), np.uint8)
    for c in range(channels):
        np.take(np.ascontiguousarray(lut[:, c]), idx, out=out[:, :, c])
    return out
