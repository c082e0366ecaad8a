"""One audit line per refusal of a path-bound token: which token, bound to what, asking what.

The token is named by its ``kid`` and ``jti``, never by its bytes; the prefixes it carried and
the file asked for are data, so they are JSON-quoted (a crafted name cannot forge a line).
"""

from __future__ import annotations

import json
import logging

from authsign.compat import Access
from pyis_common.request import Request

log = logging.getLogger("procmgr.audit")


def refused(access: Access, req: Request, why: str) -> None:
    log.warning(
        "refused path-bound token kid=%s jti=%s paths=%s user=%s esaf=%d type=%s fn=%s: %s",
        json.dumps(access.kid),
        json.dumps(access.jti),
        json.dumps(list(access.paths or ())),
        json.dumps(access.user),
        req.esaf,
        req.type,
        json.dumps((req.fn or "")[:200]),
        why[:200],
    )
