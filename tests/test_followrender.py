"""The ``newest`` job's render loops with a stand-in for the pipeline's jpeg job that holds
each render until the test releases it (real inotify, real files, real threads): a frame that
completes during a render starts beside it; an Eiger series renders one frame at a time."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pyis_common.errors import Incomplete, Unsupported
from pyis_common.request import parse
from tests.support.detector import EigerSeries
from worker.follow import Follows
from worker.followrender import Renderer
from worker.followreply import READ_TRIES, render_complete
from worker.outcome import Result
from worker.timings import Timings


def test_frames_completing_during_a_render_are_skipped_to_the_newest(tmp_path):
    """A render slower than the detector's period: one render per series (it takes both
    cores), so the frames that complete meanwhile wait; when it ends, the loop renders the
    newest of them (never a queue), and the next poll gets that one."""
    entered: list[str] = []
    names = ("a_0001.cbf", "a_0002.cbf", "a_0003.cbf")
    release = {name: threading.Event() for name in names}

    def render(req, clock) -> Result:  # the pipeline's jpeg job, held until released
        name = os.path.basename(req.fn)
        entered.append(name)
        assert release[name].wait(30), "never released"
        return Result(job={"rendered": name}, meta={}, payloads=[b"jpeg"])

    folder = tmp_path / "live"
    folder.mkdir()
    answers: list = []
    with ThreadPoolExecutor(4) as pool:
        follows = Follows(str(tmp_path), render, pool)
        job = {"type": "newest", "fn": "live", "seq": 0, "wait": 20, "xsize": 64}
        follows.submit(job, Timings(), answers.append)
        (folder / "a_0001.cbf").write_bytes(b"frame 1")
        wait_until(lambda: entered == ["a_0001.cbf"], "the first frame rendering")
        (folder / "a_0002.cbf").write_bytes(b"frame 2")
        (folder / "a_0003.cbf").write_bytes(b"frame 3")
        # the newest seen is a_0003 (a_0002 and a_0003 may come in one batch of events, and
        # a batch counts only its last frame: follow_frames is then 2, not 3)
        wait_until(lambda: newest_seen(follows) == "a_0003.cbf", "the two frames seen")
        assert entered == ["a_0001.cbf"]  # no second render beside the first
        release["a_0001.cbf"].set()
        wait_until(lambda: answers, "the first frame's answer")
        seq = answers[0].job["newest"]["seq"]
        wait_until(lambda: len(entered) == 2, "the newest frame rendering")
        assert entered == ["a_0001.cbf", "a_0003.cbf"]  # a_0002 skipped
        follows.submit(job | {"seq": seq}, Timings(), answers.append)
        release["a_0003.cbf"].set()
        wait_until(lambda: len(answers) == 2, "the newest frame's answer")
    assert answers[0].job["rendered"] == "a_0001.cbf"
    assert answers[1].job["newest"]["fn"] == "live/a_0003.cbf"


def test_an_eiger_series_renders_one_frame_at_a_time(tmp_path):
    """h5py takes one lock around every HDF5 call: a second Eiger render would only wait, so
    the frame that completes meanwhile renders after the first (the newest one then)."""
    entered: list[int] = []
    release = threading.Event()

    def render(req, clock) -> Result:
        entered.append(req.frame)
        assert release.wait(30), "never released"
        return Result(job={}, meta={}, payloads=[b"jpeg"])

    series = EigerSeries(tmp_path, "e", (8, 8), nimages=4)
    answers: list = []
    with ThreadPoolExecutor(4) as pool:
        follows = Follows(str(tmp_path), render, pool)
        job = {"type": "newest", "fn": series.master.name, "seq": 0, "wait": 20, "xsize": 64}
        follows.submit(job, Timings(), answers.append)
        series.append(np.ones((8, 8), np.uint32))
        wait_until(lambda: entered == [1], "the first frame rendering")
        series.append(np.ones((8, 8), np.uint32))
        wait_until(lambda: follows.counters()["follow_frames"] == 2, "the second frame seen")
        (followed,) = follows.series.values()
        assert followed.rendering == 1 and entered == [1]  # not beside the first
        release.set()
        wait_until(lambda: entered == [1, 2], "the second frame rendered after the first")
    assert [a.job["newest"]["frame"] for a in answers] == [1]


def test_render_loops_run_on_their_own_threads_started_with_the_first_follower(tmp_path):
    """Not on the job threads (a user's other requests keep them), and both render threads
    exist (their memory faulted in) before the first frame is written."""
    names: list[str] = []

    def render(req, clock) -> Result:
        names.append(threading.current_thread().name)
        return Result(job={}, meta={}, payloads=[b"jpeg"])

    def followers() -> int:
        return sum(t.name.startswith("follow") for t in threading.enumerate())

    (tmp_path / "live").mkdir()
    before = followers()
    answers: list = []
    with ThreadPoolExecutor(4, thread_name_prefix="job") as pool:
        follows = Follows(str(tmp_path), render, pool)
        job = {"type": "newest", "fn": "live", "seq": 0, "wait": 20, "xsize": 64}
        follows.submit(job, Timings(), answers.append)
        wait_until(lambda: followers() == before + 2, "the two render threads")
        (tmp_path / "live" / "a_0001.cbf").write_bytes(b"frame 1")
        wait_until(lambda: answers, "the frame")
    assert len(names) == 1 and names[0].startswith("follow")


def test_a_frame_unreadable_while_its_file_grows_is_read_again(tmp_path):
    """An HDF5 data file caught mid-append reads as corrupt (``unsupported:``), a frame cut
    short as ``incomplete:``: both are read again; one that stays so is that error."""
    calls: list[int] = []

    def flaky(req, clock) -> Result:
        calls.append(1)
        if len(calls) < 3:
            raise (Unsupported if len(calls) == 1 else Incomplete)("caught mid-append")
        return Result(job={}, meta={}, payloads=[b"jpeg"])

    req = parse({"type": "jpeg", "fn": "e_master.h5", "frame": 2}, need_pid=False)
    assert render_complete(flaky, req, Timings()).payloads == [b"jpeg"] and len(calls) == 3

    def broken(req, clock) -> Result:
        calls.append(1)
        raise Unsupported("really corrupt")

    calls.clear()
    with pytest.raises(Unsupported):
        render_complete(broken, req, Timings())
    assert len(calls) == READ_TRIES


def newest_seen(follows: Follows) -> str | None:
    with follows.lock:
        frames = [s.newest for s in follows.series.values() if s.newest is not None]
    return os.path.basename(frames[0].fn) if frames else None


def wait_until(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_every_newly_followed_series_prefaults_the_render_memory(tmp_path, monkeypatch):
    """Before a series' first frame, not only the worker's first: what the worker kept since
    its last follow (pyramids, stage 1s) may have moved the heap top its renders take their
    buffers from (bench/live.py: a second row's first frames read in 34-52 ms instead of 5)."""
    prefaults: list[int] = []
    monkeypatch.setattr(Renderer, "prefault", lambda self: prefaults.append(1))
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    with ThreadPoolExecutor(2) as pool:
        follows = Follows(str(tmp_path), lambda req, clock: None, pool)
        for name in ("one", "two", "one"):  # the third poll follows a series already watched
            poll = {"type": "newest", "fn": name, "seq": 0, "wait": 0, "xsize": 64}
            follows.submit(poll, Timings(), lambda answer: None)
        assert len(follows.series) == 2
    assert len(prefaults) == 2


def test_a_series_followed_while_another_renders_prefaults_nothing(tmp_path, monkeypatch):
    """A render in progress keeps the render memory warm, and a prefault would hold one of the
    two render threads at its barrier while that render waits for a free one."""
    prefaults: list[int] = []
    monkeypatch.setattr(Renderer, "prefault", lambda self: prefaults.append(1))
    entered, release = threading.Event(), threading.Event()

    def render(req, clock) -> Result:  # the first series' frame, held until released
        entered.set()
        assert release.wait(30), "never released"
        return Result(job={}, meta={}, payloads=[b"jpeg"])

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    answers: list = []
    with ThreadPoolExecutor(2) as pool:
        follows = Follows(str(tmp_path), render, pool)
        poll = {"type": "newest", "fn": "one", "seq": 0, "wait": 20, "xsize": 64}
        try:
            follows.submit(poll, Timings(), answers.append)
            (tmp_path / "one" / "a_0001.cbf").write_bytes(b"frame 1")
            assert entered.wait(30), "the first series never rendered"
            follows.submit(poll | {"fn": "two", "wait": 0}, Timings(), answers.append)
            assert len(follows.series) == 2 and len(prefaults) == 1  # "one"'s only
        finally:
            release.set()
        wait_until(lambda: len(answers) == 2, "both answers")
