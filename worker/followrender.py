"""Rendering followed frames (worker/follow.py): the render loops, each frame rendered once for
every poll waiting on it, the newest rendering kept to answer the polls that come after it.

What a reply need not wait for (keeping the frame's stage 1 for later requests) runs after the
replies are sent, and only while the frame is still the newest: a superseded frame's is
dropped, so it costs the newest frame no CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pyis_common.errors import PyisError
from pyis_common.request import Request
from worker import bound, headroom
from worker import followreply as reply
from worker.afterreply import AfterReply
from worker.followed import Frame
from worker.followstate import Series, Waiter, answers
from worker.jobs import Result
from worker.timings import Timings

log = logging.getLogger("worker")
Render = Callable[[Request, Timings], Result]
RENDER_THREADS = 2  # the render loops' threads: two renders at once fill a 2-core image host
PREFAULT_BYTES = 48 << 20  # what one 6M render allocates at its peak (frame, rows, map)
PREFAULT_WAIT_S = 5.0


def _touch(both: threading.Barrier) -> None:
    """Fault in and free PREFAULT_BYTES on this thread (in blocks below glibc's mmap
    threshold, so they come from, and go back to, the worker's malloc arena)."""
    try:
        both.wait(PREFAULT_WAIT_S)
    except threading.BrokenBarrierError:
        pass  # a thread busy elsewhere: this one still warms its share
    blocks = [np.ones(PREFAULT_BYTES // 2, np.uint8) for _ in range(2)]  # ones: written
    del blocks


def render_once(
    render: Render,
    req: Request,
    frame: Frame,
    paths: tuple[str, ...] | None,
    clock: Timings,
    after: AfterReply | None = None,
) -> Result | PyisError | None:
    """``frame`` rendered as ``req`` asks, under the path binding ``paths``; the error a
    client may see, or None for an internal failure (logged, never raised: a caller that
    marked its series as rendering must always get to unmark it). Work the render defers
    until its reply is sent goes to ``after``. A render counts as a job in hand for the
    heap's headroom (worker/headroom.py), which faults nothing in beside it."""
    headroom.job_began()
    try:
        with bound.bound(paths), after or AfterReply():
            return reply.render_complete(render, reply.as_jpeg(req, frame), clock)
    except PyisError as exc:
        return exc
    except Exception:
        log.exception("follow: rendering %s failed", frame.fn[:200])
        return None
    finally:
        headroom.job_ended()


def deliver(
    frame: Frame,
    seq: int,
    waiters: list[Waiter],
    result: Result | PyisError | None,
    clock: Timings,
) -> None:
    """Answer ``waiters`` with ``frame`` rendered (or the error; None: internal)."""
    if not isinstance(result, Result):
        for waiter in waiters:
            waiter.done(result)
        return
    for waiter in waiters:
        for step, ms in clock.ms.items():
            waiter.clock.add(step, ms)
        age_ms = (time.perf_counter() - frame.seen) * 1000
        newest = {"seq": seq, "fn": frame.fn, "frame": frame.frame, "age_ms": age_ms}
        waiter.done(reply.with_newest(result, newest))


class Renderer:
    """The rendering half of worker/follow.py's ``Follows``, under its ``lock``. The render
    loops run on threads of their own: they take no job thread from the user's other
    requests, and their memory (a 6M frame's ~45 MB of buffers) is faulted in once per
    thread, ahead of the first frame (``prefault``), then reused frame after frame."""

    def __init__(self, render: Render, lock: threading.Lock) -> None:
        self.render = render
        self.lock = lock
        self.renders = self.prerenders = 0
        self.threads = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="follow")

    def prefault(self) -> None:
        """Each render thread touches PREFAULT_BYTES, both at once, and frees them: the
        worker's malloc arena keeps them (worker/warmup.py ``tune_malloc``), so the first
        frames reuse memory already faulted in. A fresh page costs 5-40 us to fault in on a
        host still warming up, and a 6M frame needs ~11,000 of them: the first frames
        rendered 2-5x slower than the rest. Run for each series followed while no other
        renders: whatever the worker kept since its last render (pyramids, stage 1s) may have
        moved the heap top it takes fresh buffers from."""
        both = threading.Barrier(RENDER_THREADS)  # held together: two renders' peak
        for _ in range(RENDER_THREADS):
            self.threads.submit(_touch, both)

    def start(self, series: Series, key: str) -> None:
        """A render loop for ``series`` (its ``rendering`` count already taken)."""
        self._next(series, key, 0)

    def _next(self, series: Series, key: str, done_seq: int) -> None:
        """One step of a loop per task: the loops of several series take turns."""
        try:
            self.threads.submit(self._step, series, key, done_seq)
        except RuntimeError:  # the worker is exiting
            with self.lock:
                series.rendering -= 1

    def shown(self, series: Series, key: str, seq: int) -> Result | None:
        """Under ``lock``: frame ``seq`` of ``series`` already rendered with ``key``."""
        kept = series.shown
        return kept[2] if kept is not None and kept[:2] == (seq, key) else None

    def _step(self, series: Series, key: str, done_seq: int) -> None:
        """Render the newest frame as the last viewer asked, answer that viewer's waiting
        polls, and go on while newer frames complete (the ones in between are skipped). A
        viewer busy with the frame before finds the next one ready (``series.shown``). Up to
        RENDERS_PER_SERIES loops run per series however fast the detector writes: a frame
        that completes while one renders starts the next at once; each takes the newest frame
        nobody renders, and a poll is answered by whichever newer frame is ready first."""
        with self.lock:
            frame, seq, req = series.newest, series.seq, series.last_req
            paths = series.last_paths
            pending = [w for w in series.waiters if answers(w, key, seq)]
            ready = self.shown(series, key, seq)
            if ready is not None:  # the other loop rendered it: answer, nothing to draw
                series.waiters = [w for w in series.waiters if w not in pending]
                idle = not pending
            else:
                idle = frame is None or req is None or seq in series.in_render
                idle = idle or (seq == done_seq and not pending)
            if idle:
                series.rendering -= 1
                return
            if ready is None:
                series.in_render.add(seq)
        assert frame is not None  # not idle
        if ready is not None:
            deliver(frame, seq, pending, ready, Timings())
        else:
            assert req is not None  # not idle
            self._render(series, key, frame, seq, req, paths)
        self._next(series, key, seq)

    def _render(
        self,
        series: Series,
        key: str,
        frame: Frame,
        seq: int,
        req: Request,
        paths: tuple[str, ...] | None,
    ) -> None:
        clock, after = Timings(), AfterReply()
        result = render_once(self.render, req, frame, paths, clock, after)
        with self.lock:
            series.in_render.discard(seq)
            if isinstance(result, Result):
                self.prerenders += 1
                if series.shown is None or series.shown[0] < seq:
                    series.shown = (seq, key, result)
            mine = [w for w in series.waiters if answers(w, key, seq)]
            series.waiters = [w for w in series.waiters if w not in mine]
        self.count(result, mine)
        deliver(frame, seq, mine, result, clock)
        self._after(series, seq, after)

    def answer(self, series: Series, frame: Frame, seq: int, waiters: list[Waiter]) -> None:
        """Render ``frame`` once for ``waiters`` (same rendering fields) and answer each."""
        clock, after = Timings(), AfterReply()
        with self.lock:
            ready = self.shown(series, waiters[0].key, seq)
        if ready is not None:
            deliver(frame, seq, waiters, ready, clock)
            return
        result = render_once(self.render, waiters[0].req, frame, waiters[0].paths, clock, after)
        self.count(result, waiters)
        deliver(frame, seq, waiters, result, clock)
        self._after(series, seq, after)

    def _after(self, series: Series, seq: int, after: AfterReply) -> None:
        """The render's deferred work, its optional part only while no newer frame exists."""
        with self.lock:
            current = series.seq == seq
        after.run(optional=current)

    def count(self, result: Result | PyisError | None, waiters: list[Waiter]) -> None:
        if isinstance(result, Result) and waiters:
            with self.lock:
                self.renders += 1
