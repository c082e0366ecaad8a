"""What the ``newest`` job (worker/follow.py) keeps per followed series and per waiting poll."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inotify_simple import flags

from pyis_common.errors import PyisError
from pyis_common.request import Request
from worker import followreply as reply
from worker.followed import Frame, Target
from worker.jobs import Result
from worker.timings import Timings

Done = Callable[[Result | PyisError | None], None]  # the answer; None: an internal failure


@dataclass
class Waiter:
    req: Request
    clock: Timings
    done: Done
    deadline: float  # time.monotonic()
    paths: tuple[str, ...] | None = None  # a path-bound token's prefixes (worker/bound.py)

    @property
    def key(self) -> str:
        """Waiters with equal keys share one rendering."""
        return reply.rendering_key(self.req, self.paths)


@dataclass
class Series:
    target: Target
    wd: int
    newest: Frame | None = None
    seq: int = 0
    waiters: list[Waiter] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)
    last_req: Request | None = None  # the rendering a viewer asked for last (prerendered)
    last_paths: tuple[str, ...] | None = None  # and that viewer's path binding
    rendering: int = 0  # render loops running (worker/follow.py _render_loop)
    in_render: set[int] = field(default_factory=set)  # the seqs they render now
    shown: tuple[int, str, Result] | None = None  # the newest rendered: seq, rendering, JPEG


def next_seq(last: int) -> int:
    """Increasing across watches and worker restarts on this host: microseconds of the
    system's monotonic clock (a client's number from elsewhere is in the future: start over)."""
    return max(last + 1, time.monotonic_ns() // 1000)


def answers(waiter: Waiter, key: str | None, seq: int) -> bool:
    """The render loop of ``key`` answers ``waiter`` with the frame numbered ``seq``."""
    return key is not None and waiter.req.seq < seq and waiter.key == key


def completed_frames(
    events: list[Any], by_wd: dict[int, list[Series]], seen: float
) -> tuple[list[tuple[Series, Frame]], set[int]]:
    """The last frame each series completed in one batch of inotify events (the ones before
    it are skipped; each file is looked at once), and the watches whose directory went."""
    touched: dict[tuple[int, str], tuple[Series, bool]] = {}  # in the order last touched
    gone: set[int] = set()
    for event in events:
        if event.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF):
            gone.add(event.wd)
            continue
        written = bool(event.mask & (flags.CLOSE_WRITE | flags.MOVED_TO))
        for series in by_wd.get(event.wd, []):
            _, before = touched.pop((id(series), event.name), (series, False))
            touched[(id(series), event.name)] = (series, written or before)
    latest: dict[int, tuple[Series, Frame]] = {}
    for (_, name), (series, written) in touched.items():
        frame = series.target.completed(name, seen, written)
        if frame is not None:
            latest[id(series)] = (series, frame)
    return list(latest.values()), gone
