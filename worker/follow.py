"""The ``newest`` job: a long-poll for the newest complete frame of a series being collected.

One inotify instance per worker and one watch per followed directory, shared by every viewer
of it (``watches`` in the worker's counters); one thread reads the events. A waiting request
holds no job thread: it is a :class:`Waiter` until a frame completes or its wait passes. Then
the newest frame is rendered once per distinct set of rendering fields (by the leanest path:
worker/followlean.py; the newest rendering is kept, so a poll that comes after it is answered
at once) and every waiter of that set is answered; frames that completed in between are
skipped. Nothing new within the wait is a success reply whose job says
``"newest": null`` and carries no JPEG.

A frame is offered only once complete (worker/followed.py). A read that still finds it short
(``incomplete:``, a writer that closed it early) is retried a few times, then answered with
that retryable code.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from concurrent.futures import Executor
from typing import Any

from inotify_simple import INotify, flags

from pyis_common.errors import Busy, NotFound, PyisError
from pyis_common.request import parse
from worker import followreply as reply
from worker.followed import Frame, Target, target
from worker.followrender import Render, Renderer, deliver
from worker.followstate import Done, Series, Waiter, answers, completed_frames, next_seq
from worker.timings import Timings

log = logging.getLogger("worker")
WATCH_MASK = flags.CLOSE_WRITE | flags.MOVED_TO | flags.MODIFY | flags.DELETE_SELF | flags.MOVE_SELF
MAX_SERIES = 64  # followed series per worker (one user in one ESAF)
IDLE_S = 30.0  # a series nobody asked about for this long loses its watch
PRERENDER_S = 5.0  # frames completing this soon after a poll are rendered before it returns
LOOP_MAX_S = 1.0
RENDERS_PER_SERIES = 1  # frames of one series rendered at once. One render on both cores
# (the CBF decode in halves, the level statistics beside the pooling) beat two renders side by
# side at 100 Hz on 2 cores (bench/live.py, 2026-12-02 09:15, load 0.0-0.4: latency p50 23 vs
# 30 ms, render 15.5 vs 21.7 ms; again 2026-12-04 with one malloc arena: 18 vs 23 ms, and 27-31
# with the second render's two-core steps waiting for the first's); an Eiger series renders one
# at a time anyway (h5py holds one lock around every HDF5 call)


class Follows:
    """One per worker. ``render(req, clock)`` is a followed frame's jpeg job
    (worker/followlean.py); the render loops run it on their own threads, ``pool`` (the
    job threads) for a poll that finds a frame nobody renders for its fields."""

    def __init__(self, home: str, render: Render, pool: Executor):
        self.home = home
        self.pool = pool
        self.inotify: INotify | None = None  # made by the first follower: most workers never
        self.series: dict[tuple[Any, ...], Series] = {}
        self.lock = threading.Lock()
        self.renderer = Renderer(render, self.lock)
        self.last_seq = 0
        self.frames_seen = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _started(self) -> INotify:
        """The inotify instance and its thread, started once (under ``self.lock``)."""
        if self.inotify is None:
            self.inotify = INotify()
            threading.Thread(target=self._loop, args=(self.inotify,), daemon=True).start()
        return self.inotify

    def _wake(self) -> None:
        """A new waiter may have the soonest deadline: the event thread re-reads them."""
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already awake-pending

    # -- requests ---------------------------------------------------------------------------
    def submit(
        self, job: Any, clock: Timings, done: Done, paths: tuple[str, ...] | None = None
    ) -> None:
        """Answer now (a newer frame than the client saw, or no wait) or park a waiter.
        ``paths``: the job's path binding, also set for this thread (the directory is
        checked against it here, every frame again when it is rendered)."""
        try:
            req = parse(job, need_pid=False)
            series = self._series(target(self.home, req.fn))
        except PyisError as exc:
            done(exc)
            return
        waiter = Waiter(req, clock, done, 0.0, paths)
        with self.lock:
            if not series.rendering:  # a running loop keeps the rendering it started with
                series.last_req, series.last_paths = req, paths
            series.used = time.monotonic()
            newest, seq = series.newest, series.seq
            newer = newest is not None and (seq > req.seq or req.seq > time.monotonic_ns() // 1000)
            # (a seq in the future is not a number this host gave out: start over)
            ready = self.renderer.shown(series, waiter.key, seq) if newer else None
            looped = (
                series.rendering and req.wait_s > 0 and answers(waiter, self._loop_key(series), seq)
            )
            if not newer or (looped and ready is None):
                if req.wait_s <= 0:
                    newest = None
                else:  # a render loop will answer it, or the next frame will
                    waiter.deadline = time.monotonic() + req.wait_s
                    series.waiters.append(waiter)
                    self._wake()
                    return
        if newest is None:
            done(reply.nothing_new())
        elif ready is not None:  # the newest frame is rendered already: answered at once
            deliver(newest, seq, [waiter], ready, Timings())
        else:
            self.pool.submit(self.renderer.answer, series, newest, seq, [waiter])

    def _series(self, tgt: Target) -> Series:
        with self.lock:
            known = self.series.get(tgt.key)
            if known is not None:
                tgt.close()
                return known
            if len(self.series) >= MAX_SERIES:
                tgt.close()
                raise Busy(f"this session already follows {MAX_SERIES} series")
            try:
                wd = self._started().add_watch(tgt.folder.path, WATCH_MASK)
            except OSError as exc:
                tgt.close()
                raise Busy(f"cannot watch this directory ({os.strerror(exc.errno or 0)})") from None
            if not any(s.rendering for s in self.series.values()):  # (a render keeps it warm)
                self.renderer.prefault()  # while the first frame is still being collected
            series = Series(tgt, wd)
            self.series[tgt.key] = series
        frame = tgt.newest_settled()  # outside the lock: it reads the directory
        with self.lock:
            if frame is not None and series.newest is None:
                series.newest, series.seq = frame, self._next_seq()
        return series

    def _next_seq(self) -> int:
        self.last_seq = next_seq(self.last_seq)
        return self.last_seq

    # -- the event thread -------------------------------------------------------------------
    def _loop(self, inotify: INotify) -> None:
        poller = select.poll()
        poller.register(inotify.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            try:
                ready = dict(poller.poll(self._timeout_s() * 1000))
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                events = inotify.read(timeout=0) if inotify.fileno() in ready else []
                self._events(events, time.perf_counter())
                self._expire(time.monotonic())
            except Exception:
                log.exception("follow: the event loop failed; it goes on")

    def _timeout_s(self) -> float:
        with self.lock:
            deadlines = [w.deadline for s in self.series.values() for w in s.waiters]
        soonest = min(deadlines, default=time.monotonic() + LOOP_MAX_S) - time.monotonic()
        return min(max(soonest, 0.001), LOOP_MAX_S)

    def _events(self, events: list[Any], seen: float) -> None:
        """The last frame each series completed in this batch; the ones before are skipped."""
        by_wd: dict[int, list[Series]] = {}
        with self.lock:
            for series in self.series.values():
                by_wd.setdefault(series.wd, []).append(series)
        latest, gone = completed_frames(events, by_wd, seen)
        for series, frame in latest:
            self._complete(series, frame)
        for wd in gone:
            self._drop([s for s in by_wd.get(wd, [])], NotFound("the followed directory is gone"))

    def _complete(self, series: Series, frame: Frame) -> None:
        with self.lock:
            if series.newest is not None and series.newest.fn == frame.fn:
                if series.target.kind == "eiger" and frame.frame <= series.newest.frame:
                    return  # a data file written to, but no frame more on disk
            self.frames_seen += 1
            series.newest, series.seq = frame, self._next_seq()
            seq = series.seq
            key = self._loop_key(series)
            others = [w for w in series.waiters if w.key != key]
            series.waiters = [w for w in series.waiters if w not in others]
            limit = 1 if series.target.kind == "eiger" else RENDERS_PER_SERIES
            start = key is not None and series.rendering < limit
            series.rendering += start
        if start and key is not None:  # start implies a key
            self.renderer.start(series, key)
        groups: dict[str, list[Waiter]] = {}
        for waiter in others:
            groups.setdefault(waiter.key, []).append(waiter)
        for group in groups.values():
            self.pool.submit(self.renderer.answer, series, frame, seq, group)

    def _loop_key(self, series: Series) -> str | None:
        """Under ``self.lock``: the rendering the series' render loop makes, if a viewer
        asked within ``PRERENDER_S`` (None: no loop, nobody is looking)."""
        if series.last_req is None or time.monotonic() - series.used >= PRERENDER_S:
            return None
        return reply.rendering_key(series.last_req, series.last_paths)

    def _expire(self, now: float) -> None:
        """Waiters whose wait passed get "nothing new"; idle series lose their watch."""
        passed: list[Waiter] = []
        idle: list[Series] = []
        with self.lock:
            for series in self.series.values():
                keep = [w for w in series.waiters if w.deadline > now]
                passed += [w for w in series.waiters if w.deadline <= now]
                series.waiters = keep
                if not keep and now - series.used > IDLE_S:
                    idle.append(series)
        for waiter in passed:
            waiter.done(reply.nothing_new())
        self._drop(idle, None)

    def _drop(self, dropped: list[Series], why: PyisError | None) -> None:
        waiters: list[Waiter] = []
        with self.lock:
            for series in dropped:
                if self.series.pop(series.target.key, None) is None:
                    continue
                waiters += series.waiters
                if self.inotify and not any(s.wd == series.wd for s in self.series.values()):
                    try:
                        self.inotify.rm_watch(series.wd)
                    except OSError:
                        pass  # the kernel dropped it already (directory removed)
                series.target.close()
        for waiter in waiters:
            waiter.done(why or reply.nothing_new())

    def counters(self) -> dict[str, int]:
        with self.lock:
            return {
                "watches": len({s.wd for s in self.series.values()}),
                "followers": sum(len(s.waiters) for s in self.series.values()),
                "follow_frames": self.frames_seen,
                "follow_renders": self.renderer.renders,
                "follow_prerenders": self.renderer.prerenders,
            }
