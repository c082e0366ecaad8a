"""Whether a session may add a request: its own share first, then the server's.

One worker serves one (user, ESAF); without a share per worker, 256 slow requests from one
user made every other user get ``busy:`` for as long as they ran. The share is
``session_max_in_flight``; ``index`` jobs (minutes each) have a small cap of their own,
``session_max_index``, and do not eat into the share of that session's image requests.
"""

from __future__ import annotations

from pyis_common import jobtypes
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Busy


def check_session_share(cfg: ProcmgrConfig, in_flight_types: list[str], job_type: str) -> None:
    """``in_flight_types``: the job types this session's worker holds now. Busy names the
    session, so its user knows it is their own load and not the server's."""
    indexing = sum(_long(t) for t in in_flight_types)
    if _long(job_type):
        if indexing >= cfg.session_max_index:
            raise Busy(f"this session already runs {indexing} index jobs; try again later")
    elif len(in_flight_types) - indexing >= cfg.session_max_in_flight:
        raise Busy(
            f"this session has {len(in_flight_types) - indexing} requests in flight; try again"
        )


def check_server(cfg: ProcmgrConfig, in_flight: int) -> None:
    if in_flight >= cfg.max_in_flight:
        raise Busy("the image server is busy; try again")


def _long(job_type: str) -> bool:
    """A job of minutes (index): counted against session_max_index, not the share."""
    return jobtypes.of(job_type).deadline is jobtypes.Deadline.LONG_JOB
