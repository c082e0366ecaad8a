"""Pilatus (and Eiger-converted) miniCBF: a CIF text header, then one byte-offset binary blob.

The C server hard-coded 2463x2527 and read the -1 (gap) and -2 (bad) pixels as huge unsigned
values, so they were drawn red. Here the dimensions come from the MIME header of the binary
section, the pixels stay signed int32, and negatives become the mask.
"""

from __future__ import annotations

import os
import re
from typing import Any

import fabio.cbfimage
import numpy as np

from pyis_common.errors import PyisError, Unsupported
from worker.formats import budget, byteoffset, pilatus
from worker.formats.base import (
    Frame,
    NegativeMasked,
    basename,
    cannot_read,
    check_frame,
    check_pixels,
    common_meta,
    file_size,
    out_of_memory,
    still_written,
)
from worker.paths import Opened

MAX_HEADER = 1 << 20  # real miniCBF headers are 1.5-7 KB; a file without the marker is not CBF
BINARY_START = b"\x0c\x1a\x04\xd5"  # CBF's marker between the MIME header and the pixels
ELEMENT_TYPES: dict[str, np.dtype] = {
    "signed 32-bit integer": np.dtype("<i4"),
    "unsigned 32-bit integer": np.dtype("<u4"),
    "signed 16-bit integer": np.dtype("<i2"),
    "unsigned 16-bit integer": np.dtype("<u2"),
    "signed 8-bit integer": np.dtype("i1"),
    "unsigned 8-bit integer": np.dtype("u1"),
}
_BYTE_OFFSET = re.compile(rb'conversions\s*=\s*"x-CBF_BYTE_OFFSET"', re.IGNORECASE)
_CONTENTS = re.compile(rb"_array_data\.header_contents\s*\r?\n;(.*?)\r?\n;", re.DOTALL)
_MIME = re.compile(rb"^(X-Binary-[\w-]+)\s*:\s*\"?([^\"\r\n]*)", re.MULTILINE)


def _read_header(src: Opened) -> tuple[bytes, dict[str, str]]:
    """The text before the binary marker, and the ``X-Binary-*`` MIME fields."""
    try:
        head = os.pread(src.fd, MAX_HEADER, 0)
    except OSError as exc:
        raise cannot_read(src.name, "a CBF image", exc) from exc
    end = head.find(BINARY_START)
    if end < 0:
        if head.startswith(b"###CBF") and len(head) < MAX_HEADER:  # cut inside its header
            raise still_written(src.name, len(head))
        raise cannot_read(src.name, "a CBF image")
    text = head[:end]
    mime = {k.decode("ascii"): v.decode("ascii", "replace").strip() for k, v in _MIME.findall(text)}
    return text, mime


def _geometry(name: str, mime: dict[str, str]) -> tuple[tuple[int, int], np.dtype]:
    try:
        shape = (
            int(mime["X-Binary-Size-Second-Dimension"]),
            int(mime["X-Binary-Size-Fastest-Dimension"]),
        )
    except (KeyError, ValueError) as exc:
        raise cannot_read(name, "a CBF image", exc) from exc
    dtype = ELEMENT_TYPES.get(mime.get("X-Binary-Element-Type", ""))
    if dtype is None or min(shape) < 1:
        raise Unsupported(f"{basename(name)} is a CBF with an element type or size we cannot read")
    return shape, dtype


def _check_complete(name: str, mime: dict[str, str], stored: int) -> None:
    """A detector writes a CBF front to back: fewer bytes after the marker than the header's
    ``X-Binary-Size`` is a frame still being written (a retry will find it whole), not a
    crafted file."""
    try:
        need = int(mime["X-Binary-Size"])
    except (KeyError, ValueError):
        return  # no size to hold it to: the size check and the decoder have the last word
    if 0 <= stored < need:
        raise still_written(name, stored, need)


def _check_size(name: str, shape: tuple[int, int], stored: int) -> None:
    """The declared dimensions against the bytes present, before fabio allocates for them:
    byte-offset compression spends at least one byte per pixel, and decodes to 32 bits.
    """
    budget.check(basename(name), shape, 4, stored)
    if shape[0] * shape[1] > stored:
        raise Unsupported(
            f"{basename(name)} declares {shape[1]}x{shape[0]} pixels but holds only {stored} "
            "bytes of data: it is truncated or crafted"
        )


def _decode_int32(
    src: Opened, text: bytes, mime: dict[str, str], shape: tuple[int, int]
) -> np.ndarray | None:
    """A Pilatus frame (byte-offset, signed 32-bit, little endian: nearly every miniCBF)
    decoded straight from ``pread`` of its binary section by fabio's 32-bit decoder, on two
    cores for a big frame (worker/formats/byteoffset.py); None for anything else. fabio's
    reader parses the header again in Python, reads the file in pieces and may decode through
    64 bits: about twice the decode itself (bench/stages.py).
    """
    if (
        mime.get("X-Binary-Element-Type") != "signed 32-bit integer"
        or mime.get("X-Binary-Element-Byte-Order", "LITTLE_ENDIAN") != "LITTLE_ENDIAN"
        or not _BYTE_OFFSET.search(text)
        or not mime.get("X-Binary-Size", "").isdigit()
    ):
        return None
    need, start = int(mime["X-Binary-Size"]), len(text) + len(BINARY_START)

    def read(offset: int, length: int) -> bytes:
        try:
            chunk = os.pread(src.fd, length, start + offset)
        except OSError as exc:
            raise cannot_read(src.name, "a CBF image", exc) from exc
        if len(chunk) < length:  # shrunk since its size was checked: a writer starting over
            raise still_written(src.name, offset + len(chunk), need)
        return chunk

    pixels = shape[0] * shape[1]
    data = byteoffset.decode_int32(read, need, pixels)  # stops at the stream's end or ``pixels``
    if data.size != pixels:
        raise cannot_read(src.name, "a CBF image")
    return np.asarray(data, np.int32).reshape(shape)


class CbfReader:
    """miniCBF through fabio's byte-offset decoder (C), with our own header parse."""

    name = "cbf"

    def claims(self, head: bytes, name: str) -> bool:
        return head.startswith(b"###CBF") or name.lower().endswith(".cbf")

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]:
        """Header only: the text before the binary marker, no pixel decoding."""
        if frame is not None:
            check_frame(src.name, frame, 1)
        return self._meta(src.name, *_read_header(src))

    def _meta(self, name: str, text: bytes, mime: dict[str, str]) -> dict[str, Any]:
        shape, dtype = _geometry(name, mime)
        meta = common_meta(name, self.name, shape, dtype.itemsize)
        found = _CONTENTS.search(text)
        if found:
            meta.update(pilatus.to_meta(pilatus.parse_text(found.group(1).decode("latin-1"))))
        return meta

    def read_frame(self, src: Opened, frame: int = 1) -> Frame:
        text, mime = _read_header(src)
        meta = self._meta(src.name, text, mime)
        check_frame(src.name, frame, 1)
        shape = (meta["y_pixels_in_detector"], meta["x_pixels_in_detector"])
        stored = file_size(src) - len(text) - len(BINARY_START)
        _check_complete(src.name, mime, stored)
        _check_size(src.name, shape, stored)
        try:
            data = _decode_int32(src, text, mime, shape)
            if data is None:  # another element type or compression: fabio's whole reader
                # check_MD5=False: fabio only logs a mismatch; the MD5 costs ~10 ms per 6M frame
                data = fabio.cbfimage.CbfImage().read(src.path, check_MD5=False).data
        except MemoryError as exc:
            raise out_of_memory(src.name) from exc
        except PyisError:  # a frame still being written stays retryable (incomplete:)
            raise
        except Exception as exc:  # fabio raises anything on a damaged file
            raise cannot_read(src.name, "a CBF image", exc) from exc
        check_pixels(src.name, "a CBF image", data, shape)
        if data.dtype.kind == "i":  # -1 gaps, -2 bad pixels
            return NegativeMasked(data, saturation=meta.get("saturation"), meta=meta)
        return Frame(data=data, mask=None, saturation=meta.get("saturation"), meta=meta)
