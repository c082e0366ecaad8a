"""Detector image formats: one reader per format behind :class:`Reader`, and :func:`detect`.

Detection trusts content before names: the first 4 KiB decide, the extension only breaks ties
(the C server checked suffixes first and read past short names). ``read_frame`` and
``read_meta`` raise only :mod:`pyis_common.errors` classes with a sentence a user can act on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyis_common.errors import Forbidden, Internal, NotFound, Unsupported
from worker import geometry
from worker.formats.base import HEAD_BYTES, Frame, Reader, basename
from worker.formats.cbf import CbfReader
from worker.formats.dicom import DicomReader
from worker.formats.eiger import EigerReader
from worker.formats.fabio_generic import FabioReader
from worker.formats.marccd import MarccdReader
from worker.formats.tiff import TiffReader
from worker.paths import Opened

__all__ = ["Frame", "Opened", "Reader", "READERS", "detect", "read_frame", "read_meta"]

# first claim wins: MarCCD before TIFF (an .mccd is a TIFF), fabio last (it claims everything)
READERS: tuple[Reader, ...] = (
    CbfReader(),
    MarccdReader(),
    EigerReader(),
    DicomReader(),
    TiffReader(),
    FabioReader(),
)


def _head(src: Opened) -> bytes:
    """The first bytes, with the OS error turned into the matching wire error."""
    name = basename(src.name)
    try:
        return os.pread(src.fd, HEAD_BYTES, 0)
    except IsADirectoryError as exc:
        raise Unsupported(f"{name} is a directory, not an image") from exc
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        raise Internal(f"{name} could not be read ({code})") from exc


def detect(src: Opened) -> Reader:
    """The reader for ``src``, or ``Unsupported`` with the reason."""
    head = _head(src)
    if not head:
        raise Unsupported(f"{basename(src.name)} is empty")
    return next(reader for reader in READERS if reader.claims(head, src.name))


@contextmanager
def _opened(src: Opened | str) -> Iterator[Opened]:
    """An :class:`Opened` as given, or a trusted caller's path opened for the call."""
    if isinstance(src, Opened):
        yield src
        return
    try:
        opened = Opened.plain(src)
    except FileNotFoundError as exc:
        raise NotFound(f"{basename(src)} does not exist") from exc
    except PermissionError as exc:
        raise Forbidden(f"{basename(src)} is not readable by this user") from exc
    with opened:
        yield opened


def read_frame(src: Opened | str, frame: int | None = None) -> Frame:
    """Frame ``frame`` (1-based; None: the file's first) of ``src``: pixels in the file's
    dtype, mask, saturation, and meta with the geometry keys. The worker passes the file it
    opened (:func:`worker.paths.resolve`); a path is for tools."""
    with _opened(src) as opened:
        reader = detect(opened)
        if isinstance(reader, EigerReader):  # only an Eiger data file may start elsewhere
            got = reader.read_frame(opened, frame)
        else:
            got = reader.read_frame(opened, 1 if frame is None else frame)
    geometry.add(got.meta)
    return got


def read_meta(src: Opened | str, frame: int | None = None) -> dict[str, Any]:
    """Header values of ``src`` (of ``frame`` when given, after checking the file has it),
    with the geometry keys; no pixel decoding where the format allows it."""
    with _opened(src) as opened:
        return geometry.add(detect(opened).read_meta(opened, frame))
