"""What a job produces: a stage-1 value (cached: read + reduce) and a job's result (replied)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from worker import levels, offheap, reduce


@dataclass(frozen=True)
class Stage1:
    reduced: reduce.Reduced
    meta: dict[str, Any]
    level_stats: levels.LevelStats | None = None  # the whole frame's, for automatic levels

    @property
    def nbytes(self) -> int:
        r = self.reduced
        grids = 0 if self.level_stats is None else 2 * self.level_stats.background.nbytes
        return r.data.nbytes + r.valid.nbytes + r.saturated.nbytes + grids + 1024

    def off_heap(self) -> Stage1:
        """The same value with its pixel arrays out of the malloc heap (worker/offheap.py),
        or this one where they stay in it: for one kept while renders keep taking and
        freeing frame-sized buffers."""
        r = self.reduced
        copies = offheap.copies((r.data, r.valid, r.saturated))
        if copies is None:
            return self
        data, valid, saturated = copies
        return replace(self, reduced=replace(r, data=data, valid=valid, saturated=saturated))


@dataclass
class Result:
    job: dict[str, Any]  # what the server decided (wval_used, bval_used, xsize, ysize)
    meta: dict[str, Any]
    payloads: list[bytes] = field(default_factory=list)
    tier: str = "none"  # where stage 1 came from: lru, flight (shared), pyramid, redis, file
    timings: dict[str, float] = field(default_factory=dict)  # ms per step (worker/timings.py)
