"""How big a request message may be, counted while it is received: the one place for it.

ZeroMQ's ``MAXMSGSIZE`` caps a single frame; a multipart message of 400 frames of 1 MiB passes
it whole. So a ROUTER that takes requests receives frame by frame (``RCVMORE``), counting
frames and bytes, and once a message is over either limit it keeps none of the rest: the frames
are drained and released at once, and nothing of the message is forwarded.

(libzmq hands a multipart message to the reader only once it has arrived whole, so this bounds
what goes past the socket, not what one message costs while it arrives; ``MAXMSGSIZE`` bounds
each of its frames.)
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq

NO_DELIMITER = "no empty delimiter frame before the request (use a REQ socket)"
MAX_ROUTE_ID = 255  # bytes: ZeroMQ routing ids are 1..255 bytes (libzmq's own are 5)


@dataclass(frozen=True)
class MessageLimits:
    max_frames: int  # frames after the routing ids, which the receiving ROUTER(s) added
    max_bytes: int  # their total size
    route_frames: int = 1  # routing ids in front (not counted): 1 behind one ROUTER


@dataclass
class Received:
    route: list[zmq.Frame]
    body: list[zmq.Frame]  # empty when the message was over a limit
    n_frames: int  # what the body had, counted
    n_bytes: int
    oversized: bool
    envelope: list[zmq.Frame]  # [hops...][""] that began the body, [] if it had no delimiter

    @property
    def frames(self) -> list[zmq.Frame]:
        return self.route + self.body

    @property
    def reply_route(self) -> list[zmq.Frame]:
        """How to address a reply as the sender expects it: a REQ wants its delimiter back."""
        return self.route + self.envelope


def receive(sock: zmq.Socket, limits: MessageLimits) -> Received:
    """One whole message, without blocking (``zmq.Again`` when there is none)."""
    frame = sock.recv(zmq.NOBLOCK, copy=False)
    route: list[zmq.Frame] = [frame]
    body: list[zmq.Frame] = []
    more = frame.more
    while more and len(route) < limits.route_frames:
        frame = sock.recv(copy=False)  # the rest of a message is already here: never waits
        route.append(frame)
        more = frame.more
    n_frames = n_bytes = 0
    oversized = delimited = False
    envelope: list[zmq.Frame] = []
    while more:
        frame = sock.recv(copy=False)
        more = frame.more
        n_frames += 1
        n_bytes += len(frame)
        if not delimited and n_frames <= limits.max_frames and len(frame) <= MAX_ROUTE_ID:
            envelope.append(frame)
            delimited = len(frame) == 0
        if not oversized and (n_frames > limits.max_frames or n_bytes > limits.max_bytes):
            oversized = True
            body.clear()  # release what was kept; the rest is dropped as it is read
        if not oversized:
            body.append(frame)
    return Received(route, body, n_frames, n_bytes, oversized, envelope if delimited else [])
