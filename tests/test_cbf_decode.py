"""The miniCBF reader's direct decode (one pread of the binary section, fabio's 32-bit
decoder) against crafted files: a stream that decodes to fewer pixels than the header
declares is refused, never padded; a shorter section than declared is a frame still being
written; other element types still go through fabio's whole reader (the pixels of every
real test file against fabio's own decode are in test_formats.py)."""

from __future__ import annotations

import re
from pathlib import Path

import fabio.cbfimage
import numpy as np
import pytest

from pyis_common.errors import Incomplete, Unsupported
from worker.formats import read_frame

MARKER = b"\x0c\x1a\x04\xd5"


def written(path: Path, data: np.ndarray) -> bytes:
    fabio.cbfimage.CbfImage(data=data).write(str(path))
    return path.read_bytes()


def with_stream(blob: bytes, stream: bytes) -> bytes:
    """``blob``'s header with its binary section replaced by ``stream`` (size adjusted)."""
    head = blob[: blob.index(MARKER)]
    head = re.sub(rb"X-Binary-Size:\s*\d+", b"X-Binary-Size: %d" % len(stream), head)
    return head + MARKER + stream


def test_a_stream_of_fewer_pixels_than_declared_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.cbf"
    blob = written(path, np.zeros((10, 10), np.int32))
    # 50 three-byte exceptions: 150 bytes (enough for 100 one-byte pixels) but 50 pixels
    path.write_bytes(with_stream(blob, b"\x80\x05\x00" * 50))
    with pytest.raises(Unsupported, match="truncated or corrupt"):
        read_frame(str(path))


def test_a_section_shorter_than_declared_is_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "cut.cbf"
    blob = written(path, np.arange(400, dtype=np.int32).reshape(20, 20))
    path.write_bytes(blob[: blob.index(MARKER) + len(MARKER) + 50])
    with pytest.raises(Incomplete):
        read_frame(str(path))


def test_the_direct_decode_equals_fabio_with_exceptions_and_gaps(tmp_path: Path) -> None:
    """Deltas past 8 and 16 bits (the decoder's exception codes) and Pilatus gaps (-1)."""
    rng = np.random.default_rng(16)
    data = rng.integers(-2, 1 << 20, (37, 53), dtype=np.int32)
    data[5] = -1
    path = tmp_path / "wide.cbf"
    written(path, data)
    frame = read_frame(str(path))
    assert frame.data.dtype == np.int32 and np.array_equal(frame.data, data)
    assert frame.negative_masked and np.array_equal(frame.mask, data < 0)


def test_another_element_type_goes_through_fabio(tmp_path: Path) -> None:
    data = np.arange(12 * 7, dtype=np.uint16).reshape(12, 7)
    path = tmp_path / "u16.cbf"
    written(path, data)
    blob = path.read_bytes()
    assert b"unsigned 16-bit integer" in blob
    frame = read_frame(str(path))
    assert np.array_equal(frame.data, data)
