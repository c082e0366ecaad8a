"""A followed frame's render (worker/followlean.py) against the ``jpeg`` job of a fresh worker:
the same JPEG bytes (so the same picture, pixel for pixel) for the same frame and fields, for
Pilatus CBFs and an Eiger series; its stage 1 kept for later requests only after the reply,
and dropped when the frame is already superseded (worker/afterreply.py's optional work)."""

from __future__ import annotations

import mmap
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyis_common.request import parse
from tests.support.client import ask
from tests.support.detector import EigerSeries, write_frame
from worker import followlean
from worker.afterreply import AfterReply, later
from worker.follow import Follows
from worker.followlean import Lean
from worker.jobs import Pipeline
from worker.outcome import Stage1
from worker.timings import Timings

CBFS = ["cbf/thau_3_2_0001.cbf", "cbf/l-cyst_01_00001.cbf", "cbf/dlsnxs2cbf_therm_0001.cbf"]
FIELDS = [  # what a viewer may ask while following
    {"xsize": 512},
    {"xsize": 256, "contrast": 40, "wval": 0},
    {"xsize": 300, "levels": "c", "label": "live", "labelHeight": 20},
    {"xsize": 400, "zoom": 3.0, "segcol": 1.0, "segrow": 1.0, "colormap": "viridis"},
    {"xsize": 1000, "ysize": 700, "scale": "log"},
]


def job(fn: str, fields: dict, frame: int | None = None):
    raw = {"type": "jpeg", "fn": fn} | fields | ({"frame": frame} if frame else {})
    return parse(raw, need_pid=False)


def fresh_jpeg(home: Path, fn: str, fields: dict, frame: int | None = None) -> bytes:
    """The ``jpeg`` job as a fresh worker answers it: nothing cached, the pyramid built."""
    return Pipeline(str(home)).jpeg(job(fn, fields, frame)).payloads[0]


@pytest.mark.parametrize("rel", CBFS)
def test_a_followed_cbf_is_the_jpeg_jobs_picture(tmp_path: Path, testdata: Path, rel: str):
    shutil.copyfile(testdata / rel, tmp_path / "x.cbf")
    for fields in FIELDS:
        lean = Lean(Pipeline(str(tmp_path)))  # a new worker each time: nothing cached
        got = lean.render(job("x.cbf", fields), Timings())
        assert got.tier == "file" and lean.pipe.frames_read == 1
        assert got.payloads[0] == fresh_jpeg(tmp_path, "x.cbf", fields), fields


def test_a_followed_eiger_frame_is_the_jpeg_jobs_picture(tmp_path: Path):
    series = EigerSeries(tmp_path, "e", (400, 300), nimages=3)
    rng = np.random.default_rng(16)
    for _ in range(3):
        frame = rng.poisson(4, (400, 300)).astype(np.uint32)
        frame[rng.integers(0, 400, 5), rng.integers(0, 300, 5)] = 50000  # saturated: red
        series.append(frame)
    for n, fields in enumerate(FIELDS[:4], start=1):
        frame_no = 1 + n % 3
        got = Lean(Pipeline(str(tmp_path))).render(job("e_master.h5", fields, frame_no), Timings())
        assert got.payloads[0] == fresh_jpeg(tmp_path, "e_master.h5", fields, frame_no), fields


def test_the_stage1_is_kept_after_the_reply_and_a_repeat_reads_nothing(tmp_path, testdata):
    shutil.copyfile(testdata / CBFS[0], tmp_path / "x.cbf")
    lean = Lean(Pipeline(str(tmp_path)))
    with AfterReply() as after:
        first = lean.render(job("x.cbf", FIELDS[0]), Timings())
    assert stage1s(lean) == []  # not before the reply
    after.run()
    assert stage1s(lean) == ["x.cbf"]
    kept = next(v for v, _ in lean.pipe.lru._items.values() if isinstance(v, Stage1))
    for name in ("data", "valid", "saturated"):  # out of the heap (worker/offheap.py)
        assert isinstance(getattr(kept.reduced, name).base, mmap.mmap), name
    contrast = {"xsize": 512, "contrast": 40, "wval": 0}
    again = lean.render(job("x.cbf", contrast), Timings())  # another contrast: stage 2 only
    assert lean.pipe.frames_read == 1 and again.tier == "lru"
    assert again.payloads[0] == fresh_jpeg(tmp_path, "x.cbf", contrast)
    assert first.payloads[0] == fresh_jpeg(tmp_path, "x.cbf", FIELDS[0])


def test_tier_1_holds_the_newest_followed_frames_only(tmp_path, testdata, monkeypatch):
    """A collection's frames would fill the LRU, evicting what a user browses: the newest
    KEPT_FRAMES stay, each in place of the oldest."""
    monkeypatch.setattr(followlean, "KEPT_FRAMES", 2)
    lean = Lean(Pipeline(str(tmp_path)))
    for n in range(1, 5):
        shutil.copyfile(testdata / CBFS[0], tmp_path / f"x_{n}.cbf")
        with AfterReply() as after:
            lean.render(job(f"x_{n}.cbf", FIELDS[1]), Timings())
        after.run()
    assert sorted(stage1s(lean)) == ["x_3.cbf", "x_4.cbf"]


def test_optional_work_is_dropped_and_required_work_still_runs():
    ran: list[str] = []
    with AfterReply() as after:
        later(lambda: ran.append("keep"), optional=True)
        later(lambda: ran.append("release"))
    after.run(optional=False)
    assert ran == ["release"]


def test_a_superseded_frame_keeps_nothing_the_newest_keeps_its_stage1(tmp_path, testdata):
    """Frame 1's render is held until frame 2 has completed: its reply goes out, its stage 1
    is not kept; frame 2 (rendered next, by the same loop) keeps its own."""
    folder = tmp_path / "live"
    folder.mkdir()
    lean = Lean(Pipeline(str(tmp_path)))
    entered, release = threading.Event(), threading.Event()

    def render(req, clock):
        if req.fn.endswith("x_0001.cbf"):
            entered.set()
            assert release.wait(30), "never released"
        return lean.render(req, clock)

    answers: list = []
    done = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        follows = Follows(str(tmp_path), render, pool)
        poll = {"type": "newest", "fn": "live", "seq": 0, "wait": 20, "xsize": 128}
        follows.submit(poll, Timings(), lambda r: (answers.append(r), done.set()))
        write_frame(testdata / CBFS[0], folder / "x_0001.cbf")
        assert entered.wait(30)
        write_frame(testdata / CBFS[1], folder / "x_0002.cbf")
        wait_for(lambda: follows.counters()["follow_frames"] == 2, "frame 2 seen")
        release.set()
        assert done.wait(30)
        wait_for(lambda: lean.pipe.frames_read == 2, "frame 2 rendered")
        wait_for(lambda: follows.series and not next(iter(follows.series.values())).rendering,
                 "the render loop to end")  # fmt: skip
    assert stage1s(lean) == ["live/x_0002.cbf"]
    assert answers[0].job["newest"]["fn"] == "live/x_0001.cbf"


def stage1s(lean: Lean) -> list[str]:
    """The files whose stage 1 the worker's LRU holds."""
    return [
        key.path for key, (value, _) in lean.pipe.lru._items.items() if isinstance(value, Stage1)
    ]


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_stack_follows_a_frame_with_the_jpeg_jobs_picture(site, testdata):
    """Through proxy, procmgr and worker: the followed frame's JPEG, and a ``jpeg`` of a copy
    of the same frame (a new file: nothing cached), with the same fields, are the same bytes."""
    from tests.test_follow import followed, group_of, in_background, live_dir, newest

    folder = live_dir(site.home, group_of(site))
    fields = {"xsize": 384, "label": "live", "labelHeight": 16}
    assert followed(newest(site, folder.name, wait=0.2, **fields)) is None
    waiting, out = in_background(newest, site, folder.name, wait=10, **fields)
    write_frame(testdata / CBFS[0], folder / "x_0001.cbf", group=group_of(site))
    waiting.join()
    assert followed(out[0])["fn"] == f"{folder.name}/x_0001.cbf"
    write_frame(testdata / CBFS[0], folder / "copy.cbf", group=group_of(site))
    job = {
        "pid": site.session(),
        "esaf": site.esaf,
        "type": "jpeg",
        "fn": f"{folder.name}/copy.cbf",
    }
    cold = ask(site.endpoint, job | fields)
    assert cold[0] == b"" and cold[-1] == out[0][-1]
