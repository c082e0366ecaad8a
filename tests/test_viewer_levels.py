"""The viewer's pictures follow the ``jpeg`` rule: a tile and a summed picture get the frame's
automatic levels by default (not the C server's mean +- stddev), the request's scale and colour
map, and a sum keeps saturation and masks at full depth before reduction. Against the real
stack, with frames written by h5py and read back independently."""

from __future__ import annotations

import io
import json
import math
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.client import ask, meta_of
from tests.support.detector import EigerSeries
from tests.support.website import web_site
from worker import paths, sums

CBF = "series/thau_0001.cbf"  # 2463 x 2527: level 4 of its pyramid is 154 x 158
SATURATION = 50000  # the synthetic master's saturation_value
SHAPE = (64, 80)
SATURATED, MASKED_ONCE, DEEP, MASKED = (10, 10), (10, 30), (40, 20), (40, 60)


@pytest.fixture(scope="module")
def site(testdata: Path):
    with web_site(testdata) as s:
        yield s


@pytest.fixture(scope="module")
def summed_series(site) -> str:
    """Two Eiger frames: SATURATED saturated in frame 1 only; MASKED_ONCE at 2**32 - 1 (the
    value DECTRIS writes for a bad pixel) in frame 1 only; DEEP at 0.6 x saturation in both
    (its sum, 1.2 x, is above one frame's saturation but honest); MASKED in the pixel mask."""
    folder = site.data / "sums"
    folder.mkdir()
    os.chmod(folder, 0o755)
    series = EigerSeries(folder, "fine", SHAPE, 2)
    with __import__("h5py").File(series.master, "a") as f:
        mask = np.zeros(SHAPE, np.uint32)
        mask[MASKED] = 1
        f["/entry/instrument/detector/detectorSpecific/pixel_mask"][...] = mask
    for first in (True, False):
        frame = np.full(SHAPE, 3, np.uint32)
        frame[SATURATED] = SATURATION if first else 7
        frame[MASKED_ONCE] = np.iinfo(np.uint32).max if first else 5
        frame[DEEP] = 30000
        series.append(frame)
    return "sums/fine_master.h5"


def job(site, **fields) -> dict:
    return {"pid": site.pid, **fields}


def rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=int)


def test_a_tile_without_levels_has_the_frames_automatic_levels(site):
    """The level-4 tile (0, 0) of the CBF is the whole frame pooled 16 x 16, the same pixels
    as its 154 px jpeg: without levels both report the frame's automatic pair and look the
    same (the C rule, which tiles used before, is another pair and another picture)."""
    tile = ask(site.stack.endpoint, job(site, type="tile", fn=CBF, level=4, col=0, row=0))
    image = ask(site.stack.endpoint, job(site, type="jpeg", fn=CBF, xsize=154))
    tile_job, _ = meta_of(tile)
    image_job, image_meta = meta_of(image)
    assert (image_job["xsize"], image_job["ysize"]) == (154, 158)
    pair = (image_job["wval_used"], image_job["bval_used"])
    assert (tile_job["wval_used"], tile_job["bval_used"]) == pair
    c_black = math.trunc(image_meta["mean"] + image_meta["stddev"])
    assert abs(pair[1] - c_black) > 5  # the automatic pair is not the C rule's
    inside = (slice(0, 152), slice(0, 152))  # away from the tile's white edge
    got, want = rgb(tile[3])[inside], rgb(image[3])[inside]
    assert np.abs(got - want).mean() < 2.0
    c_tile = ask(site.stack.endpoint, job(site, type="tile", fn=CBF, level=4, levels="c"))
    assert np.abs(rgb(c_tile[3])[inside] - want).mean() > 5 * np.abs(got - want).mean()


def test_a_tile_takes_the_requests_scale_and_colour_map(site):
    base = job(site, type="tile", fn=CBF, level=4, col=0, row=0, contrast=40, wval=0)
    inverted = rgb(ask(site.stack.endpoint, base)[3])[:150, :150]
    grey = rgb(ask(site.stack.endpoint, base | {"colormap": "grey"})[3])[:150, :150]
    viridis = rgb(ask(site.stack.endpoint, base | {"colormap": "viridis"})[3])[:150, :150]
    logged = rgb(ask(site.stack.endpoint, base | {"scale": "log"})[3])[:150, :150]
    assert abs(inverted.mean() + grey.mean() - 255) < 6  # spots bright on black: the inverse
    spread = np.abs(viridis - viridis.mean(axis=2, keepdims=True)).mean()
    assert spread > 10  # a colour map, not grey
    assert logged.mean() < inverted.mean() - 5  # log lifts faint counts: darker on white


def test_the_gateway_passes_scale_and_colour_map(site):
    query = f"fn={CBF}&level=4&col=0&row=0&contrast=40&wval=0&colormap=grey&scale=sqrt"
    req = urllib.request.Request(f"{site.url}/api/tile?{query}")
    req.add_header("Cookie", f"pyis_session={site.pid}")
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.headers["X-Pyis-Reply"])
    assert (reply["job"]["colormap"], reply["job"]["scale"]) == ("grey", "sqrt")


def test_a_sum_keeps_saturation_and_masks_at_full_depth(site, summed_series):
    """Read as the worker adds them: int64, a pixel saturated in any frame at 2 x saturation,
    a pixel masked in any frame (or in the pixel mask) masked, others the exact sum."""
    with paths.resolve(str(site.data), summed_series) as src:
        frame = sums.summed(src, 1, 2)
    assert frame.data.dtype == np.int64 and frame.saturation == 2 * SATURATION
    assert frame.data[DEEP] == 60000  # above one frame's saturation: kept, not clipped
    assert frame.data[SATURATED] == 2 * SATURATION
    assert frame.mask is not None and frame.mask[MASKED_ONCE] and frame.mask[MASKED]
    assert frame.data[20, 20] == 6 and not frame.mask[20, 20]


@pytest.mark.parametrize("level", [0, 2])
def test_a_summed_tile_draws_saturation_red_and_masks_white_before_and_after_pooling(
    site, summed_series, level
):
    """Level 0 is the sum itself; level 2 pools 4 x 4 blocks of it, and a block holding one
    saturated pixel of one frame is red, one holding the deep pixel keeps its full sum."""
    picture = rgb(
        ask(
            site.stack.endpoint,
            job(site, type="tile", fn=summed_series, frame=1, sum=2, level=level,
                contrast=120000, wval=0),
        )[3]
    )  # fmt: skip
    f = 1 << level

    def at(pixel: tuple[int, int]) -> np.ndarray:
        return picture[pixel[0] // f, pixel[1] // f]

    red = at(SATURATED)
    assert red[0] > 200 and red[1] < 80 and red[2] < 80, red
    deep = at(DEEP)  # 60000 of 120000: mid grey, not red (the sum was not clipped)
    assert abs(int(deep[0]) - 127) < 12 and abs(int(deep[0]) - int(deep[2])) < 12, deep
    if level == 0:  # a masked pixel alone is white; pooled, its block's valid pixels show
        assert (at(MASKED_ONCE) > 245).all() and (at(MASKED) > 245).all()
    single = rgb(
        ask(
            site.stack.endpoint,
            job(site, type="tile", fn=summed_series, frame=1, level=level,
                contrast=120000, wval=0),
        )[3]
    )  # fmt: skip
    assert (single[SATURATED[0] // f, SATURATED[1] // f] == red).all()  # red in frame 1 alone
    assert single[DEEP[0] // f, DEEP[1] // f][0] > deep[0] + 40  # 30000: lighter than the sum


def test_a_sum_without_levels_gets_the_sums_automatic_levels(site):
    """The automatic levels of two Eiger frames added: their background is twice a frame's,
    and the pair reported is the automatic rule's, not mean +- stddev."""
    fn = "eiger/eiger2_data_000001.h5"
    one = meta_of(ask(site.stack.endpoint, job(site, type="jpeg", fn=fn, xsize=512)))
    two = meta_of(ask(site.stack.endpoint, job(site, type="jpeg", fn=fn, xsize=512, sum=2)))
    tile = meta_of(ask(site.stack.endpoint, job(site, type="tile", fn=fn, sum=2, level=1)))
    (one_job, _), (two_job, two_meta) = one, two
    assert (tile[0]["wval_used"], tile[0]["bval_used"]) == (
        two_job["wval_used"],
        two_job["bval_used"],
    )
    assert two_job["bval_used"] > one_job["bval_used"]
    assert two_job["bval_used"] != math.trunc(two_meta["mean"] + two_meta["stddev"])
