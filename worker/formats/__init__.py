"""Detector image formats: one reader per format behind :class:`Reader`, and :func:`detect`.

Detection trusts content before names: the first 4 KiB decide, the extension only breaks ties
(the C server checked suffixes first and read past short names). ``read_frame`` and
``read_meta`` raise only :mod:`pyis_common.errors` classes with a sentence a user can act on.
"""

from __future__ import annotations

import errno
from typing import Any

from pyis_common.errors import Forbidden, Internal, NotFound, Unsupported
from worker.formats.base import HEAD_BYTES, Frame, Reader, basename
from worker.formats.cbf import CbfReader
from worker.formats.dicom import DicomReader
from worker.formats.eiger import EigerReader
from worker.formats.fabio_generic import FabioReader
from worker.formats.marccd import MarccdReader
from worker.formats.tiff import TiffReader

__all__ = ["Frame", "Reader", "READERS", "detect", "read_frame", "read_meta"]

# first claim wins: MarCCD before TIFF (an .mccd is a TIFF), fabio last (it claims everything)
READERS: tuple[Reader, ...] = (
    CbfReader(),
    MarccdReader(),
    EigerReader(),
    DicomReader(),
    TiffReader(),
    FabioReader(),
)


def _head(path: str) -> bytes:
    """The first bytes, with the OS error turned into the matching wire error."""
    name = basename(path)
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except FileNotFoundError as exc:
        raise NotFound(f"{name} does not exist") from exc
    except PermissionError as exc:
        raise Forbidden(f"{name} is not readable by this user") from exc
    except IsADirectoryError as exc:
        raise Unsupported(f"{name} is a directory, not an image") from exc
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise NotFound(f"{name} does not exist") from exc
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        raise Internal(f"{name} could not be read ({code})") from exc


def detect(path: str) -> Reader:
    """The reader for ``path``, or ``Unsupported`` with the reason."""
    head = _head(path)
    if not head:
        raise Unsupported(f"{basename(path)} is empty")
    return next(reader for reader in READERS if reader.claims(head, path))


def read_frame(path: str, frame: int = 1) -> Frame:
    """Frame ``frame`` (1-based) of ``path``: pixels in the file's dtype, mask, saturation, meta."""
    return detect(path).read_frame(path, frame)


def read_meta(path: str) -> dict[str, Any]:
    """Header values of ``path``; no pixel decoding where the format allows it."""
    return detect(path).read_meta(path)
