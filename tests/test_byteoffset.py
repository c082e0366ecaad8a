"""The byte-offset stream decoded in two halves (worker/formats/byteoffset.py) against fabio's
own decoder of the whole stream: real frames, crafted streams with exceptions at the cut,
every cut the rule accepts, hostile streams with no cut, streams longer and shorter than the
frame, and a read that fails in the helper thread."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fabio.ext import byte_offset

from pyis_common.errors import Incomplete
from worker import halves
from worker.formats.byteoffset import KEY, LOOKBACK, WINDOW, decode_int32, joined, token_start

MARKER = b"\x0c\x1a\x04\xd5"
REAL = [
    "cbf/thau_3_2_0001.cbf",
    "cbf/thau_3_2_0002.cbf",
    "cbf/run2_1_00148.cbf",
    "cbf/l-cyst_01_00001.cbf",
    "cbf/dlsnxs2cbf_therm_0001.cbf",
]
END = b"\x01" * 7  # a stream must end on a whole token: fabio reads past a cut-off one


def stream_of(path: Path) -> tuple[bytes, int]:
    """A real CBF's binary section and its pixel count."""
    blob = path.read_bytes()
    head = blob[: blob.index(MARKER)]
    size = int(re.search(rb"X-Binary-Size:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    dims = [int(re.search(rb"X-Binary-Size-%s:\s*(\d+)" % k, head).group(1))  # type: ignore[union-attr]
            for k in (b"Fastest-Dimension", b"Second-Dimension")]  # fmt: skip
    start = len(head) + len(MARKER)
    return blob[start : start + size], dims[0] * dims[1]


class Reader:
    """The stream's bytes, as the CBF reader's ``pread`` gives them; records each read."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.stream[offset : offset + length]

    def cut(self) -> int | None:
        """Where the stream was cut (the head's length), None if it was read whole."""
        heads = [length for offset, length in self.reads if offset == 0]
        return None if heads == [len(self.stream)] else heads[0]


def decoded(stream: bytes, pixels: int) -> tuple[np.ndarray, int | None]:
    read = Reader(stream)
    return decode_int32(read, len(stream), pixels), read.cut()


def tokens(deltas: np.ndarray) -> bytes:
    """The byte-offset encoding of ``deltas`` (fabio's own encoder, on their running sum)."""
    values = np.cumsum(deltas, dtype=np.int64).astype(np.int32)  # wrapped as the detector's
    return byte_offset.comp_cbf32(values).tobytes()


def wide_deltas(rng: np.random.Generator, n: int) -> np.ndarray:
    """Deltas of every width, one in six an exception (16 or 32 bits), sums that wrap."""
    kind = rng.integers(0, 12, n)
    small = rng.integers(-127, 128, n)
    mid = rng.integers(-32767, 32768, n)
    big = rng.integers(-(2**31) + 1, 2**31, n)
    return np.select([kind == 0, kind == 1], [mid, big], small).astype(np.int64)


@pytest.mark.parametrize("name", REAL)
def test_real_frames_decode_in_halves_as_fabio_decodes_them_whole(
    testdata: Path, name: str
) -> None:
    stream, pixels = stream_of(testdata / name)
    whole = byte_offset.dec_cbf32(stream, pixels)
    halved, cut = decoded(stream, pixels)
    assert cut is not None and len(stream) // 2 <= cut < len(stream) // 2 + WINDOW
    assert halved.dtype == np.int32 and np.array_equal(halved, whole)


def test_every_cut_the_rule_accepts_is_a_token_start() -> None:
    """Cut anywhere the rule allows (no 0x80 in the 14 bytes before) in a stream dense with
    exceptions and in raw bytes rich in 0x80 and 00 80: the halves joined are the whole
    decode. And token_start finds the first such place of a window."""
    rng = np.random.default_rng(16)
    coded = tokens(wide_deltas(rng, 3000))
    raw = rng.choice(np.array([0x80, 0x00, 0x01, 0x7F, 0xFF], np.uint8), 4000).tobytes()
    for stream in (coded + END, raw + END):
        whole = byte_offset.dec_cbf32(stream, len(stream))
        allowed = [p for p in range(LOOKBACK, len(stream)) if KEY not in stream[p - LOOKBACK : p]]
        assert len(allowed) > 20
        for cut in allowed:
            head = byte_offset.dec_cbf32(stream[:cut], len(stream))
            tail = byte_offset.dec_cbf32(stream[cut:], len(stream))
            assert np.array_equal(joined(head, tail, len(stream)), whole), cut
        for lo in range(0, len(stream) - 64, 7):
            after = [p - lo for p in allowed if lo + LOOKBACK <= p <= lo + 64]
            assert token_start(stream[lo : lo + 64]) == (after[0] if after else None)


def test_exceptions_right_at_the_cut() -> None:
    """A 16-bit or 32-bit exception starting exactly where the stream is cut, or just before
    it, in a frame big enough for the halves."""
    n = halves.MIN_ITEMS + 10
    starts_at_cut = 0
    for wide, width in ((300, 3), (-(2**31) + 1, 7), (2**31 - 1, 7)):
        middle = (n - 1 + width) // 2  # the stream's: every other delta is one byte
        for at in range(middle - LOOKBACK - 8, middle + 2):
            d = np.ones(n, np.int64)
            d[at] = wide
            stream = tokens(d)
            got, cut = decoded(stream, n)
            assert np.array_equal(got, byte_offset.dec_cbf32(stream, n)), at
            rule = next(p for p in range(middle, len(stream)) if KEY not in stream[p - 14 : p])
            assert cut == rule
            starts_at_cut += cut == at
    assert starts_at_cut == 3


def test_wrapping_sums_and_a_cut_in_a_frame_of_wide_deltas() -> None:
    rng = np.random.default_rng(3)
    n = halves.MIN_ITEMS + 4321
    d = rng.integers(-3, 4, n).astype(np.int64)
    d[::997] = 2**31 - 1  # the running sum wraps int32 again and again
    stream = tokens(d)
    got, cut = decoded(stream, n)
    assert cut is not None and got.dtype == np.int32
    assert np.array_equal(got, byte_offset.dec_cbf32(stream, n))


def test_a_hostile_stream_with_no_cut_is_decoded_whole() -> None:
    """All 0x80 (3-byte tokens forever) and a repeated 7-byte exception: no 14 bytes without
    0x80 anywhere, so no cut; the values are still fabio's."""
    n = halves.MIN_ITEMS + 1
    for stream in (b"\x80" * (3 * n) + END, b"\x80\x00\x80\x01\x00\x00\x00" * n + END):
        got, cut = decoded(stream, n)
        assert cut is None and np.array_equal(got, byte_offset.dec_cbf32(stream, n))


def test_a_stream_longer_or_shorter_than_the_frame() -> None:
    """More values than pixels: cut at ``pixels`` as the whole decode is (also when the head
    alone holds them all); fewer: as many as the stream holds (the reader refuses those)."""
    rng = np.random.default_rng(5)
    n = 2 * halves.MIN_ITEMS + 100
    stream = tokens(rng.integers(-9, 10, 2 * n).astype(np.int64))
    for pixels in (n, n // 2, 2 * n, 3 * n):
        want = byte_offset.dec_cbf32(stream, pixels)
        got, cut = decoded(stream, pixels)
        assert cut is not None and got.size == want.size and np.array_equal(got, want), pixels


def test_a_read_that_fails_in_the_helper_thread_is_raised_here() -> None:
    n = halves.MIN_ITEMS + 5
    stream = tokens(np.ones(n, np.int64))

    def shrunk(offset: int, length: int) -> bytes:
        if offset >= len(stream) // 2:  # the tail, read on the helper thread
            raise Incomplete("still being written")
        return stream[offset : offset + length]

    with pytest.raises(Incomplete):
        decode_int32(shrunk, len(stream), n)


def test_a_small_frame_is_decoded_whole() -> None:
    """Under halves.MIN_ITEMS pixels (the zygote's warm-up frame): one read, one decode."""
    stream = tokens(np.arange(5000, dtype=np.int64))
    got, cut = decoded(stream, 5000)
    assert cut is None and np.array_equal(got, byte_offset.dec_cbf32(stream, 5000))
