"""For the page-side contrast tests: a synthetic Eiger frame with saturated and masked pixels
(red and white in every map), and the worker's own 8-bit map of a ``jpeg`` request, computed
in-process from the files the stack serves."""

from __future__ import annotations

import os
from pathlib import Path

import fabio
import fabio.edfimage
import h5py
import numpy as np

from pyis_common.request import parse
from tests.support.detector import DETECTOR, EigerSeries
from worker import jobs, levelrule, render

SYNTHETIC = "synthetic/hot_master.h5"
FLOATS = "synthetic/floats_0001.edf"
SATURATION = 50000  # EigerSeries' saturation_value
SHAPE = (1200, 1600)
GAP = slice(400, 440)  # masked rows


def write_synthetic(data: Path) -> None:
    """A 1200 x 1600 frame (larger than the view: the overview is its picture): Poisson
    background, spots up to 20000 counts, a few saturated pixels, masked rows (a gap)."""
    folder = data / "synthetic"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o755)
    series = EigerSeries(folder, "hot", SHAPE, 1)
    mask = np.zeros(SHAPE, np.uint32)
    mask[GAP, :] = 1  # a gap between modules
    with h5py.File(series.master, "a") as f:
        f[f"{DETECTOR}/detectorSpecific/pixel_mask"][...] = mask
    rng = np.random.default_rng(15)
    frame = rng.poisson(20, SHAPE).astype(np.uint32)
    ys, xs = rng.integers(0, SHAPE[0], 600), rng.integers(0, SHAPE[1], 600)
    frame[ys, xs] = rng.integers(200, 20000, 600).astype(np.uint32)
    frame[200:203, 50:53] = SATURATION  # saturated: red
    frame[20, 1590] = SATURATION + 7
    series.append(frame)
    floats = (rng.gamma(4.0, 5.0, SHAPE) * 1.37).astype(np.float32)  # no integer counts
    floats[ys, xs] = rng.uniform(300.0, 9000.0, 600).astype(np.float32)
    fabio.edfimage.EdfImage(data=floats).write(str(data / FLOATS))
    os.chmod(data / FLOATS, 0o644)


def server_rgb(data: Path, fn: str, size: tuple[int, int], fields: dict) -> np.ndarray:
    """(h, w, 3) uint8: what the worker's stage 2 draws for this ``jpeg`` request (the
    handler's own level rule, then render.pixels, the picture render() encodes)."""
    pipe = jobs.Pipeline(home=str(data), cache_bytes=1 << 26)
    req = parse(
        {"type": "jpeg", "fn": fn, "xsize": size[0], "ysize": size[1]} | fields, need_pid=False
    )
    stage1, _, _ = pipe.stage1(req)
    choice = levelrule.choose(
        req, stage1.level_stats, stage1.reduced.stats, stage1.meta.get("auto_levels"),
        pipe.level_rule, levelrule.zoomed(req), stage1.reduced.data.shape,
    )  # fmt: skip
    planes = choice.planes and choice.planes()  # automatic levels: the per-pixel planes
    rgb, _, _ = render.pixels(
        stage1.reduced, choice.black, choice.white, planes=planes,
        scale=req.scale, colormap=req.colormap,
    )  # fmt: skip
    return np.broadcast_to(rgb, (*rgb.shape[:2], 3))
