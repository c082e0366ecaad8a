"""The scales and colour maps' lookup tables, one definition for the worker and the viewer.

The worker draws a picture through these tables (worker/colormaps.py); is-web serves the same
tables to the browser (``/api/looks``) so the page can map counts it holds itself (a contrast
change without a request) and draw the very pixels the worker would. A pixel's position between
the white and the black level, ``t`` in [0, 1], goes through the scale (``linear``, ``sqrt`` or
``log``: more grey levels for the faint end) and then a table of :data:`STEPS` entries.
``inverted`` (spots dark on white) and ``grey`` (spots bright on black) are grey ramps;
``viridis`` is a perceptual heat map through five anchors of matplotlib's viridis, interpolated.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

import numpy as np

from pyis_common.protocol import COLORMAPS, SCALES

STEPS = 1024  # finer than 8 bits out, so the scale's curve does not band
GREYS = frozenset({"inverted", "grey"})  # drawn as one-channel JPEGs when nothing is red
C_LOOK = ("linear", "inverted")  # with scalar levels: the C server's own formula, not a table
LOG_RANGE = 1000.0  # log: t = 1 is 1000x t = 0.001, three decades of spot intensity
RED = (255, 0, 0)  # saturated pixels, in every map
MASKED = (255, 255, 255)  # masked boxes (gaps, bad pixels): white in every map
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


def for_the_page() -> dict[str, Any]:
    """Every table as base64 RGB bytes (``"scale/colormap"``), with what the page needs to
    index them as the worker does (isweb/static/js/mapping.js)."""
    tables = {
        f"{s}/{c}": base64.b64encode(table(s, c).tobytes()).decode()
        for s in SCALES
        for c in COLORMAPS
    }
    return {
        "steps": STEPS,
        "c_look": list(C_LOOK),
        "red": list(RED),
        "masked": list(MASKED),
        "tables": tables,
    }
