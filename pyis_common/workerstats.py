"""What a worker may report about itself: the one list the procmgr keeps as metric labels.

A worker is untrusted. Every name it sends would become a permanent Prometheus label and a
status field, so only the names declared here are kept, and only as plain integers.
"""

from __future__ import annotations

from typing import Any

# worker/cache.py (stage-1 LRU), worker/jobs.py, worker/tier2.py report these
CACHE_COUNTERS = frozenset(
    {
        "hits",
        "misses",
        "evictions",
        "bytes",
        "entries",
        "max_bytes",
        "stage1_computed",
        "frames_read",
        # worker/follow.py: followed directories, waiting polls, frames seen, renders made
        "watches",
        "followers",
        "follow_frames",
        "follow_renders",
        "follow_prerenders",
        "redis_hits",
        "redis_misses",
        "redis_errors",
        # worker/headroom.py: heap faulted in ahead, in all
        "headroom_refilled_bytes",
    }
)
MAX_COUNTER = 1 << 63  # a counter beyond an int64 is a lie, not a statistic


def clean_counters(raw: Any) -> dict[str, int] | None:
    """The known counters with integer values in [0, 2**63); None when ``raw`` is no dict."""
    if not isinstance(raw, dict):
        return None
    return {
        name: value
        for name, value in raw.items()
        if name in CACHE_COUNTERS and type(value) is int and 0 <= value < MAX_COUNTER
    }
