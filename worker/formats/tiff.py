"""TIFF that is not MarCCD: Eiger monitor images, Pilatus TIFF and plain TIFF, via fabio.

fabio already decodes every TIFF we meet (and reads the Pilatus header of a Pilatus TIFF), so
this reader only adds what a TIFF cannot say for itself, from the conventions of the detectors
that write them: a Pilatus marks gaps and bad pixels with negative values, and an Eiger marks a
pixel with no valid count with 2**32 - 1 in its 32-bit monitor images. Both are masked, so they
are drawn white, never red, and never counted. 16-bit TIFFs keep 65535 as a real (saturated)
count: CCDs write those too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, TiffImagePlugin

from pyis_common.errors import Unsupported
from worker.formats import budget
from worker.formats.base import Frame, basename, file_size
from worker.formats.fabio_generic import FabioReader
from worker.paths import Opened

TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
SUFFIXES = (".tif", ".tiff")
NO_COUNT_32 = np.iinfo(np.uint32).max  # Eiger: masked (gap, dead) pixel in 32-bit images
STRIP_OR_TILE_BYTES = (279, 325)  # StripByteCounts, TileByteCounts


def check_size(src: Opened, frame: int = 1) -> None:
    """The page's declared size (its tags, read by Pillow without decoding) against the budget
    and the bytes its strips or tiles hold; a TIFF Pillow cannot parse is left to the decoder.
    """
    name = basename(src.name)
    try:
        with Image.open(src.path) as image:
            if not isinstance(image, TiffImagePlugin.TiffImageFile):
                return  # Pillow reads it as something else: the decoder judges it
            if frame > 1:
                image.seek(frame - 1)
            width, height = image.size
            bits = sum(image.tag_v2.get(258, (8,)))  # BitsPerSample, per sample
            counts = next((image.tag_v2[t] for t in STRIP_OR_TILE_BYTES if t in image.tag_v2), ())
    except Image.DecompressionBombError as exc:
        raise Unsupported(f"{name} declares an image too large to read: {exc}") from exc
    except Exception:  # not for Pillow to judge (fabio reads more TIFF dialects)
        return
    stored = min(sum(int(c) for c in counts), file_size(src)) if counts else file_size(src)
    budget.check(name, (height, width), max(math.ceil(bits / 8), 1), stored)


class TiffReader:
    name = "tiff"

    def __init__(self) -> None:
        self._fabio = FabioReader()

    def claims(self, head: bytes, name: str) -> bool:
        return head[:4] in TIFF_MAGIC or name.lower().endswith(SUFFIXES)

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]:
        """fabio has no header-only TIFF read (see FabioReader.read_meta); a TIFF is small."""
        return self.read_frame(src, frame or 1).meta

    def read_frame(self, src: Opened, frame: int = 1) -> Frame:
        check_size(src, frame)
        got = self._fabio.read_frame(src, frame)
        if got.meta["format"] == "pilatus-tiff":
            return got  # negatives already masked, header already read
        data, meta = got.data, dict(got.meta, format="tiff")
        if data.dtype.kind == "i":
            return Frame(data, data < 0, got.saturation, meta, negative_masked=True)
        if data.dtype == np.uint32:
            mask = data == NO_COUNT_32
            return Frame(data, mask if mask.any() else None, got.saturation, meta)
        return Frame(data, got.mask, got.saturation, meta)
