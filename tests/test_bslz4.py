"""A big Eiger frame decoded in two halves on two cores, and a pixel mask decoded once per
mask content: the same pixels as HDF5's own filter pipeline, a chunk whose blocks do not add
up refused, and a different mask never taken for a known one."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from pyis_common.errors import Unsupported
from worker import halves
from worker.formats import bslz4, eiger, read_frame

BSLZ4 = hdf5plugin.Bitshuffle(nelems=0, cname="lz4")
DETECTOR = "/entry/instrument/detector"


def write_master(path: Path, frames: np.ndarray, mask: np.ndarray) -> Path:
    """A master holding its frames (``data_000001`` inside it) and a pixel mask stored as
    DECTRIS stores it: one bitshuffle/LZ4 chunk."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "/entry/data/data_000001", data=frames, chunks=(1, *frames.shape[1:]), **BSLZ4
        )
        spec = f.create_group(f"{DETECTOR}/detectorSpecific")
        spec.create_dataset("pixel_mask", data=mask.astype(np.uint32), chunks=mask.shape, **BSLZ4)
    return path


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1031, 1029), np.uint32), ((1024, 1027), np.uint16), ((1039, 1021), np.uint8)],
)
def test_a_big_frame_decoded_in_halves_is_the_filter_pipelines_frame(tmp_path, shape, dtype):
    assert shape[0] * shape[1] >= halves.MIN_ITEMS  # big enough to be split
    rng = np.random.default_rng(5)
    frames = rng.poisson(4, (2, *shape)).astype(dtype)
    frames[:, 7, :] = np.iinfo(dtype).max  # a gap row
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("d", data=frames, chunks=(1, *shape), **BSLZ4)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for i in range(2):
            direct = bslz4.read_frame(f["d"], i)
            assert direct is not None and np.array_equal(direct, f["d"][i])


def _with_bad_chunks(
    tmp_path: Path, shape: tuple[int, int], spoil: Callable[[bytes], list[bytes]]
) -> tuple[str, np.ndarray]:
    """An Eiger data file whose frame 1 is good and whose frames 2... are ``spoil`` of its
    stored chunk; its path and frame 1."""
    frame = np.arange(shape[0] * shape[1], dtype=np.uint32).reshape(shape) % 1000
    with h5py.File(tmp_path / "d_data_000001.h5", "w") as f:
        ds = f.create_dataset(
            "entry/data/data",
            data=frame[None],
            maxshape=(None, *shape),
            chunks=(1, *shape),
            **BSLZ4,
        )
        spoiled = spoil(ds.id.read_direct_chunk((0, 0, 0))[1])
        ds.resize(1 + len(spoiled), axis=0)
        for i, chunk in enumerate(spoiled, start=1):
            ds.id.write_direct_chunk((i, 0, 0), chunk)
    return str(tmp_path / "d_data_000001.h5"), frame


def _lying_sizes(good: bytes) -> list[bytes]:
    head = struct.unpack_from(">I", good, 12)[0]  # the first block's size, made a lie
    return [good[: len(good) // 3], good[:12] + struct.pack(">I", head + 40) + good[16:]]


def test_a_big_chunk_whose_blocks_do_not_fill_it_is_refused(tmp_path):
    path, frame = _with_bad_chunks(tmp_path, (1024, 1024), _lying_sizes)  # truncated, a lie
    assert np.array_equal(read_frame(path, 1).data, frame)
    for bad in (2, 3):
        with pytest.raises(Unsupported, match="d_data_000001.h5"):
            read_frame(path, bad)


def _garbled(chunk: bytes, seed: int) -> bytes:
    """``chunk`` with every block's LZ4 data replaced by random bytes, each block's size kept:
    the walk of the sizes passes, and only the LZ4 decoder sees what is wrong."""
    rng = np.random.default_rng(seed)
    out, at = bytearray(chunk), 12
    while at + 4 <= len(out):
        size = struct.unpack_from(">I", out, at)[0]
        if at + 4 + size > len(out):
            break  # the raw pixels after the last block
        out[at + 4 : at + 4 + size] = rng.integers(0, 256, size, np.uint8).tobytes()
        at += 4 + size
    return bytes(out)


@pytest.mark.parametrize("shape", [(1024, 1024), (64, 48)])  # two halves, and one decode
def test_garbage_lz4_inside_well_sized_blocks_is_refused(tmp_path, shape):
    """bitshuffle decodes each block with LZ4_decompress_safe, which checks input and output
    bounds; a block whose data lies is refused like any corrupt frame, and nothing crashes."""
    path, frame = _with_bad_chunks(
        tmp_path, shape, lambda good: [_garbled(good, i) for i in (1, 2, 3)]
    )
    for bad in (2, 3, 4):
        with pytest.raises(Unsupported, match="d_data_000001.h5"):
            read_frame(path, bad)
    assert np.array_equal(read_frame(path, 1).data, frame)  # and the good frame still reads


def test_a_mask_is_decoded_once_and_a_different_mask_is_never_taken_for_it(tmp_path, monkeypatch):
    shape = (40, 50)
    frames = np.full((1, *shape), 7, np.uint32)
    first, other = np.zeros(shape, bool), np.zeros(shape, bool)
    first[3, :], other[:, 4] = True, True
    a = write_master(tmp_path / "a_master.h5", frames, first)
    same = write_master(tmp_path / "b_master.h5", frames, first)  # another file, same mask
    different = write_master(tmp_path / "c_master.h5", frames, other)
    decoded = []
    monkeypatch.setattr(eiger, "_nonzero", lambda raw: decoded.append(1) or np.not_equal(raw, 0))
    eiger._masks.clear()
    assert np.array_equal(read_frame(str(a)).mask, first)
    assert np.array_equal(read_frame(str(same)).mask, first)
    assert len(decoded) == 1  # the second master's mask is known by its stored bytes
    assert np.array_equal(read_frame(str(different)).mask, other)
    assert len(decoded) == 2
