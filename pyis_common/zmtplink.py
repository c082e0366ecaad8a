"""The proxy <-> procmgr link, the same on both ends: ZeroMQ heartbeats and a logging monitor.

Without heartbeats a peer that is stopped (SIGSTOP, swapping) or behind a cut network keeps its
TCP connection open: the proxy would go on queueing requests to it, and each would be noticed
only at its client's deadline. With ZMTP heartbeats (libzmq >= 4.2) each end PINGs an idle
link and drops a connection that stays silent; the connecting end (the procmgr) reconnects by
itself. The monitor turns connects and drops into log lines an operator can see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from pyis_common.protocol import (
    ZMTP_HEARTBEAT_IVL_MS,
    ZMTP_HEARTBEAT_TIMEOUT_MS,
    ZMTP_HEARTBEAT_TTL_MS,
)

# a dead peer is found within ZMTP_HEARTBEAT_IVL_MS + ZMTP_HEARTBEAT_TIMEOUT_MS, far below the 20 s
# request deadline (and the 900 s index deadline)
LINK_DOWN_WITHIN_S = (ZMTP_HEARTBEAT_IVL_MS + ZMTP_HEARTBEAT_TIMEOUT_MS) / 1000

WATCHED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def set_heartbeats(sock: zmq.Socket) -> None:
    """Before bind/connect: they apply to the connections made afterwards."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_HEARTBEAT_TTL_MS)


class LinkMonitor:
    """Log when a peer of ``sock`` comes, goes, or fails its handshake; the loop polls ``sock``.

    ``announced_leaving``: whether a peer said it was shutting down (and this drop is its
    leaving); such a drop is logged as news, not as a warning an operator must chase."""

    def __init__(
        self,
        sock: zmq.Socket,
        peer: str,
        log: logging.Logger,
        announced_leaving: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sock = sock.get_monitor_socket(WATCHED)
        self.peer, self.log = peer, log
        self.announced_leaving = announced_leaving

    def handle(self) -> list[tuple[int, str]]:
        """Log every event waiting, never blocking; the (event, endpoint) pairs seen."""
        seen: list[tuple[int, str]] = []
        while True:
            try:
                event = recv_monitor_message(self.sock, zmq.NOBLOCK)
            except zmq.Again:
                return seen
            kind, endpoint = event["event"], event["endpoint"]
            where = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else endpoint
            seen.append((kind, where))
            if kind == zmq.EVENT_CONNECT_RETRIED:
                continue  # libzmq is reconnecting by itself: nothing to tell
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.log.info("%s link up (%s)", self.peer, where)
            elif kind == zmq.EVENT_DISCONNECTED and self.announced_leaving():
                self.log.info("%s link closed (%s): the peer was shutting down", self.peer, where)
            elif kind == zmq.EVENT_DISCONNECTED:
                self.log.warning(
                    "%s link lost (%s): the peer went away, missed heartbeats for %.0f s, or "
                    "sent a frame over the size limit",
                    self.peer,
                    where,
                    LINK_DOWN_WITHIN_S,
                )
            else:
                self.log.warning("%s link handshake failed (%s): %s", self.peer, where, kind)

    def close(self) -> None:
        self.sock.close(linger=0)
