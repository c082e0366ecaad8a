"""In-process tests of the image pipeline's first step, the formats (reduce and render, stages
1 and 2, are in test_reduce_render.py).

Real detector files come from the shared test data (``testdata`` fixture in conftest.py);
expected header values are checked against fabio's own parse and against the README's numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import fabio
import numpy as np
import pytest

from pyis_common.errors import Incomplete, NotFound, Unsupported
from tests.support.thau import RUN2, THAU, read_thau
from worker.formats import Frame, read_frame, read_meta

# file -> README values: wavelength (A), distance (m), beam centre (px), count cutoff
CBF_HEADERS = {
    THAU: (0.96859, 0.35100, (1261.61, 1306.96), 115897),
    RUN2: (1.0332, 0.30000, (1230.10, 1310.50), 1583782),
}


@pytest.fixture(scope="module")
def thau(testdata: Path) -> Frame:
    return read_thau(testdata)


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", sorted(CBF_HEADERS))
def test_cbf_pixels_and_header_match_fabio_and_readme(testdata: Path, name: str) -> None:
    path = str(testdata / name)
    frame = read_frame(path)
    independent = fabio.open(path)
    assert frame.data.shape == independent.data.shape == (2527, 2463)
    assert frame.data.dtype == np.int32
    assert np.array_equal(frame.data, independent.data)
    assert np.array_equal(frame.mask, independent.data < 0)
    text = independent.header["_array_data.header_contents"]
    wavelength, distance, beam, cutoff = CBF_HEADERS[name]
    assert float(re.search(r"Wavelength ([\d.]+)", text).group(1)) == wavelength
    assert float(re.search(r"Detector_distance ([\d.]+)", text).group(1)) == distance
    meta = frame.meta
    assert meta["wavelength"] == pytest.approx(wavelength)
    assert meta["detector_distance"] == pytest.approx(distance)
    assert (meta["beam_center_x"], meta["beam_center_y"]) == pytest.approx(beam)
    assert (meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]) == (2463, 2527)
    assert meta["image_depth"] == 4 and meta["filename"] == Path(name).name
    assert frame.saturation == meta["saturation"] == cutoff


def test_cbf_gaps_and_bad_pixels_are_the_mask(thau: Frame) -> None:
    assert int(np.count_nonzero(thau.mask)) == 526101 + 625  # README: gaps (-1) + bad (-2)
    assert thau.negative_masked and thau.data[~thau.mask].min() >= 0


def test_cbf_meta_decodes_no_pixels(testdata: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(testdata / THAU)
    full = read_frame(path).meta

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read_meta decoded pixels")

    monkeypatch.setattr(fabio.cbfimage.CbfImage, "read", refuse)
    assert read_meta(path) == full


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("marccd/somedata_0001.mccd", (1024, 1024), np.uint16),
        ("marccd/corkcont2_H_0089.mccd", (2048, 2048), np.uint16),
        ("smv/TIMEPIX_SU_512-stdgoni_0001.img", (512, 512), np.uint16),
        ("other/F2K_Seb_Lyso0675.edf", (2048, 2048), np.uint16),
        ("mar345/example.mar2300", (2300, 2300), np.uint32),
        ("other/Cr8F8140k103.0026", (512, 512), np.uint32),
        ("other/b191_1_9_1.img", (512, 512), np.int16),
        ("other/CeO2_Pilatus1M.tif", (1043, 981), np.int32),
    ],
)
def test_fabio_formats_dimensions(testdata: Path, name: str, shape: tuple, dtype: type) -> None:
    path = str(testdata / name)
    frame = read_frame(path)
    assert frame.data.shape == fabio.open(path).data.shape == shape
    assert frame.data.dtype == dtype
    meta = frame.meta
    assert (meta["y_pixels_in_detector"], meta["x_pixels_in_detector"]) == shape
    assert meta["image_depth"] == np.dtype(dtype).itemsize
    assert meta["first_frame"] == meta["last_frame"] == meta["frame"] == 1


def test_marccd_header_values_and_no_guessed_distance(testdata: Path) -> None:
    meta = read_meta(str(testdata / "marccd/somedata_0001.mccd"))
    assert meta["wavelength"] == pytest.approx(1.03318)
    assert meta["beam_center_x"] == meta["beam_center_y"] == pytest.approx(522.549)
    assert meta["x_pixel_size"] == pytest.approx(157.88e-6)
    assert "detector_distance" not in meta  # xtal_to_detector is 0: not set, so not reported


def test_pilatus_tiff_masks_negatives(testdata: Path) -> None:
    frame = read_frame(str(testdata / "other/CeO2_Pilatus1M.tif"))
    assert frame.saturation == 1097223 and frame.meta["detector_distance"] == 0.21143
    assert np.array_equal(frame.mask, frame.data < 0) and frame.mask.any()


def test_empty_and_text_files_are_unsupported_truncated_ones_incomplete(
    testdata: Path, tmp_path: Path
) -> None:
    """A CBF cut short is one still being written (retry); one that is not a CBF never will be."""
    raw = (testdata / THAU).read_bytes()
    cases = {
        "empty.cbf": (b"", Unsupported),
        "notes.txt": (b"beam was lost at 03:00, refilled at 03:20\n" * 20, Unsupported),
        "half.cbf": (raw[: len(raw) // 2], Incomplete),
        "header_only.cbf": (raw[:1000], Incomplete),
    }
    for name, (content, error) in cases.items():
        (tmp_path / name).write_bytes(content)
        for read in (read_frame, read_meta):
            if name == "half.cbf" and read is read_meta:
                continue  # its header is complete; only the pixels are missing
            with pytest.raises(error) as caught:
                read(str(tmp_path / name))
            sentence = str(caught.value)
            assert name in sentence and "Traceback" not in sentence and "\n" not in sentence


def test_missing_file_and_missing_frame_are_not_found(testdata: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_frame(str(tmp_path / "nope.cbf"))
    for name in (THAU, "marccd/somedata_0001.mccd", "other/F2K_Seb_Lyso0675.edf"):
        with pytest.raises(NotFound, match="no frame 2"):
            read_frame(str(testdata / name), 2)
