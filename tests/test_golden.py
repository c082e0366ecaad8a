"""A golden picture per format: every pixel of the server's JPEG against the reference map
of its own reduction; and the frame in a multi-frame label."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.eigerseries import (
    six_frames,
)
from tests.support.testfiles import FABIO_FORMATS
from worker import jobs, render
from worker.formats import read_frame
from worker.pyramid import Pyramid
from worker.reduce import reduce_max


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 30x40 uint32 frames, three per data file, a masked row and a saturated masked pixel."""
    return six_frames(tmp_path)


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
