"""Automatic levels on every real diffraction frame, graded by an independent spot finder.

The level-quality test sends the automatic 256, 512 and 1024 px JPEG requests of each frame
through the real stack (client -> proxy -> procmgr -> privilege-dropped worker), finds the
spots in the raw frame with a DIALS-style dispersion finder (tests/support/dispersion.py) and
grades the pictures (tests/support/levelcheck.py). It prints one line per frame, the C rule's
figures beside ours (the README table is made from this output: ``pytest -s``).
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from procmgr.__main__ import dev_user
from pyisdev.stack import Stack
from tests.support.client import ask, error_code, meta_of
from tests.support.devsite import dev_stack
from tests.support.dispersion import Spots, find_spots
from tests.support.levelcheck import Figures, grade
from tests.support.testfiles import FABIO_FORMATS
from worker import jobs, levelrule, levels, render, tier2format
from worker.cache import Key
from worker.formats import Frame, read_frame
from worker.reduce import reduce_max, saturation_level

ESAF = 21
MIN_SPAN = levels.MIN_SPAN
# photon counters: 0 is a count; on CCDs and image plates 0 is no data (outside the active
# circle, under the beam stop) unless the frame's background itself is 0 (offset-subtracted)
COUNTING = ("cbf/", "eiger/", "smv/", "other/CeO2")
FRAMES = (
    "cbf/thau_3_2_0001.cbf",
    "cbf/thau_3_2_0002.cbf",
    "cbf/run2_1_00148.cbf",
    "cbf/l-cyst_01_00001.cbf",
    "cbf/l-cyst_01_00002.cbf",
    "cbf/dlsnxs2cbf_therm_0001.cbf",
    "eiger/eiger1_testmode10_2datafiles_4images_bslz4_data_000001.h5",
    "eiger/eiger1_testmode10_2datafiles_4images_lz4_data_000001.h5",
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5",
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5",
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_uint32_data_000001.h5",
    "marccd/somedata_0001.mccd",
    "marccd/corkcont2_H_0089.mccd",
    *FABIO_FORMATS,
)
SIZES = (512, 1024)  # graded; 256 only for the black level's independence of the size
# Frames where a target is missed, with the figure reached (a floor, so it cannot regress) and
# why. README "Automatic levels" shows every figure.
SHOWN_FLOOR = {
    # test-mode patterns, not diffraction: the finder's gain is 0, its "spots" are background
    "eiger/eiger1_testmode10_2datafiles_4images_bslz4_data_000001.h5": 0.0,
    "eiger/eiger1_testmode10_2datafiles_4images_lz4_data_000001.h5": 0.0,
    # dense diffuse streaks: the weak spots on them are 4-6 noise sigma, under mid grey
    "marccd/corkcont2_H_0089.mccd": 80.0,
    # the finder's "spots" on the beam-stop arm's edges (values just above 0, not masked)
    "other/Cr8F8140k103.0026": 58.0,
}
DARK_CEILING = {
    # busy rings: ring texture the finder leaves unflagged is graded as background
    "other/F2K_Seb_Lyso0675.edf": 12.0,
}


def _valid(path: str, frame: Frame) -> np.ndarray:
    """What DIALS would trust: unmasked, unsaturated and, off photon counters, above 0."""
    valid = np.ones(frame.data.shape, bool) if frame.mask is None else ~frame.mask
    valid &= frame.data < saturation_level(frame)
    if not path.startswith(COUNTING) and np.median(frame.data) > 0:
        valid &= frame.data > 0
    return valid


@pytest.fixture(scope="module")
def found(testdata: Path) -> dict[str, Spots]:
    """Spot finding once per frame for the whole module (the slow part: ~30 s in all)."""
    out = {}
    for path in FRAMES:
        frame = read_frame(str(testdata / path))
        out[path] = find_spots(frame.data, _valid(path, frame))
    return out


@pytest.fixture(scope="module")
def stack(testdata: Path) -> Iterator[Stack]:
    with dev_stack(testdata, files=FRAMES) as running:
        yield running


def _jpeg(stack: Stack, pid: str, path: str, xsize: int, **fields: object) -> tuple[bytes, dict]:
    job = {"pid": pid, "esaf": ESAF, "type": "jpeg", "fn": path, "xsize": xsize, **fields}
    reply = ask(stack.endpoint, job)
    assert len(reply) == 4, reply[0][:200]
    return reply[3], json.loads(reply[1])


def _graded(testdata: Path, path: str, spots: Spots, jpeg: bytes, xsize: int, bval: float):
    reduced = reduce_max(read_frame(str(testdata / path)), xsize)
    return grade(jpeg, spots, reduced.valid, reduced.saturated, bval)


def _in_process(frame: Frame, xsize: int, spots: Spots) -> Figures:
    """The worker's own stage functions on a frame held in memory (a planted pixel)."""
    stats = levels.compute(frame, saturation_level(frame))
    reduced = reduce_max(frame, xsize)
    req = jobs.parse({"type": "jpeg", "fn": "x", "xsize": xsize}, need_pid=False)
    shape = reduced.data.shape
    choice = levelrule.choose(req, stats, reduced.stats, None, "auto", levelrule.zoomed(req), shape)
    assert choice.planes is not None
    jpeg, _ = render.render(reduced, choice.black, choice.white, planes=choice.planes())
    return grade(jpeg, spots, reduced.valid, reduced.saturated, choice.black)


def _plant(path: str, frame: Frame, spots: Spots) -> Frame:
    """One 1,000,000-count pixel on the background (the dtype's top below saturation when it
    cannot hold 1e6), in the frame's middle third, away from every spot, and on the levels'
    sample grid (the worst place: the statistics see it)."""
    h, w = frame.data.shape
    step = max(1, math.ceil(math.sqrt(h * w / levels.SAMPLE_PIXELS)))
    grid = np.zeros(frame.data.shape, bool)
    grid[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = True
    grid[np.arange(h) % step != 0] = False
    grid[:, np.arange(w) % step != 0] = False
    rows, cols = np.nonzero(grid & _valid(path, frame) & ~spots.strong)
    y, x = rows[rows.size // 2], cols[cols.size // 2]
    data = frame.data.copy()
    data[y, x] = min(1_000_000, saturation_level(frame) - 1, np.iinfo(data.dtype).max)
    return replace(frame, data=data, scratch=False)


def test_automatic_levels_show_the_spots_on_every_real_frame(testdata, found, stack):
    pid = stack.sign_session(dev_user(), [ESAF])
    failures = []
    print()
    for path in FRAMES:
        spots = found[path]
        ours, theirs = {}, {}
        for xsize in (256, *SIZES):
            jpeg, job = _jpeg(stack, pid, path, xsize)
            ours[xsize] = _graded(testdata, path, spots, jpeg, xsize, job["bval_used"])
        for xsize in SIZES:
            jpeg, job = _jpeg(stack, pid, path, xsize, levels="c", wval=-1)
            theirs[xsize] = _graded(testdata, path, spots, jpeg, xsize, job["bval_used"])
        frame = read_frame(str(testdata / path))
        base = _in_process(frame, 512, spots)
        hot = _in_process(_plant(path, frame, spots), 512, spots)
        ratio = abs(ours[1024].bval - ours[256].bval) / max(abs(ours[1024].bval), 1e-9)
        print(f"{path}: {len(spots.peaks)} spots, gain {spots.gain:.2f}")
        for xsize in SIZES:
            print(f"  {xsize:4d} px  pyis {ours[xsize].row()}")
            print(f"  {xsize:4d} px  C    {theirs[xsize].row()}")
        print(f"  black 256 vs 1024 px: {100 * ratio:.1f} %; planted pixel: {hot.row()}")
        floor, ceiling = SHOWN_FLOOR.get(path, 90.0), DARK_CEILING.get(path, 10.0)
        for xsize in SIZES:
            figures = ours[xsize]
            if figures.spots_shown < floor:
                failures.append(f"{path} {xsize}: {figures.spots_shown:.1f} % spots shown")
            if not 150 <= figures.background_median <= 245:
                failures.append(f"{path} {xsize}: background {figures.background_median}")
            if figures.background_dark > ceiling:
                failures.append(f"{path} {xsize}: {figures.background_dark:.1f} % dark")
        if ratio >= 0.25:
            failures.append(f"{path}: black {ours[256].bval} at 256 px, {ours[1024].bval} at 1024")
        moved = (
            abs(hot.spots_shown - base.spots_shown),
            abs(hot.background_median - base.background_median),
            abs(hot.background_dark - base.background_dark),
            100 * abs(hot.bval - base.bval) / max(abs(base.bval), 1e-9),
        )
        if max(moved) > 5:
            failures.append(f"{path}: a planted pixel moved the figures by {moved}")
    assert not failures, failures


def test_one_hot_pixel_masked_and_saturated_pixels_do_not_move_the_levels() -> None:
    rng = np.random.default_rng(7)
    data = rng.poisson(20, (600, 500)).astype(np.int32)
    frame = Frame(data, None, 60000.0, {})
    calm = levels.compute(frame, 60000.0)
    assert 19 <= calm.background.min() and calm.background.max() <= 21
    assert calm.black == pytest.approx(20 + 10 * np.sqrt(20), rel=0.15)
    spoilt = data.copy()
    spoilt[::5, ::5][100, 80] = 1_000_000  # on the sample grid: it is seen, and outvoted
    spoilt[200:300, 100:200] = 60000  # a saturated block
    mask = np.zeros(data.shape, bool)
    mask[:, :60] = True  # a module gap
    spoilt[:, :60] = -1
    hot = levels.compute(Frame(spoilt, mask, 60000.0, {}), 60000.0)
    assert hot.white == pytest.approx(calm.white, rel=0.05)
    assert hot.black == pytest.approx(calm.black, rel=0.05)
    assert np.abs(hot.background - calm.background).max() <= 1.5


def test_levels_stay_finite_when_no_two_valid_pixels_are_neighbours() -> None:
    data = np.full((64, 64), 7, np.int32)
    mask = (np.indices(data.shape).sum(axis=0) % 2).astype(bool)  # a checkerboard of gaps
    stats = levels.compute(Frame(data, mask, None, {}), math.inf)
    assert np.isfinite([stats.white, stats.black]).all() and stats.black > stats.white
    assert np.isfinite(stats.span).all() and (stats.span > 0).all()
    levels.LevelStats.from_json(stats.to_json())  # and it is a value tier 2 accepts
    empty = levels.compute(Frame(data, np.ones(data.shape, bool), None, {}), math.inf)
    assert (empty.white, empty.black) == (-MIN_SPAN / 8, MIN_SPAN)


def test_levels_are_the_same_at_every_size_and_the_c_rule_is_kept(testdata: Path) -> None:
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26)
    fn = "cbf/thau_3_2_0002.cbf"  # one hot pixel above the count cutoff, strong spots
    used = [pipeline.run({"type": "jpeg", "fn": fn, "xsize": x}).job for x in (128, 256, 1024)]
    assert len({(j["wval_used"], j["bval_used"]) for j in used}) == 1
    assert 10 < used[0]["bval_used"] < 40  # the C rule said 2102 at 512 px
    c = pipeline.run({"type": "jpeg", "fn": fn, "xsize": 512, "wval": -1, "levels": "c"}).job
    assert c["bval_used"] > 1000
    configured = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26, levels="c")
    assert configured.run({"type": "jpeg", "fn": fn, "xsize": 512, "wval": -1}).job == c
    explicit = {"type": "jpeg", "fn": fn, "xsize": 512, "contrast": 50, "wval": 2}
    assert (pipeline.run(explicit).job["wval_used"], pipeline.run(explicit).job["bval_used"]) == (
        2,
        50,
    )


def test_every_map_keeps_saturated_red_and_masked_white(testdata: Path) -> None:
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26)
    fn = "cbf/thau_3_2_0002.cbf"
    frame = read_frame(str(testdata / fn))
    reduced = reduce_max(frame, 512)
    ((y, x),) = np.argwhere(reduced.saturated)
    inside = ndimage.binary_erosion(~reduced.valid, np.ones((3, 3), bool))  # a gap, not its edge
    gy, gx = np.argwhere(inside)[0]
    means = {}
    for scale in ("linear", "sqrt", "log"):
        for colormap in ("inverted", "grey", "viridis"):
            job = {"type": "jpeg", "fn": fn, "xsize": 512, "scale": scale, "colormap": colormap}
            payload = pipeline.run(job).payloads[0]
            rgb = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")).astype(int)
            r, g, b = rgb[y, x]
            assert r > 200 and g < 80 and b < 80, (scale, colormap)
            assert rgb[gy, gx].min() > 235, (scale, colormap)
            means[scale, colormap] = rgb[reduced.valid].mean()
    assert means["linear", "inverted"] > 150 > means["linear", "grey"]  # spots dark on white
    assert means["linear", "inverted"] > means["sqrt", "inverted"] > means["log", "inverted"]


@pytest.mark.parametrize(
    "field, value", [("scale", "cubic"), ("colormap", "jet"), ("levels", "dials"), ("scale", 3)]
)
def test_unknown_scale_colormap_or_rule_is_a_bad_request(stack, field, value) -> None:
    pid = stack.sign_session(dev_user(), [ESAF])
    job = {"pid": pid, "esaf": ESAF, "type": "jpeg", "fn": "a.cbf", "xsize": 64, field: value}
    assert error_code(ask(stack.endpoint, job)) == "bad_request"
    fixed = {"scale": "LOG", "colormap": "Viridis", "levels": "C"}[field]  # case-insensitive
    _, meta = meta_of(ask(stack.endpoint, job | {field: fixed}))
    assert meta["x_pixels_in_detector"] == 2463


def test_level_stats_cross_tier_2_exactly_and_bad_ones_are_refused(testdata: Path) -> None:
    frame = read_frame(str(testdata / "marccd/somedata_0001.mccd"))
    stats = levels.compute(frame, saturation_level(frame))
    reduced = reduce_max(frame, 64)
    key = Key(0, "somedata_0001.mccd", 1, 2, 3, 4, 1, 1.0, 0.0, 0.0, 64, None)
    blob = tier2format.encode(reduced, {}, stats)
    assert blob is not None
    _, _, back = tier2format.decode(blob, key)
    assert back is not None and back.white == stats.white and back.black == stats.black
    assert np.array_equal(back.background, stats.background)
    assert np.array_equal(back.span, stats.span)
    good = stats.to_json()
    for bad in (
        {"grid": [99, 99]},
        {"background": good["span"][:-8]},
        {"span": "not base64!"},
        {"white": good["black"] + 1},
        {"shape": [0, 5]},
        {"v": 0},
    ):
        with pytest.raises(ValueError):
            levels.LevelStats.from_json(good | bad)
        with pytest.raises(tier2format.DecodeError):
            tier2format.decode(_with_levels(blob, good | bad), key)


def _with_levels(blob: bytes, value: object) -> bytes:
    """The tier-2 value with its header's level stats replaced (another worker wrote it)."""
    (length,) = struct.unpack_from(">I", blob)
    header = json.loads(blob[4 : 4 + length]) | {"levels": value}
    text = json.dumps(header).encode()
    return struct.pack(">I", len(text)) + text + blob[4 + length :]
