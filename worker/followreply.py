"""The replies of the ``newest`` job (worker/follow.py): the frame's ``jpeg`` request with the
viewer's rendering fields, a read that finds a frame still short retried, "nothing new"."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pyis_common.errors import PyisError
from pyis_common.request import Request, parse
from worker.followed import Frame
from worker.jobs import Result
from worker.timings import Timings

READ_TRIES, RETRY_S = 4, 0.05  # a frame found short on reading: ~150 ms for its writer
# read again: a frame still short (incomplete), and an HDF5 data file caught while its writer
# appends the next frame (not SWMR: its index in flux reads as corrupt, unsupported)
RETRIED = frozenset({"incomplete", "unsupported"})
# fields of a newest request that do not change the picture (the rest must match to share)
NOT_RENDERING = frozenset({"type", "fn", "frame", "seq", "wait", "pid", "auth", "esaf", "tag"})


def as_jpeg(req: Request, frame: Frame) -> Request:
    """The ``jpeg`` request of ``frame`` with ``req``'s rendering fields."""
    fields = {k: v for k, v in req.raw.items() if k not in NOT_RENDERING}
    return parse(fields | {"type": "jpeg", "fn": frame.fn, "frame": frame.frame}, need_pid=False)


def rendering_key(req: Request, paths: tuple[str, ...] | None) -> str:
    """Viewers whose keys are equal share one rendering (and one path binding)."""
    fields = {k: v for k, v in req.raw.items() if k not in NOT_RENDERING}
    return json.dumps([fields, paths], sort_keys=True)


def render_complete(
    render: Callable[[Request, Timings], Result], req: Request, clock: Timings
) -> Result:
    """A frame found still being written (``incomplete:``, or unreadable while its data file
    grows) is read again a few times, then that error is the answer: never a picture of half
    a frame."""
    for attempt in range(READ_TRIES):
        try:
            return render(req, clock)
        except PyisError as exc:
            if exc.code not in RETRIED or attempt == READ_TRIES - 1:
                raise
        time.sleep(RETRY_S)
    raise AssertionError("unreachable")


def nothing_new() -> Result:
    """The wait passed with no newer frame: a success without a JPEG."""
    return Result(job={"newest": None}, meta={})


def with_newest(result: Result, newest: dict[str, Any]) -> Result:
    return Result(
        job=result.job | {"newest": newest},
        meta=result.meta,
        payloads=result.payloads,
        tier=result.tier,
    )
