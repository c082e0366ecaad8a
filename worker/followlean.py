"""The render of a followed frame: the leanest way from a frame just written to its JPEG.

A frame followed live is new (nothing is cached), is shown once, and is superseded within a
frame time. The ``jpeg`` job's stage 1 would build and keep the frame's max-pyramid (a 6M frame's
levels: ~33 MB of memory never touched before per frame, until the LRU evicts) and go through
tier 2 (a Redis round trip, the cross-worker lock, an encoded write) before its reply. Here:
read, the level statistics and one pooling straight from the frame over the pyramid's boxes
(worker/leanreduce.py; the two at once on two cores when the pooling only reads the frame),
then the ``jpeg`` job's own stage 2 (``Pipeline.picture``): the picture
is that job's, pixel for pixel. Keeping the small stage-1 value for a later request (tier 1,
tier 2) comes after the reply, as optional work (worker/afterreply.py) that worker/follow.py
drops when a newer frame has superseded this one. Tier 1 holds the newest KEPT_FRAMES of them:
a followed frame is rarely asked for again once it has been superseded, and a collection's
frames would otherwise fill the LRU, evicting the pyramids of the frames a user browses.
"""

from __future__ import annotations

import threading
from collections import deque

from pyis_common.request import Request
from worker import formats, halves, levels, paths, reduce, sums
from worker.afterreply import later
from worker.cache import Key
from worker.jobs import Pipeline, Result, unchanged
from worker.leanreduce import reduce_like_pyramid
from worker.outcome import Stage1
from worker.pyramid import Pyramid, rule_for
from worker.timings import Timings

KEPT_FRAMES = 16  # followed frames whose stage 1 tier 1 holds: the newest (10 Hz: 1.6 s of them)


class Lean:
    """``render(req, clock)``: the ``jpeg`` job of a followed frame, for worker/follow.py."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self._kept: deque[Key] = deque()  # what tier 1 holds of ours, oldest first
        self._kept_lock = threading.Lock()  # the render loops keep from two threads

    def render(self, req: Request, clock: Timings) -> Result:
        pipe = self.pipe
        if sums.count(req) > 1:  # a sum of frames: the pipeline's own path
            return pipe.jpeg(req, clock)
        with paths.resolve(pipe.home, req.fn) as src:
            key = pipe.key(req, src)
            held = pipe.lru.get(key)
            if isinstance(held, Stage1):  # asked again (another viewer, a repeated poll)
                return pipe.picture(req, held, key, "lru", clock)
            if isinstance(pipe.lru.get(key.frame_key), Pyramid):
                return pipe.jpeg(req, clock)  # read before, as a picture: reduce its level
            stage1 = self._compute(req, src, key, clock)
            whole = unchanged(src, key)  # a file still being written is not kept
        result = pipe.picture(req, stage1, key, "file", clock)
        if whole:
            later(lambda: self._keep(key, stage1), optional=True)
        return result

    def _compute(self, req: Request, src: paths.Opened, key: Key, clock: Timings) -> Stage1:
        with clock.step("read"):
            frame = formats.read_frame(src, key.frame or None)
        saturation = reduce.saturation_level(frame)

        def statistics() -> levels.LevelStats:
            return levels.compute(frame, saturation)

        def pooled() -> reduce.Reduced:
            return reduce_like_pyramid(
                frame, req.xsize, req.ysize, req.zoom, req.segcol, req.segrow
            )

        with clock.step("reduce"):
            # both only read a frame without a mask of its own (a Pilatus frame): at once
            if rule_for(frame) != "mask" and frame.data.size >= halves.MIN_ITEMS:
                stats, reduced = halves.both(statistics, pooled)
            else:  # the statistics first: the pooling may mask the frame in place
                stats, reduced = statistics(), pooled()
        self.pipe.count(read=True)
        return Stage1(reduced, dict(frame.meta) | dict(reduced.stats), stats)

    def _keep(self, key: Key, stage1: Stage1) -> None:
        """For a later request of this frame at this size (a new contrast, another user of
        the ESAF): what the ``jpeg`` job would have kept, out of the heap the next renders
        take their buffers from (worker/offheap.py), in place of our oldest one. Its pages
        were freed a frame or so ago, and this host backs such pages still: a mapping of
        pages freed long ago (handed back to the host) cost ~3 ms to fill, not ~0.5 (timed in
        process by a one-off script)."""
        with self._kept_lock:
            self._kept.append(key)
            oldest = self._kept.popleft() if len(self._kept) > KEPT_FRAMES else None
        if oldest is not None:  # first: the pages it frees are the ones the copy gets
            self.pipe.lru.drop(lambda held: held == oldest)
        kept = stage1.off_heap()
        self.pipe.lru.put(key, kept, kept.nbytes)
        if self.pipe.tier2 is not None:
            self.pipe.tier2.put(key, (stage1.reduced, stage1.meta, stage1.level_stats))
