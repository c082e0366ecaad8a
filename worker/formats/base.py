"""What every format reader shares: the :class:`Frame` it returns, the :class:`Reader` protocol,
and the few helpers that turn library failures into one clear sentence.

Readers never let a library exception escape: fabio raises anything from ``AssertionError`` to
``AttributeError`` on a damaged file, and a traceback must never reach a client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pyis_common.errors import Incomplete, Internal, NotFound, Unsupported
from worker.paths import Opened

HEAD_BYTES = 4096  # enough for every magic number we sniff (MarCCD's sits at 1024..1031)


@dataclass
class Frame:
    """One decoded 2-D frame.

    ``negative_masked`` is True when ``mask`` is exactly ``data < 0`` (the Pilatus -1/-2
    convention). Stage 1 then never reads ``mask``: a negative pixel loses every maximum to a
    valid (>= 0) one, and a box whose maximum is still negative is all masked. That saves a
    masked copy of a 25 MB frame per reduction.

    ``scratch`` is True when ``data`` was decoded for this request alone (nobody else holds
    it): stage 1 may then write the masked pixels' floor value into it in place instead of
    making a masked copy (a 70 MB copy for an Eiger 16M frame).
    """

    data: np.ndarray
    mask: np.ndarray | None
    saturation: float | None
    meta: dict[str, Any]
    negative_masked: bool = False
    scratch: bool = False


class NegativeMasked(Frame):
    """A frame whose mask is exactly ``data < 0`` (``negative_masked``), made on first use:
    stage 1 never reads it (a 6M frame's comparison is ~1.5 ms and 6 MB on every read)."""

    _mask: np.ndarray | None

    def __init__(
        self,
        data: np.ndarray,
        mask: np.ndarray | None = None,  # made from data when first read
        saturation: float | None = None,
        meta: dict[str, Any] | None = None,
        negative_masked: bool = True,  # always: the fields are Frame's for dataclasses.replace
        scratch: bool = False,
    ) -> None:
        super().__init__(data, mask, saturation, meta or {}, True, scratch)

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            self._mask = np.less(self.data, 0)
        return self._mask

    @mask.setter
    def mask(self, value: np.ndarray | None) -> None:
        self._mask = value


class Reader(Protocol):
    """One detector format. ``claims`` sees the first :data:`HEAD_BYTES` of the file and its
    name. ``src`` is the file the worker resolved and opened once: a reader opens ``src.path``
    (never a name of its own) and names ``src.name`` in its messages."""

    name: str

    def claims(self, head: bytes, name: str) -> bool: ...

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]: ...

    def read_frame(self, src: Opened, frame: int) -> Frame: ...


def basename(path: str) -> str:
    return os.path.basename(path)


def file_size(src: Opened) -> int:
    """Bytes the file holds: what a header's declared frame size is weighed against."""
    return src.stat().st_size


def cannot_read(name: str, what: str, exc: BaseException | None = None) -> Unsupported:
    """The one sentence for a file a library could not decode (name of the failure, no text)."""
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return Unsupported(
        f"{basename(name)} cannot be read as {what}: it is truncated or corrupt{why}"
    )


def still_written(name: str, size: int, need: int | None = None) -> Incomplete:
    """The one sentence for a frame whose file is not whole yet (retryable, unlike
    :func:`cannot_read`): detectors write front to back, so a retry finds it complete."""
    of = f" of {need:,}" if need is not None else ""
    return Incomplete(f"{basename(name)} is still being written ({size:,}{of} bytes); try again")


def out_of_memory(name: str) -> Internal:
    return Internal(f"not enough memory to read {basename(name)}")


def check_frame(name: str, frame: int, last: int, first: int = 1) -> None:
    """Frames are 1-based, as on the wire; an Eiger data file holds images first..last."""
    if not first <= frame <= last:
        raise NotFound(f"{basename(name)} has no frame {frame} (frames {first} to {last})")


def check_pixels(name: str, what: str, data: Any, shape: tuple[int, int] | None = None) -> None:
    """A decoder that 'succeeds' on a short file returns None, 1-D or wrongly shaped data."""
    ok = isinstance(data, np.ndarray) and data.ndim == 2 and data.size > 0
    if not ok or (shape is not None and data.shape != shape):
        raise cannot_read(name, what)


def native(data: np.ndarray) -> np.ndarray:
    """Big-endian pixels make every ufunc pass several times slower; swap once here."""
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))


def plain(value: Any) -> Any:
    """numpy scalars -> python numbers so the meta dict is JSON-ready."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def common_meta(
    name: str, fmt: str, shape: tuple[int, int], depth: int, last: int = 1, first: int = 1
) -> dict:
    """Keys every reader reports, named as the C server named them."""
    return {
        "filename": basename(name),
        "format": fmt,
        "x_pixels_in_detector": int(shape[1]),
        "y_pixels_in_detector": int(shape[0]),
        "image_depth": int(depth),
        "first_frame": int(first),
        "last_frame": int(last),
        "frame": int(first),
    }


def positive(meta: dict[str, Any], key: str, value: float | None, scale: float = 1.0) -> None:
    """Store ``value*scale`` only when the header really set it: 0 means 'not set' in most
    detector headers (MarCCD ``xtal_to_detector`` of 0, for one), and a guess is worse than none.
    """
    if value is not None and np.isfinite(value) and value > 0:
        meta[key] = float(value) * scale


def finite(meta: dict[str, Any], key: str, value: float | None, scale: float = 1.0) -> None:
    """Like :func:`positive` for angles, where 0 and negatives are real values."""
    if value is not None and np.isfinite(value):
        meta[key] = float(value) * scale
