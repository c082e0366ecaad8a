"""Rendering a followed frame once for every poll waiting on it (worker/follow.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyis_common.errors import PyisError
from pyis_common.request import Request
from worker import bound
from worker import followreply as reply
from worker.followed import Frame
from worker.followstate import Waiter
from worker.jobs import Result
from worker.timings import Timings

log = logging.getLogger("worker")


def render_once(
    render: Callable[[Request, Timings], Result],
    req: Request,
    frame: Frame,
    paths: tuple[str, ...] | None,
    clock: Timings,
) -> Result | PyisError | None:
    """``frame`` rendered as ``req`` asks, under the path binding ``paths``; the error a
    client may see, or None for an internal failure (logged, never raised: a caller that
    marked its series as rendering must always get to unmark it)."""
    try:
        with bound.bound(paths):
            return reply.render_complete(render, reply.as_jpeg(req, frame), clock)
    except PyisError as exc:
        return exc
    except Exception:
        log.exception("follow: rendering %s failed", frame.fn[:200])
        return None


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
