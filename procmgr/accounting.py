"""Per-request bookkeeping: the one log line, and the metrics (procmgr/metrics.py).

The log line names the client by its route id and the session by a hash, never the session id
itself (it is what names an access object). A worker's answer is logged just after its reply
leaves, in the same loop turn (the line and the metrics cost the loop ~0.05-0.1 ms the image
need not wait for): whoever sees such a reply finds its line once the loop has taken one more
turn, e.g. after any later request. Every other outcome (the procmgr's own answers, errors,
refusals) is logged before its reply leaves (stderr is unbuffered).
"""

from __future__ import annotations

import hashlib
import logging
import time

from procmgr.metrics import Metrics
from pyis_common.errors import known_code
from pyis_common.request import Request

log = logging.getLogger("procmgr")
FN_LOGGED = 200  # characters of a file name in the request log line (a name may be 4096)


class Accounting:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def record(
        self,
        envelope: list[bytes],
        req: Request | None,
        code: str,
        t0: float,
        why: str = "",
        tier: str = "",
    ) -> None:
        seconds = time.monotonic() - t0
        jtype = req.type if req else "-"
        code = "ok" if code == "ok" else known_code(code)  # labels come from a fixed set
        self.metrics.observe(jtype, code, seconds)
        session = hashlib.sha256(req.pid.encode()).hexdigest()[:10] if req else "-"
        client = envelope[1].hex()[:10] if len(envelope) > 1 else "-"
        log.info(
            "request client=%s session=%s esaf=%s type=%s%s outcome=%s ms=%.1f%s%s",
            client,
            session,
            req.esaf if req else "-",
            jtype,
            file_words(req),
            code,
            seconds * 1000,
            f" why={why[:120]!r}" if why and code != "ok" else "",
            f" tier={tier[:10]}" if tier else "",
        )


def file_words(req: Request | None) -> str:
    """`` fn='...' frame=N`` of a request that names a file: quoted and escaped (a name is
    data: a newline in it cannot start a forged log line), cut at FN_LOGGED characters."""
    if req is None or not req.fn:
        return ""
    frame = f" frame={req.frame}" if req.frame_asked is not None else ""
    return f" fn={req.fn[:FN_LOGGED]!r}{frame}"
