"""Every test-data file against the library a user would open it with, the Eiger and DICOM
readers' harder cases, a golden picture per format, and the spots job.

Expected dimensions and header values come from shared/testdata/README.md (what fabio, h5py
and pydicom reported when the files were collected) and from opening each file here with that
library directly; pixels are compared with the library's own decode. Eiger series with a
master are written here with h5py and hdf5plugin, because no public one is small enough to ship.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pydicom
import pydicom.pixels
import pytest
from PIL import Image

from pyis_common.errors import Forbidden, Incomplete, NotFound, Unsupported
from tests.conftest import TESTDATA
from tests.support.imports import assert_imports_nothing_new
from tests.support.testfiles import FABIO_FORMATS
from worker import jobs, render, spots
from worker.formats import Frame, Opened, bslz4, read_frame, read_meta
from worker.pyramid import Pyramid
from worker.reduce import reduce_max

# README summary table: file -> (W, H, dtype, frames); dtype None: not decodable here
FILES = {
    "cbf/thau_3_2_0001.cbf": (2463, 2527, "int32", 1),
    "cbf/thau_3_2_0002.cbf": (2463, 2527, "int32", 1),
    "cbf/run2_1_00148.cbf": (2463, 2527, "int32", 1),
    "cbf/l-cyst_01_00001.cbf": (1475, 1679, "int32", 1),
    "cbf/l-cyst_01_00002.cbf": (1475, 1679, "int32", 1),
    "cbf/dlsnxs2cbf_therm_0001.cbf": (4148, 4362, "int32", 1),
    "eiger/dectris_eiger_master.h5": (3110, 3269, None, 1),
    "eiger/eiger1_testmode10_2datafiles_4images_bslz4_data_000001.h5": (1030, 1065, "uint16", 2),
    "eiger/eiger1_testmode10_2datafiles_4images_lz4_data_000001.h5": (1030, 1065, "uint16", 2),
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5": (1028, 512, "uint16", 2),
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5": (1028, 512, "uint16", 2),
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_uint32_data_000001.h5": (
        1028,
        512,
        "uint32",
        2,
    ),  # fmt: skip
    "marccd/somedata_0001.mccd": (1024, 1024, "uint16", 1),
    "marccd/corkcont2_H_0089.mccd": (2048, 2048, "uint16", 1),
    "mar345/example.mar2300": (2300, 2300, "uint32", 1),
    "smv/TIMEPIX_SU_512-stdgoni_0001.img": (512, 512, "uint16", 1),
    "other/CeO2_Pilatus1M.tif": (981, 1043, "int32", 1),
    "other/Cr8F8140k103.0026": (512, 512, "uint32", 1),
    "other/i01f0001.kcd": (625, 576, "int32", 1),
    "other/b191_1_9_1.img": (512, 512, "int16", 1),
    "other/F2K_Seb_Lyso0675.edf": (2048, 2048, "uint16", 1),
    "dicom/CT_small.dcm": (128, 128, "int16", 1),
    "dicom/MR_small.dcm": (64, 64, "int16", 1),
    "dicom/MR_small_RLE.dcm": (64, 64, "int16", 1),
    "dicom/MR_small_jp2klossless.dcm": (64, 64, "int16", 1),
    "dicom/emri_small.dcm": (64, 64, "uint16", 10),
    "dicom/emri_small_RLE.dcm": (64, 64, "uint16", 10),
    "dicom/MR2_J2KR.dcm": (1024, 1024, "uint16", 1),
    "dicom/eCT_Supplemental.dcm": (512, 512, "uint16", 2),
    "dicom/JPEG-LL.dcm": (256, 1024, None, 1),
}
# README per-file details, under our meta names (metres, Angstrom, pixels, degrees, seconds)
HEADERS = {
    "cbf/thau_3_2_0001.cbf": dict(wavelength=0.96859, detector_distance=0.351,
        beam_center_x=1261.61, beam_center_y=1306.96, exposureTime=0.019, saturation=115897),
    "cbf/thau_3_2_0002.cbf": dict(wavelength=0.96859, detector_distance=0.351,
        beam_center_x=1261.61, beam_center_y=1306.96, exposureTime=0.019, saturation=115897),
    "cbf/run2_1_00148.cbf": dict(wavelength=1.0332, detector_distance=0.3, beam_center_x=1230.1,
        beam_center_y=1310.5, exposureTime=0.395, startPhi=74.3999, rotationRange=0.2),
    "cbf/l-cyst_01_00001.cbf": dict(wavelength=0.6889, detector_distance=0.16,
        beam_center_x=730.0, beam_center_y=865.0, startPhi=-145.0, rotationRange=0.1),
    "cbf/l-cyst_01_00002.cbf": dict(wavelength=0.6889, startPhi=-144.9, exposureTime=0.0964),
    "cbf/dlsnxs2cbf_therm_0001.cbf": dict(wavelength=0.98027, detector_distance=0.21396,
        beam_center_x=2216.06, beam_center_y=2300.41, startPhi=174.0, saturation=65535),
    "marccd/somedata_0001.mccd": dict(wavelength=1.03318, beam_center_x=522.549,
        x_pixel_size=157.88e-6),
    "marccd/corkcont2_H_0089.mccd": dict(wavelength=1.03318, beam_center_y=1043.089,
        x_pixel_size=79.092e-6),
    "mar345/example.mar2300": dict(wavelength=1.08, detector_distance=0.24, beam_center_x=1150.0,
        x_pixel_size=150e-6, startPhi=0.0, rotationRange=1.0),
    "smv/TIMEPIX_SU_512-stdgoni_0001.img": dict(wavelength=0.0251, detector_distance=0.53185,
        x_pixel_size=55e-6, startPhi=65.4, rotationRange=0.23),
    "other/CeO2_Pilatus1M.tif": dict(detector_distance=0.21143, beam_center_x=498.18,
        beam_center_y=515.77, exposureTime=3.0),
    "other/Cr8F8140k103.0026": dict(wavelength=0.5166, detector_distance=0.089,
        beam_center_x=260.61, beam_center_y=240.85, rotationRange=-0.2),
    "other/i01f0001.kcd": dict(detector_distance=0.04, x_pixel_size=55e-6, rotationRange=1.0),
    "other/b191_1_9_1.img": dict(wavelength=0.71073, detector_distance=0.04983,
        beam_center_x=492.89, beam_center_y=523.07),
    "eiger/dectris_eiger_master.h5": dict(detector="Dectris Eiger 9M", wavelength=0.98011,
        detector_distance=0.134255, beam_center_x=1607.415, beam_center_y=1586.431,
        x_pixel_size=75e-6, nimages=1, omega_start=0.0, omega_increment=0.5),
}  # fmt: skip
DATA = "/entry/data/data"
DETECTOR = "/entry/instrument/detector"


def approx(expected: float) -> object:
    """The README rounds to 4 to 6 significant digits."""
    return pytest.approx(expected, rel=1e-4, abs=1e-12)


def path_of(name: str) -> str:
    return str(TESTDATA / name)


def library_frame(path: str, index: int = 0) -> np.ndarray:
    """Frame ``index`` (0-based) decoded by the library a user would use, not by us."""
    if path.endswith(".h5"):
        with h5py.File(path, "r") as f:
            return f[DATA][index]
    if path.endswith(".dcm"):
        return pydicom.pixels.pixel_array(path, index=index)
    return fabio.open(path).data


def library_header(path: str) -> dict[str, object]:
    """What h5py or pydicom say about the fields our meta carries; fabio formats use HEADERS."""
    if path.endswith(".h5"):
        with h5py.File(path, "r") as f:
            if DATA in f:  # a data file alone keeps the series' numbers (image_nr_high)
                last = int(f[DATA].attrs.get("image_nr_high", f[DATA].shape[0]))
                return {"last_frame": last, "image_depth": f[DATA].dtype.itemsize}
            det = f[DETECTOR]
            return {
                "beam_center_x": float(det["beam_center_x"][()]),
                "detector_distance": float(det["detector_distance"][()]),
                "x_pixel_size": float(det["x_pixel_size"][()]),
                "image_depth": int(det["bit_depth_image"][()]) // 8,
                "last_frame": int(det["detectorSpecific/nimages"][()]),
            }
    if path.endswith(".dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out = {"last_frame": int(ds.get("NumberOfFrames", 1)), "modality": ds.Modality}
        if "WindowCenter" in ds:
            out["window_center"] = float(ds.WindowCenter)
        return out
    return {}


def test_the_table_lists_every_test_file(testdata: Path) -> None:
    on_disk = {str(p.relative_to(testdata)) for p in testdata.glob("*/*")}
    assert on_disk == set(FILES) and len(FILES) == 30  # README: 30 files


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_file_matches_its_library(testdata: Path, name: str) -> None:
    width, height, dtype, frames = FILES[name]
    path = path_of(name)
    meta = read_meta(path)
    assert (meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]) == (width, height)
    assert meta["last_frame"] - meta["first_frame"] + 1 == frames
    assert meta["filename"] == Path(name).name
    for key, expected in HEADERS.get(name, {}).items() | library_header(path).items():
        assert meta[key] == (expected if isinstance(expected, str) else approx(expected))
    if dtype is None:
        return  # the undecodable two: see the Eiger and DICOM tests below
    frame = read_frame(path)
    assert frame.data.shape == (height, width) and frame.data.dtype == np.dtype(dtype)
    assert np.array_equal(frame.data, library_frame(path))
    assert frame.meta["image_depth"] == frame.data.dtype.itemsize
    assert {k: v for k, v in frame.meta.items() if k != "frame"} == {
        k: v for k, v in meta.items() if k != "frame"
    }


# ---------------------------------------------------------------------------- Eiger


def write_series(
    folder: Path, frames: np.ndarray, per_file: int, mask: np.ndarray, numbered: bool = True
) -> Path:
    """An Eiger master + data files as the DECTRIS file writer lays them out, written with
    h5py and hdf5plugin's bitshuffle/LZ4 directly (independent of worker.formats.samples)."""
    master = folder / "series_master.h5"
    with h5py.File(master, "w") as f:
        det = f.create_group(DETECTOR)
        det["description"] = np.bytes_(b"Dectris EIGER2 test")
        det["beam_center_x"], det["beam_center_y"] = np.float32(20.5), np.float32(15.25)
        det["bit_depth_image"] = np.uint32(32)
        det["saturation_value"] = np.uint32(50000)
        det["detectorSpecific/nimages"] = np.uint32(len(frames))
        det["detectorSpecific/x_pixels_in_detector"] = np.uint32(frames.shape[2])
        det["detectorSpecific/y_pixels_in_detector"] = np.uint32(frames.shape[1])
        det["detectorSpecific/pixel_mask"] = mask.astype(np.uint32)
        f["/entry/sample/goniometer/omega"] = np.arange(len(frames), dtype=np.float32) * 0.25 + 10
        f["/entry/sample/goniometer/omega_range_average"] = np.float32(0.25)
        for k, first in enumerate(range(0, len(frames), per_file), start=1):
            name = f"series_data_{k:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                ds = d.create_dataset(
                    DATA, data=frames[first : first + per_file], chunks=(1, *frames.shape[1:]),
                    **hdf5plugin.Bitshuffle(),
                )  # fmt: skip
                if numbered:
                    ds.attrs["image_nr_low"] = np.uint64(first + 1)
                    ds.attrs["image_nr_high"] = np.uint64(first + per_file)
            f[f"/entry/data/data_{k:06d}"] = h5py.ExternalLink(name, DATA)
    return master


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 30x40 uint32 frames of different noise, three per data file, a masked row and a
    masked pixel at the saturation value (it must be neither red nor counted)."""
    rng = np.random.default_rng(7)
    frames = rng.poisson(20, (6, 30, 40)).astype(np.uint32)
    mask = np.zeros((30, 40), np.uint32)
    mask[10, :] = 1
    mask[3, 4] = 8
    frames[:, 3, 4] = 60000
    frames[:, 10, :] = 0xFFFFFFFF
    return write_series(tmp_path, frames, 3, mask), frames, mask != 0


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


# ---------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("name", ["dicom/emri_small.dcm", "dicom/emri_small_RLE.dcm"])
def test_dicom_multi_frame(testdata: Path, name: str) -> None:
    path = path_of(name)
    frames = pydicom.dcmread(path).pixel_array
    for n in (1, 5, 10):
        assert np.array_equal(read_frame(path, n).data, frames[n - 1])
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(NotFound, match="no frame 11"):
        read_frame(path, 11)


def test_dicom_without_decoder_names_the_transfer_syntax(testdata: Path) -> None:
    with pytest.raises(Unsupported, match=r"JPEG-LL\.dcm is compressed as JPEG Lossless.*"):
        read_frame(path_of("dicom/JPEG-LL.dcm"))


def test_dicom_window_is_the_automatic_contrast(testdata: Path) -> None:
    meta = read_meta(path_of("dicom/MR_small.dcm"))  # centre 600, width 1600, no rescale
    assert meta["auto_levels"] == [-200.0, 1400.0]
    enhanced = read_meta(path_of("dicom/eCT_Supplemental.dcm"))  # in functional groups, HU
    assert enhanced["auto_levels"] == [49 - 51 + 1024, 49 + 51 + 1024]
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 24)
    result = pipeline.run({"type": "jpeg", "fn": "dicom/MR_small.dcm", "xsize": 64, "wval": -1})
    assert (result.job["wval_used"], result.job["bval_used"]) == (0.0, 1400.0)
    explicit = pipeline.run({"type": "jpeg", "fn": "dicom/MR_small.dcm", "contrast": 900})
    assert explicit.job["bval_used"] == 900.0  # a user's contrast still wins


def test_dicom_meta_decodes_no_pixels(testdata: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read_meta decoded pixels")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", refuse)
    assert read_meta(path_of("dicom/MR2_J2KR.dcm"))["transfer_syntax"].startswith("JPEG 2000")


def test_broken_and_colour_dicom_are_unsupported(testdata: Path, tmp_path: Path) -> None:
    raw = (testdata / "dicom/MR_small.dcm").read_bytes()
    (tmp_path / "half.dcm").write_bytes(raw[: len(raw) // 2])  # header whole, pixels cut
    (tmp_path / "stub.dcm").write_bytes(raw[:300])  # the header is cut too
    (tmp_path / "empty.dcm").write_bytes(b"")
    ds = pydicom.dcmread(path_of("dicom/MR_small.dcm"))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(tmp_path / "colour.dcm")
    assert read_meta(str(tmp_path / "half.dcm"))["x_pixels_in_detector"] == 64
    for name, reason in (("half.dcm", "truncated"), ("stub.dcm", "truncated"),
                         ("colour.dcm", "colour"), ("empty.dcm", "is empty")):  # fmt: skip
        with pytest.raises(Unsupported, match=reason) as caught:
            read_frame(str(tmp_path / name))
        assert name in str(caught.value)


# ---------------------------------------------------------------------------- TIFF


def test_plain_and_eiger_monitor_tiff(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    plain = rng.integers(0, 3000, (50, 70)).astype(np.uint16)
    plain[5, 5] = 65535  # a real saturated count in a 16-bit TIFF
    Image.fromarray(plain).save(tmp_path / "plain.tif")
    monitor = rng.integers(0, 100, (50, 70)).astype(np.uint32)
    monitor[20:23, :] = 0xFFFFFFFF  # an Eiger module gap
    fabio.tifimage.TifImage(data=monitor).write(str(tmp_path / "monitor.tif"))
    frame = read_frame(str(tmp_path / "plain.tif"))
    assert np.array_equal(frame.data, plain) and frame.mask is None
    assert frame.meta["format"] == "tiff" and reduce_max(frame, 70).saturated[5, 5]
    frame = read_frame(str(tmp_path / "monitor.tif"))
    assert np.array_equal(frame.data, monitor) and frame.mask[20:23].all()
    assert int(frame.mask.sum()) == 3 * 70 and not reduce_max(frame, 70).saturated.any()


# ---------------------------------------------------------------------------- golden pictures


def reference_rgb(reduced: object, white: float, black: float) -> np.ndarray:
    """The C server's mapping, written out: white below, black above, grey between, masked
    white, saturated red."""
    value = reduced.data.astype(np.float64)
    grey = np.clip(np.floor(255.0 - (value - white) / (black - white) * 255.0), 0, 255)
    grey[~reduced.valid] = 255
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[reduced.saturated] = (255, 0, 0)
    return rgb


GOLDEN = [
    "cbf/l-cyst_01_00001.cbf",
    "marccd/somedata_0001.mccd",
    *FABIO_FORMATS,
    "eiger/eiger1_testmode10_2datafiles_4images_lz4_data_000001.h5",
    "dicom/CT_small.dcm",
    "dicom/MR_small_RLE.dcm",
    "dicom/MR2_J2KR.dcm",
    "dicom/eCT_Supplemental.dcm",
]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_jpeg(testdata: Path, name: str) -> None:
    check_golden(str(testdata), name, 2 if "eCT" in name else 1)


def test_golden_jpeg_eiger_master(series: tuple[Path, np.ndarray, np.ndarray]) -> None:
    check_golden(str(series[0].parent), series[0].name, 4)


def test_golden_jpeg_plain_tiff(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:300, 0:400]
    rings = (1000 + 800 * np.cos(np.hypot(yy - 150, xx - 200) / 6)).astype(np.uint16)
    Image.fromarray(rings).save(tmp_path / "rings.tif")
    check_golden(str(tmp_path), "rings.tif", 1)


def check_golden(home: str, name: str, frame: int) -> None:
    """Every pixel: the server's JPEG is the reference map of its own reduction (the pyramid's),
    encoded as the server encodes; that reduction is the one-pass max-pool's picture."""
    pipeline = jobs.Pipeline(home=home, cache_bytes=1 << 26)
    job = {"type": "jpeg", "fn": name, "frame": frame, "xsize": 200, "wval": -1, "levels": "c"}
    result = pipeline.run(job)  # the C rule: one linear pair, so a reference map to compare
    picture = decoded(result.payloads[0])
    read = read_frame(os.path.join(home, name), frame)
    reduced = Pyramid(read, dict(read.meta)).reduce(200)
    assert picture.shape == (*reduced.data.shape, 3) and picture.shape[1] == 200
    assert (result.job["xsize"], result.job["ysize"]) == (200, reduced.data.shape[0])
    expected = reference_rgb(reduced, result.job["wval_used"], result.job["bval_used"])
    assert 0 < expected.mean() < 255  # a picture, not a blank
    same = picture == decoded(render.encode_jpeg(expected.astype(np.uint8)))
    assert same.all(), f"{(~same).any(axis=2).sum()} pixels differ from the reference map"
    one_pass = reference_rgb(reduce_max(read, 200), *(result.job[k] for k in LEVELS_USED))
    assert abs(picture.mean() - one_pass.mean()) < 2  # the same picture as one max-pool


LEVELS_USED = ("wval_used", "bval_used")


def decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_multi_frame_label_carries_the_frame(
    testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels: list[str] = []
    original = render.render

    def spy(
        reduced: object, contrast: float, wval: float, label: str, *rest: object, **kw: object
    ) -> object:
        labels.append(label)
        return original(reduced, contrast, wval, label, *rest, **kw)

    monkeypatch.setattr(render, "render", spy)
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 24)
    for fn in ("dicom/emri_small.dcm", "dicom/MR_small.dcm"):
        pipeline.run({"type": "jpeg", "fn": fn, "frame": 3 if "emri" in fn else 1,
                      "label": "scan", "labelHeight": 16})  # fmt: skip
    assert labels == ["scan 3", "scan"]


# ---------------------------------------------------------------------------- spots


def ring_image(beam: tuple[float, float]) -> tuple[Frame, list[int]]:
    """A flat background of 10 counts, bright pixels (1000) at radii chosen by bin, and a masked
    bright pixel; the expected counts from r**2 computed here, bin by bin."""
    height, width = 120, 160
    data = np.full((height, width), 10, np.int32)
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = (yy + 0.5 - beam[1]) ** 2 + (xx + 0.5 - beam[0]) ** 2
    low, high = r2.min(), r2.max()
    bins = np.minimum(((r2 - low) / (high - low) * 16).astype(int), 15)
    expected = [0] * 16
    for b, n in ((0, 1), (3, 2), (7, 3), (12, 4), (15, 1)):
        ys, xs = np.nonzero(bins == b)
        data[ys[:: len(ys) // n][:n], xs[:: len(ys) // n][:n]] = 1000
        expected[b] = n
    ys, xs = np.nonzero(bins == 5)
    mask = np.zeros(data.shape, bool)
    data[ys[0], xs[0]], mask[ys[0], xs[0]] = 1000, True  # bright but masked: never a spot
    return Frame(data, mask, None, {"beam_center_x": beam[0], "beam_center_y": beam[1]}), expected


@pytest.mark.parametrize("beam", [(80.0, 60.0), (-300.0, 500.0), (17.25, 100.5)])
def test_spots_counts_bright_pixels_per_ring(beam: tuple[float, float]) -> None:
    frame, expected = ring_image(beam)
    reduced = reduce_max(frame, 160)  # one source pixel per output pixel
    with np.errstate(all="raise"):
        job, meta = spots.reply(reduced, frame.meta)
    assert meta["spots_per_bin"] == expected and meta["spots"] == sum(expected)
    assert (meta["spots_beam_x"], meta["spots_beam_y"]) == beam and not meta["spots_beam_guessed"]
    assert job == {"xsize": 160, "ysize": 120, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}


@pytest.mark.parametrize("shape", [(1, 1), (40, 1), (1, 40)])
def test_spots_on_one_pixel_images_do_not_divide_by_zero(shape: tuple[int, int]) -> None:
    """No beam centre: the image centre. The bright pixel beside it is in bin 0 with nine
    dark ones (a lone pixel is its own mean, never a spot)."""
    data = np.zeros(shape, np.uint16)
    data[shape[0] // 2, shape[1] // 2] = 1000
    reduced = reduce_max(Frame(data, None, None, {}), shape[1])
    with np.errstate(all="raise"):
        _, meta = spots.reply(reduced, {})
    assert meta["spots_beam_guessed"]
    assert meta["spots_per_bin"] == [0 if shape == (1, 1) else 1] + [0] * 15


def test_spots_job_on_a_real_cbf(testdata: Path) -> None:
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26)
    result = pipeline.run({"type": "spots", "fn": "cbf/thau_3_2_0001.cbf", "zoom": 4})
    assert result.payloads == []
    assert result.job == {"xsize": 512, "ysize": 525, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}
    meta = result.meta
    assert len(meta["spots_per_bin"]) == 16 and sum(meta["spots_per_bin"]) == meta["spots"]
    assert 50 < meta["spots"] < 0.05 * 512 * 525  # spots, not noise everywhere
    assert meta["spots_beam_x"] == pytest.approx(1261.61 * 512 / 2463)
    assert meta["wavelength"] == pytest.approx(0.96859)


# ---------------------------------------------------------------------------- warm-up


def test_after_warm_up_no_format_imports_anything(tmp_path: Path) -> None:
    """The zygote runs warmup.warm() before forking; after the privilege drop a lazy import may
    fail. So after warm(), reading, rendering and counting spots on every test file (and an
    Eiger series) must import no module."""
    frames = np.arange(2 * 8 * 8, dtype=np.uint32).reshape(2, 8, 8)
    write_series(tmp_path, frames, 1, np.eye(8))
    setup = """
from pathlib import Path
from pyis_common.errors import PyisError
from worker import jobs, warmup
warmup.warm()
"""
    work = f"""
for home in ({str(TESTDATA)!r}, {str(tmp_path)!r}):
    pipeline = jobs.Pipeline(home=home, cache_bytes=1 << 24)
    for path in sorted(Path(home).glob("*/*")) + sorted(Path(home).glob("*.h5")):
        if path.name in ("README.md", "SHA256SUMS"):
            continue
        for job in ({{"type": "meta"}}, {{"type": "spots"}}, {{"type": "jpeg", "frame": 1}},
                    {{"type": "jpeg", "frame": 2}}):
            job.update(fn=str(path), xsize=64, label="x", labelHeight=20)
            try:
                pipeline.run(job)
            except PyisError:
                pass
"""
    assert_imports_nothing_new(setup, work, timeout_s=300)


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


def test_marccd_pixels_are_read_directly_only_for_plain_16_bit_strips(testdata: Path) -> None:
    from worker.formats import marccd

    corkcont = str(testdata / "marccd/corkcont2_H_0089.mccd")
    with Opened.plain(corkcont) as src:
        direct = marccd._raw_pixels(src, (2048, 2048))
        assert direct is not None and np.array_equal(direct, fabio.open(corkcont).data)
        assert marccd._raw_pixels(src, (1024, 1024)) is None  # not what the header says
    with Opened.plain(str(testdata / "other/CeO2_Pilatus1M.tif")) as pilatus_tiff:
        assert marccd._raw_pixels(pilatus_tiff, (1043, 981)) is None  # 32-bit: fabio's path
