"""Automatic levels from the full-resolution frame: background and noise, block by block.

The C server took black = mean + stddev and white = mean - stddev of the *max-pooled* image, so
one hot pixel or a few strong spots set the levels, and each output size saw a different image
(a box's maximum grows with the box). Here stage 1 measures the frame itself, on a strided
sample of at most :data:`SAMPLE_PIXELS` of its valid, unsaturated pixels, in a grid of about
:data:`GRID` x :data:`GRID` blocks:

- background: the block's median (spots, rings' narrow peaks and hot pixels do not move it);
- noise: the rms of differences between sampled neighbours (``s`` pixels apart, so a CCD's
  correlated neighbours do not hide it), clipped at 4 sigma of their MAD so spots are not noise;
- each grid is smoothed by a 3x3 median over blocks, and empty blocks (gaps) take the frame's.

A pixel is drawn on a scale from white at ``background - span / 8`` (the background light grey,
~227) to black at ``background + span``, ``span = max(10 noise, 4 counts)``: mid grey is ~4.4
sigma above the pixel's own background, above the maximum of the noise in a box of a 256 px
thumbnail, below the peak of the spots DIALS finds (README, "Automatic levels"). The per-block
levels are interpolated over the output, so a radial or diffuse background (image plates, CCDs)
stays light where a single pair would go dark. ``white``/``black`` are the frame's pair (the
median block), reported as wval_used/bval_used.

The statistics depend on the frame alone, never on xsize, zoom or segment.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from worker.formats import Frame

SAMPLE_PIXELS = 1 << 17  # 128 K pixels: a stride-7 sample of a Pilatus 6M, ~200 per block
GRID = 24  # blocks on the long side: a Pilatus 6M block is ~100 px, wider than any spot
MIN_BLOCK = 8  # sample pixels on a block's side: 64 values at least for a median
MIN_VALUES = 16  # a block with fewer valid samples (a gap) takes the frame's values
SIGMAS = 10.0  # black this many noise sigma above the background: only real spots reach it
MIN_SPAN = 4.0  # counts: a photon-counting frame with ~0 background still needs 2+ photons
WHITE_FRACTION = 1 / 8  # white this far below the background: background grey ~227
CLIP = 4.0  # neighbour differences beyond this many MAD-sigma are spots, not noise
VERSION = 1
MAX_GRID = 64  # a decoded grid larger than this was not written by us
MAX_SIDE = 1 << 20  # nor a frame side larger than this


@dataclass(frozen=True)
class LevelStats:
    """Per-block background and span of one frame; JSON-safe through :meth:`to_json`."""

    shape: tuple[int, int]  # the frame's (height, width)
    block: tuple[float, float]  # a block's (height, width) in frame pixels
    background: np.ndarray  # float32 (gy, gx)
    span: np.ndarray  # float32 (gy, gx): black - background
    white: float  # the frame's pair: reported when the per-block levels are used
    black: float

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "shape": list(self.shape),
            "block": list(self.block),
            "grid": list(self.background.shape),
            "background": _pack(self.background),
            "span": _pack(self.span),
            "white": self.white,
            "black": self.black,
        }

    @classmethod
    def from_json(cls, obj: Any) -> LevelStats:
        """Check every field: the value crossed Redis, written by another worker."""
        if not isinstance(obj, dict) or obj.get("v") != VERSION:
            raise ValueError("bad level stats")
        shape, block = obj.get("shape"), obj.get("block")
        if not (_numbers(shape, int) and _numbers(block, float)) or not (
            all(0 < v <= MAX_SIDE for v in shape) and all(v > 0 for v in block)
        ):
            raise ValueError("bad level stats geometry")
        grid = obj.get("grid")
        if not (_numbers(grid, int) and all(0 < v <= MAX_GRID for v in grid)):
            raise ValueError("bad level stats grid size")
        background, span = (_unpack(obj.get(k), (grid[0], grid[1])) for k in ("background", "span"))
        pair = [obj.get("white"), obj.get("black")]
        if not (_numbers(pair, float) and pair[1] > pair[0]):
            raise ValueError("bad level stats pair")
        white, black = pair
        if not (np.isfinite(background).all() and np.isfinite(span).all() and (span > 0).all()):
            raise ValueError("bad level stats values")
        return cls((shape[0], shape[1]), (block[0], block[1]), background, span, white, black)

    def planes(
        self, rows: slice, cols: slice, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(white, black) float32 planes over an output of ``shape`` showing the frame's window
        ``rows`` x ``cols``: the block levels interpolated at each output pixel's centre.

        Bilinear interpolation is linear, so each plane is the interpolated grid of its own
        level, one matrix product per plane: a new size or segment costs two small products
        instead of a dozen passes over the output (2.9 -> 0.3 ms for a 600 px output)."""
        left = _weights(self.background.shape[0], self.block[0], rows, shape[0])
        right = _weights(self.background.shape[1], self.block[1], cols, shape[1]).T
        white = self.background - self.span * np.float32(WHITE_FRACTION)
        black = self.background + self.span
        return left @ white @ right, left @ black @ right


def _pack(grid: np.ndarray) -> str:
    """float32 bytes as base64: exact (a JSON decimal would change the picture after tier 2)."""
    return base64.b64encode(np.ascontiguousarray(grid, "<f4").tobytes()).decode()


def _unpack(text: Any, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(text, str) or len(text) > 4 * (MAX_GRID * MAX_GRID * 4) // 3 + 4:
        raise ValueError("bad level stats grid")
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 4 * shape[0] * shape[1]:
        raise ValueError("level stats grid does not match its size")
    return np.frombuffer(raw, "<f4").reshape(shape).astype(np.float32)


def _numbers(values: Any, kind: type) -> TypeGuard[list[Any]]:
    """A list of two finite numbers (ints when ``kind`` is int, never bools)."""
    if not isinstance(values, list) or len(values) != 2:
        return False
    ok = (int,) if kind is int else (int, float)
    return all(
        isinstance(v, ok) and not isinstance(v, bool) and math.isfinite(v) and abs(v) < 1e12
        for v in values
    )


def _axis(grid_len: int, block: float, window: slice, out_len: int) -> tuple[np.ndarray, ...]:
    """Lower grid index, upper grid index and weight of the upper one, per output pixel."""
    span = window.stop - window.start
    centre = window.start + (np.arange(out_len, dtype=np.float64) + 0.5) * span / out_len
    pos = np.clip(centre / block - 0.5, 0.0, grid_len - 1.0)
    low = np.floor(pos).astype(np.intp)
    high = np.minimum(low + 1, grid_len - 1)
    return low, high, (pos - low).astype(np.float32)


def _weights(grid_len: int, block: float, window: slice, out_len: int) -> np.ndarray:
    """(out_len, grid_len) float32: each output pixel's bilinear weights on the block grid,
    two non-zero ones per row (one of 1 at the edges)."""
    low, high, upper = _axis(grid_len, block, window, out_len)
    weights = np.zeros((out_len, grid_len), np.float32)
    pixels = np.arange(out_len)
    weights[pixels, low] = 1 - upper
    weights[pixels, high] += upper  # high == low at the last block: the weights add up to 1
    return weights


def _sample(frame: Frame, saturation: float) -> tuple[np.ndarray, int]:
    """float32 strided sample with NaN where a pixel is masked, saturated or not finite."""
    height, width = frame.data.shape
    step = max(1, math.ceil(math.sqrt(height * width / SAMPLE_PIXELS)))
    raw = frame.data[::step, ::step]
    values = raw.astype(np.float32)
    bad = ~np.isfinite(values) | (raw >= saturation)
    if frame.negative_masked:  # the mask is data < 0: no need to make it for the frame
        bad |= raw < 0
    elif frame.mask is not None:
        bad |= frame.mask[::step, ::step]
    values[bad] = np.nan
    return values, step


def _blocks(values: np.ndarray, side: int) -> np.ndarray:
    """(gy, gx, side, side) view of the sample padded with NaN to whole blocks."""
    gy, gx = -(-values.shape[0] // side), -(-values.shape[1] // side)
    padded = np.full((gy * side, gx * side), np.nan, np.float32)
    padded[: values.shape[0], : values.shape[1]] = values
    return padded.reshape(gy, side, gx, side).transpose(0, 2, 1, 3)


def _median(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over the last axis ignoring NaN (sorted last), and the count of valid values."""
    ordered = np.sort(values, axis=-1)
    count = np.count_nonzero(~np.isnan(ordered), axis=-1)
    middle = np.take_along_axis(ordered, np.maximum(count // 2, 0)[..., None], -1)[..., 0]
    return np.where(count > 0, middle, np.nan), count


def _median3(grid: np.ndarray) -> np.ndarray:
    """3x3 median over blocks (edges repeated): one block on a ring or a shadow is outvoted."""
    padded = np.pad(grid, 1, mode="edge")
    h, w = grid.shape
    shifted = [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    return np.median(np.stack(shifted), axis=0).astype(np.float32)


def _fill(grid: np.ndarray, enough: np.ndarray, fallback: float) -> np.ndarray:
    return np.where(enough & np.isfinite(grid), grid, np.float32(fallback)).astype(np.float32)


def _measure(values: np.ndarray, side: int, integers: bool) -> tuple[np.ndarray, ...]:
    """Per block: median, valid count, clipped neighbour-difference noise, difference count."""
    blocks = _blocks(values, side)
    gy, gx = blocks.shape[:2]
    background, count = _median(blocks.reshape(gy, gx, -1))
    diffs = (blocks[..., 1:] - blocks[..., :-1]).reshape(gy, gx, -1)  # NaN if either is masked
    mad = _median(np.abs(diffs))[0] * np.float32(1.4826)
    limit = CLIP * np.maximum(mad, np.float32(1.0 if integers else 1e-6))
    with np.errstate(invalid="ignore"):
        kept = np.where(np.abs(diffs) <= limit[..., None], diffs, np.nan)
    n = np.count_nonzero(~np.isnan(kept), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise = np.sqrt(np.nansum(kept * kept, axis=-1) / n / 2).astype(np.float32)
    return background, count, noise, n


def compute(frame: Frame, saturation: float) -> LevelStats:
    """Level statistics of the whole frame; call before stage 1 may write into ``frame.data``.

    Pixels at or below 0 on a frame whose background is far above 0 hold no data (outside an
    image plate's or a CCD's active circle, a beam-stop shadow): they are left out, else the
    blocks on the circle's edge get a low median and draw a black rim.
    """
    height, width = frame.data.shape
    values, step = _sample(frame, saturation)
    side = max(MIN_BLOCK, -(-max(values.shape) // GRID))
    integers = frame.data.dtype.kind in "iu"
    min_span = MIN_SPAN if integers else 1e-6
    for _ in range(2):
        background, count, noise, n = _measure(values, side, integers)
        enough = count >= MIN_VALUES  # none at all (a frame all masked): flat levels at 0
        frame_background = float(np.median(background[enough])) if enough.any() else 0.0
        measured = noise[enough & (n > 0)]  # n = 0: no two valid neighbours in the block
        frame_noise = float(np.median(measured)) if measured.size else 0.0
        if not frame_background > max(SIGMAS * frame_noise, min_span):
            break
        with np.errstate(invalid="ignore"):
            values[values <= 0] = np.nan
    if not integers:  # floats have no unit: a span under a millionth of the level is noise
        min_span = 1e-6 * max(1.0, abs(frame_background))
    background = _median3(_fill(background, enough, frame_background))
    noise = _median3(_fill(noise, enough & (n > 0), frame_noise))
    span = np.maximum(np.float32(SIGMAS) * noise, np.float32(min_span))
    frame_span = max(SIGMAS * frame_noise, min_span)
    return LevelStats(
        shape=(height, width),
        block=(side * step, side * step),
        background=background,
        span=span,
        white=frame_background - frame_span * WHITE_FRACTION,
        black=frame_background + frame_span,
    )
