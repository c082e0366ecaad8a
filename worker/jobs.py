"""Run one job inside the worker: validate, resolve the path, read, reduce, render.

The job dict comes from the procmgr, which is more trusted than the web side but still parsed
again here: the worker must not crash or misbehave on any input. Stage 1 (read + reduce) is
cached per worker: each frame read is kept as a max-pyramid (worker/pyramid.py), so a new size,
zoom or segment of it is reduced from a level without reading the file again, and each
reduction is kept too, so a new contrast costs stage 2 only (levels, colours, JPEG).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pyis_common.errors import BadRequest, Unsupported
from pyis_common.request import Request, parse
from worker import (
    counts,
    formats,
    index,
    indexjob,
    levelrule,
    levels,
    listing,
    paths,
    pixels,
    reduce,
    render,
    spots,
    sums,
    tiles,
)
from worker.cache import LRU, FrameKey, Key, SingleFlight, default_bytes, superseded
from worker.outcome import Result, Stage1
from worker.pyramid import Pyramid
from worker.tier2 import RedisTier
from worker.timings import Timings, since_ms

JPEG_CACHE_BYTES = 32 << 20  # ~600 JPEGs of 512 px: the recent views of one user


class Pipeline:
    """One per worker: the ESAF home, the encoder settings and the stage-1 cache."""

    def __init__(
        self,
        home: str,
        esaf: int = 0,
        quality: int = 90,
        cache_bytes: int | None = None,
        levels: str = "auto",
    ) -> None:
        self.home = home
        self.esaf = esaf
        self.quality = quality
        self.level_rule = levels  # the configured rule for automatic levels: "auto" or "c"
        # tier 1 holds both: a Stage1 under its Key, a frame's Pyramid under its FrameKey
        self.lru: LRU[Stage1 | Pyramid] = LRU(
            default_bytes() if cache_bytes is None else cache_bytes
        )
        self.flights: SingleFlight[tuple[Stage1, str]] = SingleFlight()
        self.reads: SingleFlight[Pyramid] = SingleFlight()  # one read per frame, not per size
        self.tier2: RedisTier | None = None  # set when the procmgr hands us a credential
        # exact repeats (same image, levels and label) skip stage 2 too: a browser re-asking
        # for what it just showed costs a dict lookup, not a JPEG encode
        self.jpegs: LRU[tuple[bytes, dict[str, Any]]] = LRU(JPEG_CACHE_BYTES)
        self.stage1_computed = self.frames_read = 0
        self._count_lock = threading.Lock()
        self.index_settings = index.IndexSettings()  # the procmgr's config message fills it

    def run(
        self,
        job: Any,
        progress: Callable[[str], None] | None = None,
        clock: Timings | None = None,
    ) -> Result:
        """One job; ``progress`` receives the progress lines of long jobs (index), ``clock``
        the time of each step (the result's ``timings``)."""
        clock = clock or Timings()
        result = self._run(job, progress, clock)
        result.timings = clock.ms
        return result

    def _run(self, job: Any, progress: Callable[[str], None] | None, clock: Timings) -> Result:
        if not isinstance(job, dict):
            raise BadRequest("job must be a JSON object")
        req = parse(job, need_pid=False)
        handler = HANDLERS.get(req.type)
        if handler is None:  # status (the procmgr's), newest (the follower's)
            raise Unsupported(f"job type '{req.type}' is not run by a worker's pipeline")
        return handler(self, req, clock, progress or (lambda _line: None))

    def meta(self, req: Request, clock: Timings) -> Result:
        with paths.resolve(self.home, req.fn) as src, clock.step("read"):
            return Result(job={}, meta=formats.read_meta(src, req.frame_asked))

    def spots(self, req: Request, clock: Timings) -> Result:
        """Counted on the fixed spots reduction (the frame's own width when narrower, so a
        512 px detector is not sampled up), never on the request's xsize."""
        stage1, _, tier = self.stage1(spots.full_image(req), clock)
        width = stage1.meta.get("x_pixels_in_detector")
        if isinstance(width, int) and 0 < width < spots.WIDTH:
            stage1, _, tier = self.stage1(spots.full_image(req, width), clock)
        with clock.step("map"):
            decided, meta = spots.reply(stage1.reduced, stage1.meta)
        return Result(job=decided, meta=meta, tier=tier)

    def jpeg(self, req: Request, clock: Timings | None = None) -> Result:
        clock = clock or Timings()
        if sums.count(req) > 1:  # k frames added before reduction (worker/sums.py)
            return sums.jpeg(self, req, clock)
        stage1, key, tier = self.stage1(req, clock)
        return self.picture(req, stage1, key, tier, clock)

    def picture(self, req: Request, stage1: Stage1, key: Key, tier: str, clock: Timings) -> Result:
        """Stage 2 of ``req`` from its stage 1: levels, colours and the JPEG, or the same
        picture from the JPEG cache (a followed frame comes here too: worker/followlean.py)."""
        t0 = time.perf_counter()
        choice = levelrule.choose(
            req, stage1.level_stats, stage1.reduced.stats, stage1.meta.get("auto_levels"),
            self.level_rule, levelrule.zoomed(req), stage1.reduced.data.shape,
        )  # fmt: skip
        white, black, planes = choice.white, choice.black, choice.planes
        label = req.label
        if stage1.meta.get("first_frame") != stage1.meta.get("last_frame"):
            label = f"{label} {stage1.meta.get('frame')}".lstrip()  # as the C server drew it
        look = (planes is not None, req.scale, req.colormap)
        jkey = (key, white, black, look, label, req.label_height, self.quality)
        hit = self.jpegs.get(jkey)
        if hit is None:
            # explicit levels (black >= 1, white >= 0) make render() use exactly these
            hit = render.render(
                stage1.reduced, black, white, label, req.label_height, self.quality,
                clock=clock, planes=planes and planes(), scale=req.scale, colormap=req.colormap,
            )  # fmt: skip
            self.jpegs.put(jkey, hit, len(hit[0]) + 512)
        clock.add("map", since_ms(t0) - clock.ms["encode"])
        data, decided = hit
        return Result(job=decided, meta=stage1.meta, payloads=[data], tier=tier)

    def stage1(self, req: Request, clock: Timings | None = None) -> tuple[Stage1, Key, str]:
        """Stage 1 of the file ``req.fn`` names, resolved and opened once: every reader reads
        that open file, and the key holds its ``fstat`` identity (a name swapped meanwhile
        changes neither what is read nor what it is cached as)."""
        with paths.resolve(self.home, req.fn) as src:
            return self._stage1(req, src, clock or Timings())

    def _stage1(self, req: Request, src: paths.Opened, clock: Timings) -> tuple[Stage1, Key, str]:
        key = self.key(req, src)
        cached = self.lru.get(key)
        if isinstance(cached, Stage1):
            return cached, key, "lru"
        (value, tier), led = self.flights.run(key, lambda: self._tiered(req, src, key, clock))
        return value, key, tier if led else "flight"

    def key(self, req: Request, src: paths.Opened) -> Key:
        st = src.stat()
        return Key(
            self.esaf,
            src.name,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            req.frame_asked or 0,  # 0: the file's first frame (not always 1: Eiger data files)
            req.zoom,
            req.segcol,
            req.segrow,
            req.xsize,
            req.ysize,
        )

    def pyramid(self, req: Request, clock: Timings) -> tuple[Pyramid, FrameKey, str]:
        """The frame's pyramid (tiles and pixels cut windows of its levels), from tier 1 or
        read once across this worker's threads; its key; and where it came from. A caller
        that builds a level resizes the LRU entry (``lru.resize(key, pyramid.nbytes)``)."""
        with paths.resolve(self.home, req.fn) as src:
            key = self.key(req, src)
            fkey = key.frame_key
            cached = self.lru.get(fkey)
            if isinstance(cached, Pyramid):
                return cached, fkey, "pyramid"
            pyramid, led = self.reads.run(fkey, lambda: self._read(src, fkey, key, clock))
            return pyramid, fkey, "file" if led else "flight"

    def _tiered(
        self, req: Request, src: paths.Opened, key: Key, clock: Timings
    ) -> tuple[Stage1, str]:
        """The frame's pyramid in tier 1, else tier 2, else read the file (once across this
        ESAF's workers); then fill tier 1. A held pyramid beats a Redis round trip."""
        tier2 = self.tier2
        pyramid = self.lru.get(key.frame_key)
        if isinstance(pyramid, Pyramid):
            stage1, tier = self._reduce(pyramid, req, key, clock), "pyramid"
            if tier2 is not None:
                tier2.put(key, _pair(stage1))  # for this ESAF's other users
        elif tier2 is None:
            stage1, tier = self._compute(req, src, key, clock), "file"
        else:
            looked = tier2.lookup(key)  # one round trip: the entry, or the producer's lock
            if looked.value is not None:
                stage1, tier = Stage1(*looked.value), "redis"
            else:
                pair, tier = tier2.produce(
                    key,
                    lambda: _pair(self._compute(req, src, key, clock)),
                    cacheable=lambda: unchanged(src, key),
                    looked=looked,
                )
                stage1 = Stage1(*pair)
        if tier != "file" or unchanged(src, key):  # a file still being written is not cached
            self.lru.put(key, stage1, stage1.nbytes)
        return stage1, tier

    def _compute(self, req: Request, src: paths.Opened, key: Key, clock: Timings) -> Stage1:
        """Read the frame into its pyramid (once across this worker's threads), reduce it."""
        fkey = key.frame_key
        pyramid, _ = self.reads.run(fkey, lambda: self._read(src, fkey, key, clock))
        return self._reduce(pyramid, req, key, clock)

    def _read(self, src: paths.Opened, fkey: FrameKey, key: Key, clock: Timings) -> Pyramid:
        self.lru.drop(superseded(fkey))  # first: the new frame reuses their memory
        with clock.step("read"):  # frame 0 in a key: the file's first (not 1 for every file)
            frame = formats.read_frame(src, fkey.frame or None)
        with clock.step("reduce"):  # masking the frame in place is the first step of pooling
            # the level statistics first: the pyramid masks a scratch frame in place
            stats = levels.compute(frame, reduce.saturation_level(frame))
            pyramid = Pyramid(frame, dict(frame.meta))
        pyramid.level_stats = stats
        if unchanged(src, key):  # a file still being written is not cached
            self.lru.put(fkey, pyramid, pyramid.nbytes)
        self.count(read=True, computed=False)
        return pyramid

    def _reduce(self, pyramid: Pyramid, req: Request, key: Key, clock: Timings) -> Stage1:
        with clock.step("reduce"):
            reduced = pyramid.reduce(req.xsize, req.ysize, req.zoom, req.segcol, req.segrow)
        self.lru.resize(key.frame_key, pyramid.nbytes)  # it may have built a level
        self.count()
        return Stage1(reduced, pyramid.meta | dict(reduced.stats), pyramid.level_stats)

    def count(self, read: bool = False, computed: bool = True) -> None:
        """A frame read, a stage 1 computed; jobs run on several threads (+= is not atomic)."""
        with self._count_lock:
            self.frames_read += read
            self.stage1_computed += computed

    def counters(self) -> dict[str, int]:
        mine = {"stage1_computed": self.stage1_computed, "frames_read": self.frames_read}
        out = self.lru.counters() | mine
        return out | self.tier2.counters() if self.tier2 is not None else out


Handler = Callable[[Pipeline, Request, Timings, Callable[[str], None]], Result]
# what runs each job type the job table (pyis_common/jobtypes.py) gives to the pipeline; a
# test checks that the two agree
HANDLERS: dict[str, Handler] = {
    "jpeg": lambda pipe, req, clock, _progress: pipe.jpeg(req, clock),
    "spots": lambda pipe, req, clock, _progress: pipe.spots(req, clock),
    "meta": lambda pipe, req, clock, _progress: pipe.meta(req, clock),
    "index": lambda pipe, req, _clock, progress: indexjob.run(pipe, req, progress),
    "list": lambda pipe, req, _clock, _progress: listing.run(pipe.home, req),
    "tile": lambda pipe, req, clock, _progress: tiles.run(pipe, req, clock),
    "pixels": lambda pipe, req, clock, _progress: pixels.run(pipe, req, clock),
    "counts": lambda pipe, req, clock, _progress: counts.run(pipe, req, clock),
}


def _pair(stage1: Stage1) -> tuple[reduce.Reduced, dict[str, Any], levels.LevelStats | None]:
    return stage1.reduced, stage1.meta, stage1.level_stats


def unchanged(src: paths.Opened, key: Key) -> bool:
    """The open file still has the size and mtime it had when the key was made."""
    try:
        st = src.stat()
    except OSError:
        return False
    return (st.st_ino, st.st_size, st.st_mtime_ns) == (key.ino, key.size, key.mtime_ns)
