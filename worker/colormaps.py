"""Scales and colour maps for the optional ``scale`` and ``colormap`` request fields: the
mapping of counts to table indices and colours. The tables themselves are defined once in
pyis_common/colortables.py, which is-web also serves to the page (its own contrast changes).

Saturated pixels stay red and masked ones white in every map (worker/render.py): viridis holds
neither colour, so both stand out.
"""

from __future__ import annotations

import numpy as np

from pyis_common.colortables import C_LOOK, GREYS, STEPS, table
from pyis_common.protocol import COLORMAPS, SCALES

__all__ = ["COLORMAPS", "C_LOOK", "GREYS", "SCALES", "apply", "index", "table"]


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
