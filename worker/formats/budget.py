"""What one frame may cost, in bytes, for every reader: a crafted file gets one clear refusal
before anything is allocated or decoded.

Two bounds. A frame's decoded bytes must fit :data:`FRAME_BYTES_MAX` (pixels alone say nothing:
a "frame" of uint64 costs eight times one of uint8). And the file must store a fair share of
those bytes: a 3.4 KB HDF5 file whose chunks were never written decodes to gigabytes of fill
value, a CBF or TIFF header can declare any size over a few bytes of data. Real compression stays
far below :data:`EXPANSION_MAX` (LZ4 and bitshuffle/LZ4 top out near 255:1, deflate near
1032:1, even on an all-zero frame); a file beyond it is a decompression bomb, not an image.
"""

from __future__ import annotations

import math
import warnings

from PIL import Image

from pyis_common.errors import Unsupported

FRAME_BYTES_MAX = 256 << 20  # 3.5x an Eiger2 16M uint32 frame (72 MB), the largest we meet
EXPANSION_MAX = 2048  # decoded bytes per stored byte

# Pillow (TIFF tags, JPEG 2000 inside DICOM) has its own check in pixels: an error above twice
# this, i.e. at our budget for 8-bit pixels; below that the byte budget decides, and Pillow's
# warning would only be a stderr line per crafted file
Image.MAX_IMAGE_PIXELS = FRAME_BYTES_MAX // 2
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def mib(nbytes: float) -> str:
    return f"{nbytes / (1 << 20):.0f} MiB"


def check(
    name: str,
    shape: tuple[int, ...],
    itemsize: int,
    stored: int | None,
    decoded: int | None = None,
) -> None:
    """Refuse a frame of ``shape`` x ``itemsize`` bytes that is too large, or that the file
    stores in fewer than 1/:data:`EXPANSION_MAX` of its bytes (``stored`` None: not known yet).
    ``decoded`` is what reading it really decodes when that is more than the frame (HDF5
    decompresses whole chunks).
    """
    frame = math.prod(int(n) for n in shape) * max(int(itemsize), 1)
    decoded = max(frame, decoded or 0)
    size = "x".join(str(int(n)) for n in reversed(shape))
    if decoded > FRAME_BYTES_MAX:
        raise Unsupported(
            f"{name} has frames of {size} pixels ({mib(decoded)} decoded); this server reads "
            f"at most {mib(FRAME_BYTES_MAX)} per frame"
        )
    if stored is not None and stored * EXPANSION_MAX < decoded:
        raise Unsupported(
            f"{name} declares a {size} frame ({mib(decoded)}) but stores {stored} bytes of it: "
            "refused as a decompression bomb (unwritten or implausibly compressed data)"
        )
