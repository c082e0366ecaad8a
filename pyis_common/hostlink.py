"""The application-level protocol on the proxy <-> procmgr link (the zguide's MDP.py for us).

ZMTP heartbeats (pyis_common/zmtplink.py) drop a dead TCP connection, but they cannot say whether
the procmgr behind it takes work, nor tell the proxy which of its requests died with a host.
So, as in the guide's Paranoid Pirate and Majordomo patterns:

- each procmgr sends every proxy a HEARTBEAT every ``HEARTBEAT_INTERVAL_S``, carrying its
  capacity (how many requests that proxy may have in flight on it; 0 while shutting down);
- the proxy sends a request only to a host whose capacity exceeds what it has in flight
  there, tags each request with a frame of its own after the client's id, and answers every
  request still in flight on a host it has not heard from for ``HOST_DEAD_AFTER_S`` with a
  retryable ``busy:``; a reply whose tag is no longer in flight is dropped (one reply each).

A message of this protocol has an empty frame right after the sender's routing id, which a
request or a reply never has (a client's routing id is 1..255 bytes):
``[sender id]["" ][SIGNATURE][HEARTBEAT][capacity, ASCII][host name]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyis_common.protocol import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS, HOST_DEAD_AFTER_S

__all__ = ["HEARTBEAT_INTERVAL_S", "HEARTBEAT_LIVENESS", "HOST_DEAD_AFTER_S"]  # and the rest

SIGNATURE = b"PYIS-HOST1"
HEARTBEAT = b"HEARTBEAT"
MAX_CAPACITY = 4096  # bounds what the proxy keeps per host, whatever a host announces
MAX_NAME = 64  # a host's name is for logs and STATISTICS
TAG_BYTES = 8  # the proxy's request tag: a counter, never reused within a run


@dataclass(frozen=True)
class Heartbeat:
    capacity: int
    name: str


def heartbeat(capacity: int, name: str) -> list[bytes]:
    """The frames after the routing id, as the procmgr sends them."""
    return [b"", SIGNATURE, HEARTBEAT, str(max(0, capacity)).encode(), name.encode()[:MAX_NAME]]


def is_control(frames: list) -> bool:
    """Whether frames (after the routing id) are of this protocol rather than a request/reply."""
    return len(frames) >= 1 and len(frames[0]) == 0


def parse(frames: list[bytes]) -> Heartbeat | None:
    """A heartbeat, or None for anything else (logged by the caller, never trusted further)."""
    if len(frames) != 5 or frames[1] != SIGNATURE or frames[2] != HEARTBEAT:
        return None
    digits = frames[3]
    if not digits.isdigit() or len(digits) > 6:
        return None
    name = frames[4][:MAX_NAME].decode("utf-8", "replace")
    return Heartbeat(min(int(digits), MAX_CAPACITY), "".join(c for c in name if c.isprintable()))
