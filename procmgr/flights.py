"""What the procmgr loop holds per request: waiting for its session, or in flight at a worker."""

from __future__ import annotations

from dataclasses import dataclass

from authsign.compat import Access
from procmgr.workers import Worker
from pyis_common.request import Request


@dataclass
class Pending:
    """A request waiting for its session lookup (on a thread; the loop carries on)."""

    envelope: list[bytes]
    req: Request
    t0: float
    deadline: float
    t_lookup: float  # when the lookup was asked: the start of timings_ms["access"]
    generation: int = 0  # the session memo's when it was asked (procmgr/sessionmemo.py)


@dataclass
class InFlight:
    rid: int
    envelope: list[bytes]
    req: Request
    worker: Worker
    deadline: float
    t0: float
    access_ms: float = 0.0  # session lookup, access check and identity, for timings_ms
    grant: Access | None = None  # what the access object granted (a path-bound token's audit)
