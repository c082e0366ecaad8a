"""DICOM through pydicom 3: single- and multi-frame, native, RLE and (with Pillow) JPEG 2000.

Pixels stay the stored values, as every detector reader gives raw counts (no Rescale
Slope/Intercept). The DICOM window (Window Center/Width, converted to stored values) becomes
the automatic contrast through ``auto_levels``: our mapping (high values dark) is kept, the
window only sets its range. Enhanced multi-frame files keep those attributes in functional
groups, so they are looked up there too. pydicom's decoders and Pillow's plugins are imported
lazily by pydicom; they are imported here, before the zygote forks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import PIL.Jpeg2KImagePlugin  # noqa: F401  pydicom's Pillow decoder opens JPEG 2000 with it
import pydicom
import pydicom.pixels
import pydicom.pixels.decoders.pillow  # noqa: F401
import pydicom.pixels.decoders.rle  # noqa: F401

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
    positive,
)
from worker.paths import Opened

PIL.Image.init()  # pydicom's Pillow decoder calls Image.open, which imports every plugin once
PREAMBLE = 128  # the "DICM" magic follows a 128-byte preamble
SUFFIXES = (".dcm", ".dicom")
GREY = ("MONOCHROME1", "MONOCHROME2")


def _number(value: Any) -> float | None:
    """First value of a DS/IS/US (possibly multi-valued) element as a float, else None."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return found if np.isfinite(found) else None


def _attr(ds: pydicom.Dataset, index: int, sequence: str, keyword: str) -> Any:
    """Top level; else the frame's, then the shared functional group (Enhanced objects)."""
    if keyword in ds:
        return ds[keyword].value
    for groups, i in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items is not None and i < len(items):
            inner = items[i].get(sequence)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    return None


def _syntax(ds: pydicom.Dataset) -> pydicom.uid.UID | None:
    file_meta = getattr(ds, "file_meta", None)
    return file_meta.get("TransferSyntaxUID") if file_meta is not None else None


def _header(src: Opened) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(src.path, stop_before_pixels=True)
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1))
    except MemoryError as exc:
        raise out_of_memory(src.name) from exc
    except Exception as exc:  # pydicom raises many types on a damaged or non-image file
        raise cannot_read(src.name, "a DICOM image", exc) from exc
    name = basename(src.name)
    if samples != 1 or ds.get("PhotometricInterpretation", "MONOCHROME2") not in GREY:
        raise Unsupported(f"{name} is a colour DICOM image; only grey-scale images are shown")
    if min(rows, cols, bits) < 1:
        raise Unsupported(f"{name} is a DICOM file with an impossible image size")
    # Rows and Columns are 16-bit: 4 gigapixels from a few header bytes, refused up front
    budget.check(name, (rows, cols), -(-bits // 8), file_size(src))
    return ds


def _levels(ds: pydicom.Dataset, index: int, meta: dict[str, Any]) -> None:
    """Window and rescale into meta; the window in stored values as ``auto_levels``."""
    slope = _number(_attr(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _number(_attr(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    centre = _number(_attr(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _number(_attr(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    if slope is not None and intercept is not None:
        meta["rescale_slope"], meta["rescale_intercept"] = slope, intercept
    if centre is None or width is None or width <= 0:
        return
    meta["window_center"], meta["window_width"] = centre, width
    slope, offset = slope or 1.0, intercept or 0.0  # stored = (displayed - intercept) / slope
    low, high = (centre - width / 2 - offset) / slope, (centre + width / 2 - offset) / slope
    meta["auto_levels"] = sorted((low, high))  # [white, black]: below white, above black


def _meta(name: str, ds: pydicom.Dataset, index: int) -> dict[str, Any]:
    frames = int(_number(ds.get("NumberOfFrames")) or 1)
    depth = max(int(ds.BitsAllocated) // 8, 1)
    meta = common_meta(name, "dicom", (int(ds.Rows), int(ds.Columns)), depth, max(frames, 1))
    maker = " ".join(str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName"))
    if maker.strip():
        meta["detector"] = " ".join(maker.split())
    for key, keyword in (("modality", "Modality"), ("photometric", "PhotometricInterpretation")):
        if ds.get(keyword):
            meta[key] = str(ds.get(keyword))
    syntax = _syntax(ds)
    if syntax:
        meta["transfer_syntax"] = syntax.name
    spacing = _attr(ds, index, "PixelMeasuresSequence", "PixelSpacing")  # mm: row, column
    if spacing is not None and len(spacing) == 2:
        positive(meta, "y_pixel_size", _number(spacing[0]), 1e-3)
        positive(meta, "x_pixel_size", _number(spacing[1]), 1e-3)
    exposure = _number(ds.get("ExposureTime"))  # ms
    positive(meta, "exposureTime", exposure, 1e-3)
    _levels(ds, index, meta)
    return meta


def _check_decoder(name: str, ds: pydicom.Dataset) -> None:
    """A compressed syntax we have no decoder for is a clear refusal, not a library error."""
    syntax = _syntax(ds)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        available = pydicom.pixels.get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise Unsupported(
            f"{basename(name)} is compressed as {syntax.name} ({syntax}); this server has no "
            "decoder for that transfer syntax"
        )


class DicomReader:
    """DICOM Part 10 files: the 'DICM' magic after the preamble, or a .dcm name."""

    name = "dicom"

    def claims(self, head: bytes, name: str) -> bool:
        return head[PREAMBLE : PREAMBLE + 4] == b"DICM" or name.lower().endswith(SUFFIXES)

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]:
        """Everything before the pixel data; nothing is decoded."""
        meta = _meta(src.name, _header(src), (frame or 1) - 1)
        if frame is not None:
            check_frame(src.name, frame, meta["last_frame"])
            meta["frame"] = frame
        return meta

    def read_frame(self, src: Opened, frame: int = 1) -> Frame:
        ds = _header(src)
        meta = _meta(src.name, ds, frame - 1)
        check_frame(src.name, frame, meta["last_frame"])
        _check_decoder(src.name, ds)
        try:
            data = pydicom.pixels.pixel_array(src.path, index=frame - 1)  # decodes this frame only
        except MemoryError as exc:
            raise out_of_memory(src.name) from exc
        except Exception as exc:  # pydicom and its plugins raise many types on bad data
            raise cannot_read(src.name, "a DICOM image", exc) from exc
        check_pixels(src.name, "a DICOM image", data, (int(ds.Rows), int(ds.Columns)))
        data = native(data)
        meta["frame"], meta["image_depth"] = frame, data.dtype.itemsize
        return Frame(data=data, mask=None, saturation=None, meta=meta)
