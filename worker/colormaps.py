"""Scales and colour maps for the optional ``scale`` and ``colormap`` request fields: the
mapping of counts to table indices and colours. The tables themselves are defined once in
pyis_common/colortables.py, which is-web also serves to the page (its own contrast changes).

Saturated pixels stay red and masked ones white in every map (worker/render.py): viridis holds
neither colour, so both stand out. Both are two more entries of the drawing tables here
(:data:`MASKED_INDEX`, :data:`RED_INDEX`), so a picture is one ``take`` from its indices,
masked and saturated pixels included, not a take and then a boolean assignment per colour.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pyis_common.colortables import C_LOOK, GREYS, MASKED, RED, STEPS, table
from pyis_common.protocol import COLORMAPS, SCALES

__all__ = [
    "COLORMAPS",
    "C_LOOK",
    "GREYS",
    "MASKED_INDEX",
    "RED_INDEX",
    "SCALES",
    "apply",
    "grey_table",
    "index",
    "packed",
    "rgbx_table",
    "table",
]

MASKED_INDEX = STEPS  # the drawing tables' entry for a masked box: white
RED_INDEX = STEPS + 1  # and for a saturated one: red (in the RGBX tables only)


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


def packed(rgb: tuple[int, int, int]) -> np.uint32:
    """One RGBX pixel as the uint32 whose bytes in memory are R, G, B, X (any byte order)."""
    return np.array([[*rgb, 0]], np.uint8).view(np.uint32)[0, 0]


@lru_cache(maxsize=16)
def grey_table(scale: str, colormap: str) -> np.ndarray:
    """(STEPS + 1,) uint8: a grey map's level per index, then white for masked boxes."""
    return np.append(table(scale, colormap)[:, 0], np.uint8(MASKED[0]))


@lru_cache(maxsize=16)
def rgbx_table(scale: str, colormap: str) -> np.ndarray:
    """(STEPS + 2,) uint32 RGBX pixels (:func:`packed`): the map, then masked white and red."""
    rgbx = np.zeros((STEPS + 2, 4), np.uint8)
    rgbx[:STEPS, :3] = table(scale, colormap)
    rgbx[MASKED_INDEX, :3], rgbx[RED_INDEX, :3] = MASKED, RED
    return rgbx.view(np.uint32)[:, 0].copy()


def apply(idx: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut`` at every index: (h, w, 1) grey from a :func:`grey_table`, (h, w, 4) RGBX from
    an :func:`rgbx_table` (one gather of 4-byte pixels; a gather per channel into a strided
    RGB array was 5x slower)."""
    out = np.empty(idx.shape, lut.dtype)
    np.take(lut, idx, out=out)
    return out.view(np.uint8).reshape(*idx.shape, -1)
