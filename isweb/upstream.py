"""The gateway's side of the wire: one request to the image server per browser call.

Like ``is.js``, every call is one JSON frame on a REQ socket to ``is-proxy``; the reply is
``[""][job][meta][payload?]`` or one frame ``code: sentence``, which becomes the matching
:class:`~pyis_common.errors.PyisError` so the browser sees the image server's own words. REQ
sockets are kept in a small idle pool (a TCP connect per call would cost more than the new
contrast it carries); a socket whose call timed out or was cancelled is closed with LINGER 0,
never reused: a REQ socket that lost its reply is stuck (the Lazy Pirate rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from pyis_common import strictjson
from pyis_common.errors import BY_CODE, Busy, Internal, Timeout, parse_wire_text
from pyis_common.protocol import MAX_REPLY_BYTES

MAX_IDLE = 16  # idle connected sockets kept for the next calls


@dataclass(frozen=True)
class Reply:
    job: dict[str, Any]
    meta: dict[str, Any]
    payload: bytes | None


class Upstream:
    """REQ sockets to one proxy endpoint, at most ``max_in_flight`` calls at a time."""

    def __init__(self, endpoint: str, timeout_s: float, max_in_flight: int) -> None:
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self.ctx = zmq.asyncio.Context()
        self.idle: list[zmq.asyncio.Socket] = []
        self.in_flight = 0
        self.max_in_flight = max_in_flight

    def _socket(self) -> zmq.asyncio.Socket:
        if self.idle:
            return self.idle.pop()
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        sock.connect(self.endpoint)
        return sock

    async def ask(self, job: dict[str, Any]) -> Reply:
        """Send ``job``; the reply, or the image server's refusal raised as its error class."""
        if self.in_flight >= self.max_in_flight:
            raise Busy("the web gateway has too many requests in flight; try again")
        self.in_flight += 1
        sock = self._socket()
        try:
            await sock.send(strictjson.dumps(job))
            if not await sock.poll(self.timeout_ms):  # POLLIN, the default
                raise Timeout(f"the image server did not answer within {self.timeout_ms} ms")
            frames = await sock.recv_multipart()
        except BaseException:  # timeout, cancelled (the browser went away), ZMQError
            sock.close(linger=0)
            raise
        finally:
            self.in_flight -= 1
        if len(self.idle) < MAX_IDLE:
            self.idle.append(sock)
        else:
            sock.close(linger=0)
        return parse_reply(frames)

    def close(self) -> None:
        for sock in self.idle:
            sock.close(linger=0)
        self.idle.clear()
        self.ctx.term()


def parse_reply(frames: list[bytes]) -> Reply:
    """``[""][job][meta][payload?]`` or one error frame; anything else is the server's fault."""
    if len(frames) == 1:
        code, sentence = parse_wire_text(frames[0])
        raise BY_CODE[code](sentence)
    if len(frames) not in (3, 4) or frames[0] != b"":
        raise Internal("the image server sent a malformed reply")
    try:
        job, meta = strictjson.loads(frames[1].decode()), strictjson.loads(frames[2].decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Internal("the image server sent a malformed reply") from None
    if not isinstance(job, dict) or not isinstance(meta, dict):
        raise Internal("the image server sent a malformed reply")
    return Reply(job, meta, frames[3] if len(frames) == 4 else None)
