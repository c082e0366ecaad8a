"""Milliseconds per step of one request: the worker's part of the reply's ``timings_ms``.

Users, front-ends and benchmarks see where a request's time went (queue, read, reduce, map,
encode) without a profiler; the procmgr adds ``access`` and ``total`` as it saw them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STEPS = ("queue", "read", "reduce", "map", "encode", "worker")


def since_ms(t0: float) -> float:
    """Milliseconds from ``t0`` (a ``time.perf_counter()``) to now."""
    return (time.perf_counter() - t0) * 1000.0


class Timings:
    """Every step present (0.0 when it did not run, e.g. ``read`` on a cache hit)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = dict.fromkeys(STEPS, 0.0)

    def add(self, step: str, ms: float) -> None:
        self.ms[step] += max(ms, 0.0)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, since_ms(t0))

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.ms.items()}
