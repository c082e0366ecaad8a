"""The Eiger/HDF5 reader's harder cases: series across data files, masks, hyperslabs,
links out of the folder, broken files and corrupt bitshuffle chunks."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from pyis_common.errors import Forbidden, Incomplete, NotFound, Unsupported
from tests.support.eigerseries import (
    DATA,
    DETECTOR,
    library_frame,
    path_of,
    six_frames,
    write_series,
)
from worker import render
from worker.formats import bslz4, read_frame, read_meta
from worker.reduce import reduce_max


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 30x40 uint32 frames, three per data file, a masked row and a saturated masked pixel."""
    return six_frames(tmp_path)


def test_eiger_frames_across_data_files(series: tuple[Path, np.ndarray, np.ndarray]) -> None:
    master, frames, mask = series
    meta = read_meta(str(master))
    assert meta["last_frame"] == meta["nimages"] == 6 and meta["image_depth"] == 4
    assert meta["detector"] == "Dectris EIGER2 test" and meta["saturation"] == 50000
    for n in range(1, 7):
        frame = read_frame(str(master), n)
        assert np.array_equal(frame.data, frames[n - 1]) and np.array_equal(frame.mask, mask)
        assert frame.meta["frame"] == n and frame.meta["startPhi"] == pytest.approx(
            10 + 0.25 * (n - 1)
        )
    assert not np.array_equal(read_frame(str(master), 3).data, read_frame(str(master), 4).data)
    for bad in (0, 7):
        with pytest.raises(NotFound, match=f"no frame {bad}"):
            read_frame(str(master), bad)


def test_eiger_without_image_numbers_counts_on(tmp_path: Path) -> None:
    frames = np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6)
    master = write_series(tmp_path, frames, 2, np.zeros((4, 6)), numbered=False)
    for n in range(1, 6):  # files of 2, 2 and 1 frames
        assert np.array_equal(read_frame(str(master), n).data, frames[n - 1])


def test_eiger_masked_pixels_are_never_red_or_counted(
    series: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    master, frames, mask = series
    frame = read_frame(str(master), 2)
    reduced = reduce_max(frame, 40)  # same size: one source pixel per output pixel
    assert not reduced.saturated.any() and not reduced.valid[mask].any()
    assert reduced.stats["n"] == frames[1].size - int(mask.sum())
    rgb = render.to_rgb(reduced, *render.levels(reduced.stats, 0.0, -1.0))
    assert (rgb[mask] == 255).all()  # white: no data, never red


def test_eiger_reads_only_the_frame_hyperslab(
    series: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    master = series[0]
    selections: list[object] = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, key: object, *args: object) -> object:
        if self.ndim == 3:
            selections.append(key)
        return original(self, key, *args)

    original_direct = bslz4.read_frame

    def spy_direct(ds: h5py.Dataset, index: int) -> object:
        selections.append(index)
        return original_direct(ds, index)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    monkeypatch.setattr(bslz4, "read_frame", spy_direct)
    read_meta(str(master))
    assert selections == []  # the header says it all: no data file is read
    frame = read_frame(str(master), 5)
    # frame 5 = the second image of the second data file, read as one raw chunk
    assert selections == [1]
    assert np.array_equal(frame.data, series[1][4])


def test_eiger_data_file_alone_keeps_the_series_numbers(testdata: Path) -> None:
    """data_000002 holds images 3 and 4 (image_nr_low..high): frame 3 is its first image,
    as it is frame 3 of the master; frames 1, 2 and 5 are not in it."""
    name = "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5"
    third, fourth = read_frame(path_of(name), 3), read_frame(path_of(name), 4)
    assert np.array_equal(third.data, library_frame(path_of(name), 0))
    assert np.array_equal(fourth.data, library_frame(path_of(name), 1))
    assert not np.array_equal(third.data, fourth.data)  # the frames do differ, a little
    assert (third.meta["first_frame"], third.meta["last_frame"], third.meta["frame"]) == (3, 4, 3)
    assert (third.meta["image_nr_low"], third.meta["image_nr_high"]) == (3, 4)
    assert third.mask is None  # no pixel at 65535, no pixel_mask
    assert np.array_equal(read_frame(path_of(name), None).data, third.data)  # no frame: first
    assert read_meta(path_of(name), 4)["frame"] == 4
    for bad in (1, 2, 5):
        with pytest.raises(NotFound, match=f"no frame {bad} \\(frames 3 to 4\\)"):
            read_frame(path_of(name), bad)
        with pytest.raises(NotFound):
            read_meta(path_of(name), bad)


def test_eiger_gap_rows_of_a_data_file_are_masked_not_red(testdata: Path) -> None:
    name = "eiger/eiger1_testmode10_2datafiles_4images_bslz4_data_000001.h5"
    frame = read_frame(path_of(name))
    assert frame.mask[514:551].all()  # the 37 rows between the two modules, all 65535
    assert np.array_equal(frame.mask, frame.data == 65535)
    assert not reduce_max(frame, 103).saturated.any()


def test_eiger_master_without_data_file(testdata: Path) -> None:
    """DECTRIS writes the master first: a data file not there is a series still being
    written (retryable), not a file that does not exist."""
    path = path_of("eiger/dectris_eiger_master.h5")
    with pytest.raises(Incomplete, match="dectris_eiger_data_000001.h5.*try again"):
        read_frame(path)
    with h5py.File(path, "r") as f:
        omega = f["/entry/sample/goniometer/omega_increment"][()]
    assert read_meta(path)["omega_increment"] == pytest.approx(omega)


@pytest.mark.parametrize("target", ["../outside.h5", "/etc/outside.h5", "escape.h5"])
def test_eiger_links_out_of_the_folder_are_refused(tmp_path: Path, target: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f[DATA] = np.ones((1, 4, 4), np.uint16)
    os.symlink(tmp_path / "outside.h5", home / "escape.h5")  # beside the master, pointing out
    with h5py.File(home / "master.h5", "w") as f:
        f[DETECTOR + "/detectorSpecific/nimages"] = np.uint32(1)
        f["/entry/data/data_000001"] = h5py.ExternalLink(target, DATA)
    with pytest.raises(Forbidden, match="outside its folder"):
        read_frame(str(home / "master.h5"))


def test_eiger_header_links_and_external_storage_are_not_followed(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["x"] = np.float32(99.0)
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f[DETECTOR + "/beam_center_x"] = h5py.ExternalLink("elsewhere.h5", "x")
        f[DETECTOR + "/beam_center_y"] = h5py.SoftLink("/loop")  # a soft link to itself
        f["/loop"] = h5py.SoftLink("/loop")
        f[DETECTOR + "/detector_distance"] = h5py.SoftLink("/distance")  # inside: followed
        f["/distance"] = np.float32(0.25)
        f[DATA] = np.ones((2, 4, 4), np.uint16)
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f.create_dataset(DATA, (2, 4, 4), np.uint16, external=[("pixels.bin", 0, 64)])
    meta = read_meta(str(tmp_path / "links.h5"))
    assert "beam_center_x" not in meta and "beam_center_y" not in meta
    assert meta["detector_distance"] == 0.25 and meta["last_frame"] == 2
    with pytest.raises(Forbidden, match="external storage"):
        read_frame(str(tmp_path / "raw.h5"))


def test_broken_hdf5_files_are_unsupported(testdata: Path, tmp_path: Path) -> None:
    raw = (testdata / "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5").read_bytes()
    (tmp_path / "half.h5").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5 at all\n" * 100)
    (tmp_path / "empty.h5").write_bytes(b"")
    with h5py.File(tmp_path / "table.h5", "w") as f:
        f["/results/table"] = np.arange(10)
    cases = {"half.h5": (Incomplete, "still being written"),
             "garbage.h5": (Unsupported, "truncated or corrupt"),
             "table.h5": (Unsupported, "without Eiger images"),
             "empty.h5": (Unsupported, "is empty")}  # fmt: skip
    for name, (error, reason) in cases.items():
        for read in (read_frame, read_meta):
            with pytest.raises(error, match=reason) as caught:
                read(str(tmp_path / name))
            assert name in str(caught.value) and "\n" not in str(caught.value)


def test_a_corrupt_bitshuffle_chunk_is_refused_cleanly(tmp_path: Path) -> None:
    """The fast path decodes raw chunks itself, so it checks their header first."""
    path = tmp_path / "corrupt_data_000001.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "entry/data/data",
            (2, 30, 40),
            np.uint32,
            chunks=(1, 30, 40),
            **hdf5plugin.Bitshuffle(),
        )
        ds[0] = np.arange(1200, dtype=np.uint32).reshape(30, 40)
        ds.id.write_direct_chunk((1, 0, 0), struct.pack(">QI", 999, 8192) + b"\0" * 64)
    assert np.array_equal(read_frame(str(path), 1).data, np.arange(1200).reshape(30, 40))
    with pytest.raises(Unsupported):
        read_frame(str(path), 2)
