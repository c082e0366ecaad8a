"""The DICOM, TIFF and MarCCD readers' harder cases."""

from __future__ import annotations

from pathlib import Path

import fabio
import numpy as np
import pydicom
import pydicom.pixels
import pytest
from PIL import Image

from pyis_common.errors import NotFound, Unsupported
from tests.support.eigerseries import (
    path_of,
)
from worker import jobs
from worker.formats import Opened, read_frame, read_meta
from worker.reduce import reduce_max

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


def test_marccd_pixels_are_read_directly_only_for_plain_16_bit_strips(testdata: Path) -> None:
    from worker.formats import marccd

    corkcont = str(testdata / "marccd/corkcont2_H_0089.mccd")
    with Opened.plain(corkcont) as src:
        direct = marccd._raw_pixels(src, (2048, 2048))
        assert direct is not None and np.array_equal(direct, fabio.open(corkcont).data)
        assert marccd._raw_pixels(src, (1024, 1024)) is None  # not what the header says
    with Opened.plain(str(testdata / "other/CeO2_Pilatus1M.tif")) as pilatus_tiff:
        assert marccd._raw_pixels(pilatus_tiff, (1043, 981)) is None  # 32-bit: fabio's path
