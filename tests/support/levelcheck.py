"""Grade a rendered JPEG against the spots found in the raw frame (the level-quality figures).

A spot is *shown* when the output pixel holding its brightest source pixel, or one of its eight
neighbours, is dark (grey <= 128) or red: the server reduces from its max-pyramid, whose box
edges may fall up to one box away from an exact partition (worker/pyramid.py). The
*background* is every output pixel whose source box is valid, unsaturated and at least two
source pixels away from any strong pixel (one more output pixel of margin, so a spot's JPEG
ringing is not graded as background).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from tests.support.dispersion import Spots

DARK = 128


@dataclass(frozen=True)
class Figures:
    spots_shown: float  # % of spots dark or red
    background_median: float  # grey
    background_dark: float  # % of background pixels <= DARK
    bval: float

    def row(self) -> str:
        return (
            f"{self.spots_shown:5.1f} % shown, background {self.background_median:5.1f} grey, "
            f"{self.background_dark:4.1f} % dark, black {self.bval:g}"
        )


def _box_of(src: int, dst: int, index: np.ndarray) -> np.ndarray:
    """Output pixel of each source pixel: boxes have edges at floor(i * src / dst)."""
    if dst >= src:  # nearest sampling: output j shows source ((2j + 1) * src) // (2 dst)
        shown = ((2 * np.arange(dst) + 1) * src) // (2 * dst)
        return np.minimum(np.searchsorted(shown, index, side="left"), dst - 1)
    edges = (np.arange(dst + 1) * src) // dst
    return np.searchsorted(edges, index, side="right") - 1


def _pool_any(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Output pixels whose box holds a True source pixel."""
    rows, cols = np.nonzero(mask)
    out = np.zeros(shape, bool)
    out[_box_of(mask.shape[0], shape[0], rows), _box_of(mask.shape[1], shape[1], cols)] = True
    return out


def grade(
    jpeg: bytes, spots: Spots, valid: np.ndarray, saturated: np.ndarray, bval: float
) -> Figures:
    """``valid``/``saturated``: the reduced image's masks (output shape)."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.int16)
    rgb = rgb[rgb.shape[0] - valid.shape[0] :]  # drop a label banner, if any
    shape = valid.shape
    height, width = spots.strong.shape
    red = (rgb[..., 0] >= 160) & (rgb[..., 1] <= 96) & (rgb[..., 2] <= 96)
    dark = rgb.max(axis=2) <= DARK
    if spots.peaks.size:
        by = _box_of(height, shape[0], spots.peaks[:, 0])
        bx = _box_of(width, shape[1], spots.peaks[:, 1])
        ink = ndimage.binary_dilation(dark | red, structure=np.ones((3, 3), bool))
        shown = 100.0 * float(np.mean(ink[by, bx]))
    else:
        shown = 100.0
    near = ndimage.binary_dilation(spots.strong | spots.excluded, iterations=2)
    near = ndimage.binary_dilation(_pool_any(near, shape), structure=np.ones((3, 3), bool))
    background = valid & ~saturated & ~near
    grey = rgb[..., 1][background]  # green: equal to grey where the pixel is grey
    if grey.size == 0:
        return Figures(shown, float("nan"), float("nan"), bval)
    return Figures(shown, float(np.median(grey)), 100.0 * float(np.mean(grey <= DARK)), bval)
