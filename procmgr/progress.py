"""Progress of long jobs (index), published on the web host's Redis for the front-end.

The channel is derived from the session and the request's ``tag`` (never an address the client
chose, as the C server's progressAddress was): ``pyis:progress:<sha256(pid)[:16]>:<tag>``. The
hash keeps the session id itself off the pub/sub bus. Publishing is best effort, off the loop
and bounded like a session lookup (procmgr/sessions.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pyis_common.protocol import progress_channel
from pyis_common.request import Request


def channel(pid: str, tag: Any) -> str:
    """The client's channel name (one definition, in pyis_common.protocol); a tag that is not a
    string is named by its compact JSON."""
    text = tag if isinstance(tag, str) else json.dumps(tag, sort_keys=True, separators=(",", ":"))
    return progress_channel(pid, text)


class ProgressChannel:
    def __init__(self, send: Callable[[str, str], None]) -> None:
        self.send = send  # (channel, payload); never blocks

    def publish(self, req: Request, message: dict[str, Any]) -> None:
        tag = req.raw.get("tag")
        payload = json.dumps(message | {"tag": tag}, sort_keys=True, separators=(",", ":"))
        self.send(channel(req.pid, tag), payload)
