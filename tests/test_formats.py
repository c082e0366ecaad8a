"""Every test-data file against the library a user would open it with, and the warm-up that
must leave no format import for later (the harder cases are in test_eiger.py,
test_dicom_tiff.py; pictures in test_golden.py; spots in test_spots.py).

Expected dimensions and header values come from shared/testdata/README.md (what fabio, h5py
and pydicom reported when the files were collected) and from opening each file here with that
library directly; pixels are compared with the library's own decode. Eiger series with a
master are written here with h5py and hdf5plugin, because no public one is small enough to ship.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pydicom
import pydicom.pixels
import pytest

from tests.conftest import TESTDATA
from tests.support.eigerseries import (
    DATA,
    DETECTOR,
    library_frame,
    path_of,
    write_series,
)
from tests.support.imports import assert_imports_nothing_new
from worker.formats import read_frame, read_meta

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


def approx(expected: float) -> object:
    """The README rounds to 4 to 6 significant digits."""
    return pytest.approx(expected, rel=1e-4, abs=1e-12)


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
