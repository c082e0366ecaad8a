"""Stage 2's shortcuts (issue 14) draw the picture the plain numpy way draws, pixel for pixel.

The colour tables carry a masked and a red entry, so a picture is one gather from its table
indices; the C look packs its grey into RGBX pixels; the encoder takes RGBX as it is. Each is
compared here with the straightforward version it replaced: a gather per channel, then
boolean assignments of white and red, and the RGB JPEG.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pyis_common import colortables
from worker import colormaps, pyramid, reduce, render
from worker.reduce import Reduced


def reference_colours(reduced: Reduced, white, black, scale: str, colormap: str) -> np.ndarray:
    """The picture written out: the table's colour per index, masked boxes white, saturated
    valid ones red (and RGB then, even for a grey map)."""
    idx = colormaps.index(reduced.data, white, black)
    grey = colormap in colormaps.GREYS
    rgb = colormaps.table(scale, colormap)[idx][:, :, : 1 if grey else 3].copy()
    rgb[~reduced.valid] = 255
    if reduced.stats["nSaturated"] and reduced.saturated.any():
        rgb = np.repeat(rgb, 3, axis=2) if grey else rgb
        rgb[reduced.saturated] = colortables.RED
    return rgb


def reference_rgb(reduced: Reduced, white: float, black: float) -> np.ndarray:
    rgb = np.repeat(render.grey(reduced, white, black)[:, :, None], 3, axis=2)
    if reduced.stats["nSaturated"]:
        rgb[reduced.saturated] = colortables.RED
    return rgb


def reduced_image(saturated: bool, masked: bool = True) -> Reduced:
    rng = np.random.default_rng(11)
    data = rng.integers(-2, 3000, (97, 131)).astype(np.int32)
    valid = data >= 0 if masked else np.ones(data.shape, bool)
    hot = valid & (data > 2900) & saturated
    return Reduced(data, valid, hot, {"nSaturated": int(hot.sum())})


def level_pairs(shape: tuple[int, int]) -> list[tuple]:
    rng = np.random.default_rng(5)
    white = (rng.random(shape) * 100).astype(np.float32)
    black = white + (rng.random(shape) * 900 + 1).astype(np.float32)
    return [(white, black), (10.0, 700.0)]  # automatic planes; a scalar pair


@pytest.mark.parametrize(("saturated", "masked"), [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize(
    ("scale", "colormap"), list(itertools.product(colormaps.SCALES, colormaps.COLORMAPS))
)
def test_a_picture_is_the_tables_colours_with_masked_white_and_saturated_red(
    saturated: bool, masked: bool, scale: str, colormap: str
) -> None:
    reduced = reduced_image(saturated, masked)
    for white, black in level_pairs(reduced.data.shape):
        want = reference_colours(reduced, white, black, scale, colormap)
        got = render.to_colours(reduced, white, black, scale, colormap)
        assert got.shape == want.shape and np.array_equal(got, want)
        picture, _, _ = render._picture(reduced, 0.0, 0.0, None, (white, black), scale, colormap)
        assert render.encode_jpeg(picture) == render.encode_jpeg(want)  # RGBX: the same JPEG


@pytest.mark.parametrize("saturated", [False, True])
def test_the_c_look_is_grey_with_saturated_red(saturated: bool) -> None:
    reduced = reduced_image(saturated)
    want = reference_rgb(reduced, 10.0, 700.0)
    assert np.array_equal(render.to_rgb(reduced, 10.0, 700.0), want)
    shown = render.to_pixels(reduced, 10.0, 700.0)
    assert np.array_equal(shown, want if saturated else want[:, :, :1])
    picture, _, _ = render._picture(reduced, 700.0, 10.0, None, None, *colormaps.C_LOOK)
    assert picture.shape[2] == (4 if saturated else 1)
    assert render.encode_jpeg(picture) == render.encode_jpeg(want if saturated else want[:, :, :1])


def test_an_rgbx_picture_with_a_banner_is_the_rgb_jpeg() -> None:
    reduced = reduced_image(True)
    jpeg, decided = render.render(reduced, 700.0, 10.0, label="frame 7", label_height=20)
    want = reference_rgb(reduced, 10.0, 700.0)
    top = render.banner("frame 7", 20, want.shape[1], 3)
    assert jpeg == render.encode_jpeg(np.concatenate((top, want), axis=0))
    assert decided["ysize"] == want.shape[0] + 20
    assert render.encode_jpeg(want, encoder="pillow") == render.encode_jpeg(
        render.to_rgbx(reduced, 10.0, 700.0), encoder="pillow"
    )


def test_a_packed_pixel_holds_its_bytes_in_order() -> None:
    pixel = np.array([colormaps.packed((1, 2, 3))], np.uint32)
    assert pixel.view(np.uint8).tolist() == [1, 2, 3, 0]
    table = colormaps.rgbx_table("linear", "viridis").view(np.uint8).reshape(-1, 4)
    assert np.array_equal(table[: colortables.STEPS, :3], colormaps.table("linear", "viridis"))
    assert table[colormaps.MASKED_INDEX, :3].tolist() == list(colortables.MASKED)
    assert table[colormaps.RED_INDEX, :3].tolist() == list(colortables.RED)


@pytest.mark.parametrize(
    ("src", "dst"),
    [((632, 616), (627, 600)), ((632, 616), (318, 310)), ((1093, 1038), (644, 611)),
     ((1024, 1024), (1023, 513)), ((700, 700), (600, 600)), ((7, 9), (4, 8))],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.float32, np.uint8])
def test_a_levels_boxes_of_one_or_two_pixels_pool_as_the_general_pooling(src, dst, dtype):
    """pool_fine gathers the second pixel of only the few boxes two pixels wide, or of all:
    both are reduce.pool's maxima (few and many such boxes on either axis here)."""
    rng = np.random.default_rng(sum(src) + sum(dst))
    x = rng.integers(0, 250, src).astype(dtype)
    if dtype == np.float32:
        x[rng.random(src) < 0.1] = np.nan
    op = pyramid.max_op(x)
    rows, cols = reduce.plan(src[0], dst[0]), reduce.plan(src[1], dst[1])
    got = pyramid.pool_fine(x, rows, cols, op)
    want = reduce.pool_cols(reduce.pool_rows(x, rows, op), cols, op)
    assert got.dtype == x.dtype and np.array_equal(got, want, equal_nan=dtype == np.float32)


@pytest.mark.parametrize(
    ("rule", "dtype", "saturation"),
    [("negative", np.int32, 1000.0), ("negative", np.int32, -1.0), ("negative", np.int32, 0.0),
     ("mask", np.uint16, 1000.0), ("mask", np.uint16, 0.0), ("mask", np.int32, -(2.0**31)),
     ("mask", np.float32, 1000.0), ("mask", np.float32, -math.inf), ("nan", np.float32, 9.0),
     ("all", np.uint32, 1000.0), ("all", np.uint32, 0.0)],
)  # fmt: skip
def test_saturated_boxes_are_the_valid_ones_at_the_level(rule, dtype, saturation):
    rng = np.random.default_rng(9)
    data = rng.integers(0, 2000, (40, 50)).astype(dtype)
    valid = np.ones(data.shape, bool)
    if rule == "negative":
        data[rng.random(data.shape) < 0.2] = -1
        valid = data >= 0
    elif rule == "mask":
        valid = rng.random(data.shape) > 0.2
        data[~valid] = -np.inf if dtype == np.float32 else np.iinfo(dtype).min
    elif rule == "nan":
        data[rng.random(data.shape) < 0.2] = np.nan
        valid = ~np.isnan(data)
    got = pyramid.saturated_boxes(rule, data, valid, saturation)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(got, valid & (data >= saturation))
