"""Every other format fabio opens (SMV, EDF, mar345, Bruker, KCD, OXD, Pilatus TIFF, ...).

fabio picks the codec from magic bytes and extension. Its format modules and the C extensions
they load lazily are imported here, at import time, because the pre-fork zygote imports this
package once and a lazy import after the privilege drop may find the files unreadable.
"""

from __future__ import annotations

from typing import Any

import fabio
import fabio.brukerimage
import fabio.dtrekimage
import fabio.edfimage
import fabio.ext.mar345_IO
import fabio.kcdimage
import fabio.mar345image
import fabio.openimage
import fabio.OXDimage
import fabio.pilatusimage
import fabio.tifimage
import numpy as np
import PIL.TiffImagePlugin  # noqa: F401  fabio's fallback for TIFFs its own reader rejects

from pyis_common.errors import Unsupported
from worker.formats import budget
from worker.formats.base import (
    Frame,
    basename,
    cannot_read,
    check_frame,
    check_pixels,
    common_meta,
    file_size,
    native,
    out_of_memory,
    plain,
    still_written,
)
from worker.formats.fabio_headers import FORMATS
from worker.paths import Opened

# the header keys that declare a frame's width and height, where fabio's header read does not
# set the shape itself; KCD is absent: its header read costs as much as decoding the file
DIMENSIONS = {
    "EdfImage": ("Dim_1", "Dim_2"),
    "OxdImage": ("NX", "NY"),
    "DtrekImage": ("SIZE1", "SIZE2"),
}
HEADER_ONLY = (*DIMENSIONS, "BrukerImage", "Mar345Image")
DECODED_ITEMSIZE = 4  # what these codecs decode to at most per pixel (counts, not doubles)


def _declared(path: str) -> tuple[int, int] | None:
    """(rows, columns) the header declares, read before fabio decodes (and allocates) them."""
    try:
        image = fabio.openimage._openimage(path)  # detection only: magic bytes, no pixels
        kind = type(image).__name__
        if kind not in HEADER_ONLY:
            return None
        image.readheader(path)
        if kind in DIMENSIONS:
            width, height = (int(image.header[key]) for key in DIMENSIONS[kind])
            return height, width
        return tuple(int(n) for n in image._shape)  # type: ignore[return-value]
    except Exception:  # no header we understand: fabio's decode will say what is wrong
        return None


def _check_size(src: Opened) -> None:
    shape = _declared(src.path)
    if shape is not None:
        budget.check(basename(src.name), shape, DECODED_ITEMSIZE, file_size(src))


def _open(src: Opened, frame: int) -> tuple[Any, np.ndarray, dict[str, Any], int]:
    """fabio image, the frame's pixels and header, and the number of frames."""
    _check_size(src)
    name = src.name
    try:
        image = fabio.open(src.path)
    except MemoryError as exc:
        raise out_of_memory(name) from exc
    except OSError as exc:
        if "could not identify" in str(exc):
            raise Unsupported(f"{basename(name)} is not an image format we know") from exc
        raise cannot_read(name, "an image", exc) from exc
    except Exception as exc:  # fabio raises anything on a damaged file
        raise cannot_read(name, "an image", exc) from exc
    last = max(int(getattr(image, "nframes", 1) or 1), 1)
    check_frame(name, frame, last)
    if getattr(image, "incomplete_file", False):  # fabio's flag for data shorter than its header
        raise still_written(name, file_size(src))
    data, header = image.data, image.header
    if frame > 1:
        try:
            picked = image.get_frame(frame - 1)
        except MemoryError as exc:
            raise out_of_memory(name) from exc
        except Exception as exc:
            raise cannot_read(name, "an image", exc) from exc
        data, header = picked.data, picked.header
    return image, data, dict(header or {}), last


class FabioReader:
    """The fallback reader: whatever fabio recognises."""

    name = "fabio"

    def claims(self, head: bytes, name: str) -> bool:
        return True

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]:
        """fabio has no dependable header-only path (``openheader`` returns nothing for Pilatus
        TIFF and takes as long as a full read for KCD), so this decodes the frame.
        """
        return self.read_frame(src, frame or 1).meta

    def read_frame(self, src: Opened, frame: int = 1) -> Frame:
        name = src.name
        image, data, header, last = _open(src, frame)
        check_pixels(name, "an image", data)
        if data.dtype.kind not in "iuf":
            raise Unsupported(f"{basename(name)} holds {data.dtype} pixels, not counts")
        data = native(data)
        fmt, mapper = FORMATS.get(type(image).__name__, (None, None))
        kind = fmt or type(image).__name__.lower().removesuffix("image")
        meta = common_meta(name, kind, data.shape, data.dtype.itemsize, last)
        meta["frame"] = frame
        if mapper is not None:
            meta.update({k: plain(v) for k, v in mapper(header, data.shape).items()})
        negative = fmt == "pilatus-tiff" and data.dtype.kind == "i"
        return Frame(
            data=data,
            mask=data < 0 if negative else None,
            saturation=meta.get("saturation"),
            meta=meta,
            negative_masked=negative,
        )
