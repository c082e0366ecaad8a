"""The max-pyramid per frame (worker/pyramid.py) and the reply's ``timings_ms``.

A level-served image must be the image a fresh worker reduces, pixel for pixel (spots at their
full value, masked boxes invalid), a rewritten file must never be served from an old pyramid,
and the LRU must hold its byte bound while pyramids grow levels inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import fabio.cbfimage
import numpy as np
import pytest

from procmgr.frames import timings_ms
from pyis_common.request import parse
from tests.support.client import ask, meta_of
from worker import jobs, reduce
from worker.formats import Frame, samples
from worker.pyramid import Pyramid, halve
from worker.timings import STEPS

SPOTS = ((517, 733, 90000), (3, 1201, 70000), (999, 0, 80000))  # row, column, counts


def gapped_frame(seed: int = 1) -> np.ndarray:
    """1000 x 1210 counts with Pilatus-style -1 gaps and three one-pixel spots."""
    rng = np.random.default_rng(seed)
    data = rng.poisson(20, (1000, 1210)).astype(np.int32)
    data[195:212, :] = -1  # a module gap row band
    data[:, 487:494] = -1
    for row, col, value in SPOTS:
        data[row, col] = value
    return data


def write_cbf(path: Path, data: np.ndarray) -> None:
    fabio.cbfimage.CbfImage(data=data, header={}).write(str(path))


def stage1(pipeline: jobs.Pipeline, **job: object) -> reduce.Reduced:
    return pipeline.stage1(parse({"type": "jpeg", "fn": "img.cbf", **job}, need_pid=False))[
        0
    ].reduced


def assert_same(a: reduce.Reduced, b: reduce.Reduced) -> None:
    assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
    assert np.array_equal(a.data, b.data)
    assert np.array_equal(a.valid, b.valid) and np.array_equal(a.saturated, b.saturated)
    assert a.stats == b.stats


GEOMETRIES = [
    {"xsize": 200},
    {"xsize": 333},
    {"xsize": 1000, "ysize": 90},
    {"xsize": 512, "zoom": 4.0, "segcol": 1.0, "segrow": 2.0},
    {"xsize": 128, "zoom": 2.0, "segcol": 1.0, "segrow": 0.0},
    {"xsize": 2000},  # larger than the frame: nearest sampling of level 0
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "-".join(map(str, g.values())))
def test_a_level_served_image_is_the_freshly_reduced_one(tmp_path: Path, geometry: dict) -> None:
    write_cbf(tmp_path / "img.cbf", gapped_frame())
    warm = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28)
    stage1(warm, xsize=700)  # reads the file once and keeps its pyramid
    served = stage1(warm, **geometry)
    assert warm.frames_read == 1  # from a level, not the file
    fresh = stage1(jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28), **geometry)
    assert_same(served, fresh)


def test_spots_and_masks_survive_every_level(tmp_path: Path) -> None:
    data = gapped_frame()
    write_cbf(tmp_path / "img.cbf", data)
    pipeline = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28)
    for xsize in (8, 37, 100, 151, 300, 605, 1210):
        reduced = stage1(pipeline, xsize=xsize)
        assert reduced.data.max() == max(v for _, _, v in SPOTS)
        h, w = reduced.data.shape
        for row, col, value in SPOTS:  # each spot lands in the box over it, at full value
            box = reduced.data[row * h // 1000, col * w // 1210]
            near = reduced.data[
                max(row * h // 1000 - 1, 0) : row * h // 1000 + 2,
                max(col * w // 1210 - 1, 0) : col * w // 1210 + 2,
            ]
            assert box == value or value in near
        assert reduced.valid[reduced.data >= 0].all() and not reduced.valid[reduced.data < 0].any()
    assert pipeline.frames_read == 1
    alone = stage1(pipeline, xsize=1210)  # one pixel per pixel: level 0 is the frame
    assert np.array_equal(alone.data, data) and np.array_equal(alone.valid, data >= 0)


def test_an_eiger_pixel_mask_is_kept_in_the_levels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = rng.poisson(5, (2, 600, 640)).astype(np.uint32)
    frames[:, 100, 200] = 50000  # a spot
    mask = np.zeros((600, 640), np.uint8)
    mask[300:340, :] = 1  # a masked band
    mask[100, 201] = 1
    samples.write_eiger(str(tmp_path), "s", frames, per_file=2, mask=mask)
    warm = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28)
    job = {"type": "jpeg", "fn": "s_master.h5", "frame": 2}
    warm.stage1(parse(job | {"xsize": 640}, need_pid=False))
    for geometry in ({"xsize": 80}, {"xsize": 300, "zoom": 2.0, "segcol": 0.5, "segrow": 0.2}):
        served = warm.stage1(parse(job | geometry, need_pid=False))[0].reduced
        cold = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28)
        assert_same(served, cold.stage1(parse(job | geometry, need_pid=False))[0].reduced)
        assert served.data.max() == 50000 and not served.saturated.any()
    coarse = warm.stage1(parse(job | {"xsize": 80}, need_pid=False))[0].reduced
    assert not coarse.valid[300 * 75 // 600 + 1 : 340 * 75 // 600 - 1].any()  # the band
    assert coarse.valid.sum() > 0.8 * coarse.valid.size
    assert warm.frames_read == 1


def test_a_level_is_the_max_of_its_blocks() -> None:
    data = gapped_frame()[:999, :1203]  # odd sizes: partial blocks at both edges
    padded = np.full((1000, 1208), np.iinfo(np.int32).min, np.int32)
    padded[:999, :1203] = data
    expected = padded.reshape(125, 8, 151, 8).max(axis=(1, 3))
    assert np.array_equal(halve(halve(halve(data, np.maximum), np.maximum), np.maximum), expected)
    pyramid = Pyramid(Frame(data.copy(), data < 0, None, {}, negative_masked=True), {})
    assert np.array_equal(pyramid.level(3).data, expected)
    mask = np.zeros(data.shape, bool)
    mask[8:16, 16:40] = True  # three whole blocks of level 3, masked
    masked = Pyramid(Frame(data.astype(np.int64), mask, None, {}), {}).level(3)
    assert masked.valid is not None and masked.valid.sum() == masked.valid.size - 3
    assert not masked.valid[1, 2:5].any()


def test_a_rewritten_file_never_serves_a_stale_level(tmp_path: Path) -> None:
    path = tmp_path / "img.cbf"
    write_cbf(path, gapped_frame(seed=1))
    pipeline = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28)
    before = stage1(pipeline, xsize=300)
    data = gapped_frame(seed=1)
    data[600, 600] = 123456  # a new spot, same size of file or not
    write_cbf(path, data)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = stage1(pipeline, xsize=200)
    assert pipeline.frames_read == 2
    assert after.data.max() == 123456 and before.data.max() < 123456
    assert pipeline.lru.counters()["entries"] == 2  # the new pyramid and stage 1: the old
    # version's were dropped when it was read (no request can name them any more)
    fresh = stage1(jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 28), xsize=200)
    assert_same(after, fresh)


def test_the_lru_holds_its_byte_bound_with_pyramids_in_it(tmp_path: Path) -> None:
    for i in range(4):
        write_cbf(tmp_path / f"f{i}.cbf", gapped_frame(seed=i))
    one = Pyramid(Frame(gapped_frame(), None, None, {}, negative_masked=True), {}).nbytes
    bound = int(2.5 * one)  # two pyramids with their levels, never three
    pipeline = jobs.Pipeline(home=str(tmp_path), cache_bytes=bound)
    for round_ in range(3):
        for i in range(4):
            for xsize in (100, 301, 640, 77 + round_):
                job = {"type": "jpeg", "fn": f"f{i}.cbf", "xsize": xsize}
                pipeline.stage1(parse(job, need_pid=False))
                held = list(pipeline.lru._items.values())
                assert pipeline.lru.bytes <= bound
                assert sum(size for _, size in held) == pipeline.lru.bytes
                real = sum(v.nbytes if isinstance(v, Pyramid) else size for v, size in held)
                assert real <= bound  # what the pyramids really hold, levels included
    assert pipeline.lru.evictions > 0 and pipeline.frames_read > 4
    tiny = jobs.Pipeline(home=str(tmp_path), cache_bytes=one // 2)  # a pyramid never fits
    tiny.stage1(parse({"type": "jpeg", "fn": "f0.cbf", "xsize": 100}, need_pid=False))
    tiny.stage1(parse({"type": "jpeg", "fn": "f0.cbf", "xsize": 101}, need_pid=False))
    assert tiny.frames_read == 2 and tiny.lru.bytes <= one // 2


def test_a_grown_pyramid_past_the_bound_leaves_the_lru() -> None:
    from worker.cache import LRU

    lru: LRU[str] = LRU(100)
    lru.put("a", "a", 40)
    lru.put("b", "b", 40)
    lru.resize("a", 70)  # "a" grew: "b" (older now) goes
    assert lru.get("b") is None and lru.bytes == 70
    lru.resize("a", 120)  # past the bound: "a" goes too
    assert lru.get("a") is None and lru.bytes == 0
    lru.resize("gone", 10)  # a value no longer held is not brought back
    assert lru.bytes == 0


def test_timings_from_a_worker_are_numbers_or_zero() -> None:
    hostile = {"queue": "1", "read": float("nan"), "reduce": -3, "map": 1e99, "encode": True}
    out = timings_ms(hostile | {"worker": 2.5, "extra": 9}, {"access": 0.1234, "total": 4.0})
    assert out == dict.fromkeys(STEPS, 0.0) | {"worker": 2.5, "access": 0.123, "total": 4.0}
    assert set(timings_ms(None, {})) == set(STEPS)


def test_every_reply_carries_sane_timings(site) -> None:
    pid = site.session()
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "thau_0001.cbf", "xsize": 345}
    steps = {"queue", "access", "read", "reduce", "map", "encode", "worker", "total"}
    seen = []
    for extra in ({}, {"contrast": 77}, {"xsize": 346}, {"type": "meta"}):
        reply = ask(site.endpoint, job | extra)
        assert reply[0] == b""
        timings = meta_of(reply)[0]["timings_ms"]
        assert set(timings) == steps
        assert all(isinstance(v, float) and v >= 0 for v in timings.values())
        work = sum(timings[k] for k in ("read", "reduce", "map", "encode"))
        assert work <= timings["worker"] + 0.01 and timings["worker"] <= timings["total"] + 0.01
        assert timings["access"] <= timings["total"]
        seen.append(timings)
    first, contrast, resized, meta = seen
    assert contrast["read"] == contrast["reduce"] == 0.0  # stage 2 only
    assert resized["read"] == 0.0 and resized["reduce"] > 0  # from the held pyramid
    assert meta["read"] > 0 and meta["encode"] == 0.0
