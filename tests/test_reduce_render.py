"""In-process tests of the image pipeline's reduce (stage 1) and render (stage 2).

The reduction is checked against a plain double loop over boxes, written here for clarity.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyis_common.errors import BadRequest
from tests.support.imports import assert_imports_nothing_new
from tests.support.thau import THAU_HOT, read_thau
from worker.formats import Frame, read_frame
from worker.reduce import output_size, reduce_max
from worker.render import encode_jpeg, levels, render, to_rgb


def max_pool(data: np.ndarray, out_h: int, out_w: int, mask: np.ndarray | None = None):
    """Reference: the max over each box [floor(i*H/h), floor((i+1)*H/h)) x (same for columns)
    of the unmasked pixels, and whether the box had any."""
    height, width = data.shape
    out = np.zeros((out_h, out_w), data.dtype)
    valid = np.zeros((out_h, out_w), bool)
    for i in range(out_h):
        rows = slice(i * height // out_h, (i + 1) * height // out_h)
        for j in range(out_w):
            cols = slice(j * width // out_w, (j + 1) * width // out_w)
            box = data[rows, cols] if mask is None else data[rows, cols][~mask[rows, cols]]
            if box.size:
                out[i, j], valid[i, j] = box.max(), True
    return out, valid


def reference_grey(data: np.ndarray, white: float, black: float) -> np.ndarray:
    """The C server's mapping in float64, pixel by pixel semantics, vectorised."""
    value = data.astype(np.float64)
    grey = np.floor(255.0 - (value - white) / (black - white) * 255.0)
    grey[value <= white], grey[value >= black] = 255, 0
    return grey


@pytest.fixture(scope="module")
def thau(testdata: Path) -> Frame:
    return read_thau(testdata)


# ---------------------------------------------------------------------------- reduce


@pytest.mark.parametrize(
    ("height", "width", "xsize"),
    [(50, 37, 7), (64, 64, 16), (101, 203, 20), (300, 200, 8), (33, 17, 16), (20, 30, 29)],
)
def test_reduce_equals_reference_max_pool(height: int, width: int, xsize: int) -> None:
    rng = np.random.default_rng(height * width)
    data = rng.integers(0, 60000, (height, width)).astype(np.uint16)
    reduced = reduce_max(Frame(data, None, None, {}), xsize)
    expected, _ = max_pool(data, *reduced.data.shape)
    assert reduced.data.shape[1] == xsize
    assert np.array_equal(reduced.data, expected) and reduced.valid.all()


@pytest.mark.parametrize(("height", "width", "xsize"), [(50, 37, 7), (101, 203, 20)])
def test_reduce_with_a_general_mask_equals_reference(height: int, width: int, xsize: int) -> None:
    rng = np.random.default_rng(height + width)
    data = rng.integers(0, 65536, (height, width)).astype(np.uint16)
    mask = rng.random((height, width)) < 0.97  # dense enough that some boxes are all masked
    reduced = reduce_max(Frame(data, mask, None, {}), xsize)
    expected, valid = max_pool(data, *reduced.data.shape, mask=mask)
    assert not valid.all() and np.array_equal(reduced.valid, valid)
    assert np.array_equal(reduced.data[valid], expected[valid])


def test_nan_pixels_count_as_masked() -> None:
    data = np.ones((4, 4), np.float32)
    data[:2, :2] = np.nan  # box (0, 0): no data at all
    data[2:, :2] = [[np.nan, 7], [2, np.nan]]  # box (1, 0): NaN must not win
    mask = np.zeros((4, 4), bool)
    mask[:2, 2:] = [[True, True], [True, False]]
    data[:2, 2:] = [[9, 9], [9, np.nan]]  # box (0, 1): masked 9s and one NaN -> no data
    for frame_mask in (None, mask):
        reduced = reduce_max(Frame(data, frame_mask, None, {}), 2)
        assert not reduced.valid[0, 0] and reduced.data[1, 0] == 7
        assert reduced.valid[0, 1] == (frame_mask is None)


def test_reduce_real_crop_with_pilatus_mask(thau: Frame) -> None:
    crop = np.ascontiguousarray(thau.data[1000:1257, 400:700])  # spans gaps and bad pixels
    for xsize in (64, 50, 29):
        reduced = reduce_max(Frame(crop, crop < 0, None, {}, negative_masked=True), xsize)
        expected, valid = max_pool(crop, *reduced.data.shape, mask=crop < 0)
        assert np.array_equal(reduced.valid, valid)
        assert np.array_equal(reduced.data[valid], expected[valid])


def test_upsampling_samples_nearest() -> None:
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    reduced = reduce_max(Frame(data, None, None, {}), 8)
    assert reduced.data.shape == (6, 8)
    assert np.array_equal(reduced.data, np.repeat(np.repeat(data, 2, axis=0), 2, axis=1))


def test_output_size_keeps_aspect_ratio(thau: Frame) -> None:
    assert reduce_max(thau, 512).data.shape == (525, 512)  # 2527 * 512 / 2463 = 525.3
    assert output_size(2463, 2527, 512, 256) == (250, 256)  # fits inside 512 x 256
    assert output_size(1000, 500, 400, 400) == (400, 200)
    with pytest.raises(BadRequest):
        output_size(10, 100000, 1000, None)


def test_single_hot_pixel_survives_16x() -> None:
    data = np.zeros((256, 256), np.uint16)
    data[123, 77] = 1000
    reduced = reduce_max(Frame(data, None, None, {}), 16)
    assert reduced.data[123 // 16, 77 // 16] == 1000
    assert int(np.count_nonzero(reduced.data)) == 1


def test_masked_pixels_never_win_and_empty_boxes_are_white() -> None:
    data = np.full((8, 8), 10, np.uint16)
    mask = np.zeros((8, 8), bool)
    data[0, 0], mask[0, 0] = 65535, True  # masked and at the dtype max: must not win or be red
    data[4:, 4:], mask[4:, 4:] = 65535, True  # a whole box masked
    reduced = reduce_max(Frame(data, mask, None, {}), 2)
    assert reduced.data[0, 0] == 10 and reduced.valid[0, 0]
    assert not reduced.valid[1, 1] and not reduced.saturated.any()
    assert reduced.stats["n"] == 3 and reduced.stats["max"] == 10
    rgb = to_rgb(reduced, 0.0, 20.0)
    assert rgb[1, 1].tolist() == [255, 255, 255]


def test_pilatus_gap_box_is_invalid_and_white() -> None:
    data = np.full((4, 4), 5, np.int32)
    data[:2, :2] = -1
    data[2, 2] = -2
    reduced = reduce_max(Frame(data, data < 0, 3.0, {}, negative_masked=True), 2)
    assert reduced.valid.tolist() == [[False, True], [True, True]]
    assert to_rgb(reduced, 0.0, 4.0)[0, 0].tolist() == [255, 255, 255]
    assert reduced.stats["min"] == 5 and reduced.stats["nSaturated"] == 3


def test_saturated_pixel_is_red(testdata: Path) -> None:
    frame = read_frame(str(testdata / THAU_HOT))
    reduced = reduce_max(frame, 512)
    assert reduced.stats["nSaturated"] == 1
    ((y, x),) = np.argwhere(reduced.saturated)
    white, black = levels(reduced.stats, 0.0, -1.0)
    assert to_rgb(reduced, white, black)[y, x].tolist() == [255, 0, 0]


def test_jpeg_is_grey_without_saturation_and_colour_with_it(testdata: Path) -> None:
    hot = reduce_max(read_frame(str(testdata / THAU_HOT)), 512)
    ((y, x),) = np.argwhere(hot.saturated)
    colour = Image.open(io.BytesIO(render(hot, 0.0, -1.0)[0]))
    assert colour.mode == "RGB"
    r, g, b = colour.getpixel((int(x), int(y)))
    assert r > 200 and g < 80 and b < 80  # still red after JPEG (4:4:4)
    calm = reduce_max(read_frame(str(testdata / "cbf/thau_3_2_0001.cbf")), 512)
    assert calm.stats["nSaturated"] == 0
    grey = Image.open(io.BytesIO(render(calm, 0.0, -1.0, label="x", label_height=20)[0]))
    assert grey.mode == "L" and grey.size == (512, calm.data.shape[0] + 20)


def test_zoom_segment_is_the_bottom_right_quarter(thau: Frame) -> None:
    zoomed = reduce_max(thau, 256, zoom=4.0, segcol=3.0, segrow=3.0)
    rows, cols = slice(631 * 3, 631 * 4), slice(615 * 3, 615 * 4)  # 2527 // 4, 2463 // 4
    crop = np.ascontiguousarray(thau.data[rows, cols])
    alone = reduce_max(Frame(crop, crop < 0, thau.saturation, {}, negative_masked=True), 256)
    assert np.array_equal(zoomed.data, alone.data)
    assert np.array_equal(zoomed.valid, alone.valid)
    clamped = reduce_max(thau, 256, zoom=4.0, segcol=9.0, segrow=9.0)  # past the edge
    edge = np.ascontiguousarray(thau.data[-631:, -615:])  # the C server read beyond the image
    alone = reduce_max(Frame(edge, edge < 0, thau.saturation, {}, negative_masked=True), 256)
    assert np.array_equal(clamped.data, alone.data)


def test_stats_equal_numpy_float64_on_valid_pixels(thau: Frame) -> None:
    reduced = reduce_max(thau, 300)
    values = reduced.data[reduced.valid].astype(np.float64)
    stats = reduced.stats
    assert stats["n"] == values.size < reduced.data.size  # gap boxes are excluded
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert (stats["min"], stats["max"]) == (values.min(), values.max())
    assert stats["rms"] == pytest.approx(math.sqrt(np.mean(values**2)), rel=1e-12)
    assert stats["stddev"] == pytest.approx(values.std(), rel=1e-9)
    assert stats["nSaturated"] == int(np.count_nonzero(values >= thau.saturation))


# ---------------------------------------------------------------------------- render


def test_levels_follow_the_c_server() -> None:
    stats = {"mean": 10.7, "stddev": 4.6}
    assert levels(stats, 0.0, -1.0) == (6.0, 15.0)  # int(mean - sd), int(mean + sd)
    assert levels(stats, 50.0, 3.0) == (3.0, 50.0)  # explicit levels kept
    assert levels(stats, 5.0, 10.0) == (10.0, 11.0)  # black >= white + 1
    assert levels({"mean": 1.0, "stddev": 4.0}, 0.0, -1.0) == (0.0, 5.0)  # white >= 0
    assert levels({"n": 0}, 0.0, -1.0) == (0.0, 1.0)  # no valid pixels: still a valid pair


def test_grey_mapping_matches_reference(thau: Frame) -> None:
    reduced = reduce_max(thau, 400)
    rgb = to_rgb(reduced, 0.0, 40.0)
    expected = reference_grey(reduced.data, 0.0, 40.0)
    expected[~reduced.valid] = 255
    assert np.abs(rgb[..., 1].astype(int) - expected).max() <= 1
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_jpeg_has_requested_width_banner_and_grey_levels(thau: Frame) -> None:
    reduced = reduce_max(thau, 512)
    jpeg, decided = render(reduced, 40.0, 0.0, label="thau_3_2_0001", label_height=40)
    image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(float)
    assert decided == {"wval_used": 0.0, "bval_used": 40.0, "xsize": 512, "ysize": 525 + 40}
    assert image.shape == (565, 512, 3)
    banner, body = image[:40], image[40:]
    assert banner.mean() > 240 and banner.min() < 100  # white with black text
    expected = reference_grey(reduced.data, 0.0, 40.0)
    expected[~reduced.valid] = 255
    assert abs(body.mean() - expected.mean()) < 2


@pytest.mark.parametrize("height", [1, 15, 16, 17, 40, 64])
def test_every_label_height_gives_whole_image(thau: Frame, height: int) -> None:
    reduced = reduce_max(thau, 128)
    jpeg, decided = render(reduced, 40.0, 0.0, label="frame 1", label_height=height)
    assert Image.open(io.BytesIO(jpeg)).size == (128, reduced.data.shape[0] + height)
    assert decided["ysize"] == reduced.data.shape[0] + height


def test_pillow_encoder_makes_the_same_picture(thau: Frame) -> None:
    rgb = to_rgb(reduce_max(thau, 256), 0.0, 40.0)
    fast = np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb))), dtype=float)
    slow = np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb, encoder="pillow"))), dtype=float)
    assert fast.shape == slow.shape == rgb.shape
    apart = np.abs(fast - slow)  # pixel by pixel (a flipped picture is 11 apart on average)
    assert apart.mean() < 2 and apart.max() <= 32, (apart.mean(), apart.max())


def test_reading_and_rendering_import_nothing_new(testdata: Path) -> None:
    """The zygote imports these modules once before the fork; an import that happens later, as
    the unprivileged user, may fail. Read and render every format in a fresh interpreter."""
    setup = """
from pathlib import Path
from worker.formats import read_frame
from worker.reduce import reduce_max
from worker.render import render
"""
    work = f"""
for path in sorted(Path({str(testdata)!r}).glob("*/*")):
    if path.suffix in (".cbf", ".mccd", ".img", ".edf", ".tif", ".mar2300", ".0026"):
        reduced = reduce_max(read_frame(str(path)), 64)
        for encoder in ("simplejpeg", "pillow"):
            render(reduced, 0.0, -1.0, "label", 20, encoder=encoder)
"""
    assert_imports_nothing_new(setup, work, timeout_s=120)


@pytest.mark.parametrize("dtype", [np.uint32, np.int16, np.float32])
def test_in_place_masking_of_a_scratch_frame_gives_the_same_reduction(dtype) -> None:
    rng = np.random.default_rng(11)
    data = rng.integers(0, 1000, (97, 131)).astype(dtype)
    mask = rng.random((97, 131)) < 0.3
    mask[:20, :20] = True  # whole boxes masked
    copy = reduce_max(Frame(data.copy(), mask, None, {}), 16)
    scratch_data = data.copy()
    in_place = reduce_max(Frame(scratch_data, mask, None, {}, scratch=True), 16)
    assert np.array_equal(copy.data[copy.valid], in_place.data[in_place.valid])
    assert np.array_equal(copy.valid, in_place.valid) and copy.stats == in_place.stats
    assert not np.array_equal(scratch_data, data)  # it really was written in place
