"""A followed frame's direct reduction (worker/leanreduce.py) against the frame's pyramid
(worker/pyramid.py, what the ``jpeg`` job reduces from): equal data, validity, saturation and
statistics for every mask rule, odd frame sizes, sizes, zooms and segments."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from worker.formats import Frame
from worker.leanreduce import reduce_like_pyramid
from worker.pyramid import Pyramid

SHAPES = [(2527, 2463), (1043, 777), (64, 64), (301, 450)]
GEOMETRIES = [  # xsize, ysize, zoom, segcol, segrow
    (512, None, 1.0, 0.0, 0.0),
    (256, None, 1.0, 0.0, 0.0),
    (100, 37, 1.0, 0.0, 0.0),
    (1024, None, 1.0, 0.0, 0.0),  # past the frame's width for small frames: sampled up
    (300, None, 2.0, 1.0, 0.0),
    (200, 200, 3.0, 2.0, 1.0),
    (128, None, 4.5, 0.3, 3.7),
]


def frames(shape: tuple[int, int], rule: str, seed: int) -> Frame:
    """A fresh frame (the reduction may write into a scratch one) with one-pixel spots."""
    rng = np.random.default_rng(seed)
    if rule == "negative":  # Pilatus: gaps -1, bad pixels -2
        data = rng.poisson(3, shape).astype(np.int32)
        data[:, shape[1] // 3] = -1
        data[shape[0] // 2, :] = -2
        data.flat[rng.integers(0, data.size, 50)] = 1 << 20  # saturated
        return Frame(data, data < 0, 1 << 20, {}, negative_masked=True)
    if rule == "mask":  # a mask of its own: uint16 with the detector's mask, scratch copy
        data = rng.integers(0, 60000, shape, dtype=np.uint16)
        mask = np.zeros(shape, bool)
        mask[: shape[0] // 4, : shape[1] // 5] = True
        mask.flat[rng.integers(0, data.size, 500)] = True
        return Frame(data, mask, 50000, {}, scratch=True)
    if rule == "float":  # floats with NaN gaps and a mask
        data = rng.normal(10, 3, shape).astype(np.float32)
        data[::17, :] = np.nan
        mask = np.zeros(shape, bool)
        mask[-3:, :] = True
        return Frame(data, mask, None, {})
    if rule == "nan":  # floats with NaN, no mask
        data = rng.normal(10, 3, shape).astype(np.float32)
        data[:, ::13] = np.nan
        return Frame(data, None, None, {})
    data = rng.integers(0, 1000, shape, dtype=np.int32)  # "all": every pixel valid
    data.flat[rng.integers(0, data.size, 20)] = 1 << 30
    return Frame(data, None, None, {})


@pytest.mark.parametrize("rule", ["negative", "mask", "float", "nan", "all"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_direct_reduction_is_the_pyramids(rule: str, shape: tuple[int, int]) -> None:
    for n, geometry in enumerate(GEOMETRIES):
        seed = zlib.crc32(f"{rule} {shape} {n}".encode())
        want = Pyramid(frames(shape, rule, seed), {}).reduce(*geometry)
        got = reduce_like_pyramid(frames(shape, rule, seed), *geometry)
        where = f"{rule} {shape} {geometry}"
        assert got.data.dtype == want.data.dtype, where
        assert got.data.shape == want.data.shape, where
        np.testing.assert_array_equal(got.valid, want.valid, err_msg=where)
        # masked boxes hold the floor in both; NaN == NaN for all-NaN boxes of floats
        np.testing.assert_array_equal(got.data, want.data, err_msg=where)
        np.testing.assert_array_equal(got.saturated, want.saturated, err_msg=where)
        assert got.stats == want.stats, where


def test_a_one_pixel_spot_survives_at_its_value() -> None:
    """Max-pooling keeps single-pixel spots: every hot pixel's value is in the picture."""
    data = np.zeros((2527, 2463), np.int32)
    spots = list(itertools.product(range(3, 2527, 397), range(5, 2463, 411)))
    for i, (y, x) in enumerate(spots):
        data[y, x] = 100 + i
    reduced = reduce_like_pyramid(Frame(data, data < 0, None, {}, negative_masked=True), 512)
    assert sorted(reduced.data[reduced.data > 0].tolist()) == [100 + i for i in range(len(spots))]
