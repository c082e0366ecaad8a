"""Stage 2, run for every request: grey levels, colours, label banner, JPEG.

The mapping is the C server's (``isJpeg.c``): spots dark on white, v <= white level -> white,
v >= black level -> black, linear grey between; saturated pixels red. Unlike the C server,
masked boxes (Pilatus gaps, bad pixels) are white, never red, and the banner works for every
height from 1 to 64 rows (heights 16-64 made its JPEG fail).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, ImageDraw, ImageFont

from pyis_common import colortables
from pyis_common.errors import BadRequest
from pyis_common.protocol import MAX_LABEL_HEIGHT
from worker import colormaps
from worker.reduce import Reduced
from worker.timings import Timings

RED = colortables.RED  # saturated pixels; masked ones are white (colortables.MASKED)
MARGIN = 2  # pixels of white left of the label text
# 4:4:4 keeps a one-pixel red (saturated) spot red; 4:2:0 would average it with three
# neighbours into pale pink. It costs 3-28% more bytes than 4:2:0 (the C server's default).
SUBSAMPLING = "444"
PILLOW_SUBSAMPLING = {"444": 0, "422": 1, "420": 2}
ENCODERS = ("simplejpeg", "pillow")


def _pair(auto: Any) -> tuple[float, float] | None:
    """Two finite numbers, else None (meta may have crossed Redis as JSON)."""
    try:
        white, black = (float(v) for v in auto)
    except (TypeError, ValueError):
        return None
    return (white, black) if math.isfinite(white) and math.isfinite(black) else None


def levels(
    stats: dict[str, Any],
    contrast: float,
    wval: float,
    auto: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """(white level, black level) as the C server chose them: contrast <= 0 -> mean + stddev,
    wval < 0 -> mean - stddev (truncated like C's int cast), white >= 0, black >= white + 1.

    ``auto`` (white, black) replaces mean -+ stddev when the file names its own display range
    (a DICOM window): the levels a user of that file expects before touching the contrast.
    """
    pair = _pair(auto)
    if pair is not None:
        auto_white, auto_black = pair
    else:
        mean, stddev = float(stats.get("mean", 0.0)), float(stats.get("stddev", 0.0))
        auto_white, auto_black = float(math.trunc(mean - stddev)), float(math.trunc(mean + stddev))
    black = float(contrast) if contrast > 0 else auto_black
    white = float(wval) if wval >= 0 else auto_white
    white = max(0.0, white)
    return white, max(black, white + 1.0)


def grey(reduced: Reduced, wval: float, bval: float) -> np.ndarray:
    """(h, w) uint8: 255 - (v - wval) / (bval - wval) * 255, clipped, truncated like C.

    float32 holds every count a detector reaches (< 2**24) exactly; one copy, in-place after.
    """
    if not bval > wval:
        raise ValueError("the black level must be above the white level; use levels()")
    level = reduced.data.astype(np.float32)
    level -= np.float32(wval)
    level *= np.float32(-255.0 / (bval - wval))
    level += np.float32(255.0)
    if not reduced.valid.all():  # masked boxes are white: no data, so neither black nor red
        np.copyto(level, 255.0, where=~reduced.valid)
    np.clip(level, 0.0, 255.0, out=level)
    return level.astype(np.uint8)


def to_rgbx(reduced: Reduced, wval: float, bval: float) -> np.ndarray:
    """(h, w, 4) uint8 RGBX (the JPEG encoder ignores X): grey on R, G and B, saturated valid
    pixels red. One multiply packs the grey into 4-byte pixels and one masked copy paints the
    red: a repeat to RGB and a boolean assignment per pixel cost 3x as much (bench/stages.py)."""
    level = grey(reduced, wval, bval)
    rgbx = np.empty(level.shape, np.uint32)
    np.multiply(level, colormaps.packed((1, 1, 1)), out=rgbx)  # g * 0x010101: g, g, g, 0
    if reduced.stats.get("nSaturated", 1):
        np.copyto(rgbx, colormaps.packed(RED), where=reduced.saturated)
    return rgbx.view(np.uint8).reshape(*level.shape, 4)


def to_rgb(reduced: Reduced, wval: float, bval: float) -> np.ndarray:
    """(h, w, 3) uint8: grey on all three channels, saturated valid pixels red."""
    return to_rgbx(reduced, wval, bval)[:, :, :3]


def _c_look(reduced: Reduced, wval: float, bval: float) -> np.ndarray:
    """(h, w, 1) grey when nothing is saturated (most frames), else (h, w, 4) RGBX with red."""
    if reduced.stats.get("nSaturated", 1) and reduced.saturated.any():
        return to_rgbx(reduced, wval, bval)
    return grey(reduced, wval, bval)[:, :, None]


def to_pixels(reduced: Reduced, wval: float, bval: float) -> np.ndarray:
    """(h, w, 1) grey when nothing is saturated (most frames), else (h, w, 3) with red.

    A one-channel JPEG encodes in about a third of the time and bytes of an RGB one, and
    shows the same picture; colour is only needed to draw saturated pixels red.
    """
    return _rgb(_c_look(reduced, wval, bval))


def _rgb(picture: np.ndarray) -> np.ndarray:
    """An RGBX picture's RGB view (a grey one as it is)."""
    return picture[:, :, :3] if picture.shape[2] == 4 else picture


def _colours(
    reduced: Reduced,
    white: np.ndarray | float,
    black: np.ndarray | float,
    scale: str,
    colormap: str,
) -> np.ndarray:
    """(h, w, 1) grey or (h, w, 4) RGBX: the table index of every pixel, masked boxes and red
    ones set to their own entries of the drawing table, then one gather from that table."""
    idx = colormaps.index(reduced.data, white, black)
    red = bool(reduced.stats.get("nSaturated", 1)) and bool(reduced.saturated.any())
    if not reduced.valid.all():
        np.copyto(idx, colormaps.MASKED_INDEX, where=~reduced.valid)
    if red:
        np.copyto(idx, colormaps.RED_INDEX, where=reduced.saturated)
    if colormap in colormaps.GREYS and not red:
        return colormaps.apply(idx, colormaps.grey_table(scale, colormap))
    return colormaps.apply(idx, colormaps.rgbx_table(scale, colormap))


def to_colours(
    reduced: Reduced,
    white: np.ndarray | float,
    black: np.ndarray | float,
    scale: str = "linear",
    colormap: str = "inverted",
) -> np.ndarray:
    """(h, w, 3), or (h, w, 1) for a grey map with nothing saturated: ``white``/``black`` are
    levels or per-pixel planes (automatic levels), through the scale and the colour map; masked
    boxes white and saturated ones red in every map."""
    return _rgb(_colours(reduced, white, black, scale, colormap))


@lru_cache(maxsize=MAX_LABEL_HEIGHT)
def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font (embedded, no file to open after the privilege drop), three
    quarters of the banner's height: it grows with the banner (the C server's stayed 15 px)."""
    return ImageFont.load_default(size=max(6, height * 3 // 4))


_font(16)  # load FreeType now, in the zygote, not after the fork
Image.preinit()  # Pillow imports its JPEG plugin on first save; do it before the fork too


def banner(label: str, height: int, width: int, channels: int = 3) -> np.ndarray:
    """(height, width, channels) white rows with ``label`` in black, left aligned, centred
    vertically."""
    if not 0 < height <= MAX_LABEL_HEIGHT:
        raise BadRequest(f"'labelHeight' must be between 0 and {MAX_LABEL_HEIGHT}")
    image = Image.new("L", (width, height), 255)
    if label:
        draw = ImageDraw.Draw(image)
        draw.text((MARGIN, height / 2), label, fill=0, font=_font(height), anchor="lm")
    return np.repeat(np.asarray(image)[:, :, None], channels, axis=2)


def encode_jpeg(rgb: np.ndarray, quality: int = 90, encoder: str = "simplejpeg") -> bytes:
    """libjpeg-turbo through simplejpeg (no PIL Image round trip); Pillow kept for comparison.

    ``rgb`` is (h, w, 3) colour, (h, w, 4) RGBX (the same JPEG as its RGB, byte for byte:
    libjpeg-turbo reads the fourth byte of each pixel and ignores it) or (h, w, 1) grey."""
    quality = int(min(max(quality, 1), 100))
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    channels = rgb.shape[2] if rgb.ndim == 3 else 3
    if encoder == "simplejpeg":
        if channels == 1:
            return simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="GRAY")
        space = "RGBX" if channels == 4 else "RGB"
        return simplejpeg.encode_jpeg(
            rgb, quality=quality, colorspace=space, colorsubsampling=SUBSAMPLING
        )
    if encoder == "pillow":
        out = io.BytesIO()
        subsampling = PILLOW_SUBSAMPLING[SUBSAMPLING]
        if channels == 1:
            image = Image.fromarray(rgb[:, :, 0], "L")
        else:
            image = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]), "RGB")
        image.save(out, "JPEG", quality=quality, subsampling=subsampling)
        return out.getvalue()
    raise ValueError(f"unknown JPEG encoder {encoder!r}; use one of {ENCODERS}")


def pixels(
    reduced: Reduced,
    contrast: float,
    wval: float,
    auto: tuple[float, float] | None = None,
    planes: tuple[np.ndarray, np.ndarray] | None = None,
    scale: str = "linear",
    colormap: str = "inverted",
) -> tuple[np.ndarray, float, float]:
    """The 8-bit picture :func:`render` encodes, (h, w, 1) grey or (h, w, 3) colour (the
    viewer's page maps counts to the very same: isweb/static/js/mapping.js), and the (white,
    black) levels it was drawn with."""
    picture, white, black = _picture(reduced, contrast, wval, auto, planes, scale, colormap)
    return _rgb(picture), white, black


def _picture(
    reduced: Reduced,
    contrast: float,
    wval: float,
    auto: tuple[float, float] | None,
    planes: tuple[np.ndarray, np.ndarray] | None,
    scale: str,
    colormap: str,
) -> tuple[np.ndarray, float, float]:
    """:func:`pixels` as the encoder takes it: colour as RGBX, with no copy to RGB."""
    white, black = (wval, contrast) if planes else levels(reduced.stats, contrast, wval, auto)
    if planes is None and (scale, colormap) == colormaps.C_LOOK:
        return _c_look(reduced, white, black), white, black
    low, high = planes if planes is not None else (white, black)
    return _colours(reduced, low, high, scale, colormap), white, black


def render(
    reduced: Reduced,
    contrast: float,
    wval: float,
    label: str = "",
    label_height: int = 0,
    quality: int = 90,
    encoder: str = "simplejpeg",
    auto: tuple[float, float] | None = None,
    clock: Timings | None = None,
    planes: tuple[np.ndarray, np.ndarray] | None = None,
    scale: str = "linear",
    colormap: str = "inverted",
) -> tuple[bytes, dict[str, Any]]:
    """JPEG bytes and what was decided: levels used and the size sent (banner included);
    ``clock`` gets the encode time.

    ``planes`` (white, black per output pixel) draw the automatic levels; ``contrast``/``wval``
    are then the frame's pair, reported as used. Without planes, scale and colour map, the
    picture is the C server's, pixel for pixel."""
    rgb, white, black = _picture(reduced, contrast, wval, auto, planes, scale, colormap)
    if label_height > 0:
        top = banner(label, label_height, rgb.shape[1], rgb.shape[2])
        rgb = np.concatenate((top, rgb), axis=0)
    decided = {
        "wval_used": white,
        "bval_used": black,
        "xsize": int(rgb.shape[1]),
        "ysize": int(rgb.shape[0]),
    }
    if clock is None:
        return encode_jpeg(rgb, quality, encoder), decided
    with clock.step("encode"):
        return encode_jpeg(rgb, quality, encoder), decided
