"""A test client: one REQ (or DEALER) socket per request, always closed with LINGER 0."""

from __future__ import annotations

import json
from typing import Any

import zmq

REPLY_TIMEOUT_MS = 30000  # generous: a cold worker start plus a cold read on a loaded CI box


def ask(
    endpoint: str,
    job: Any,
    *,
    raw: bytes | None = None,
    frames: list[bytes] | None = None,
    timeout_ms: int = REPLY_TIMEOUT_MS,
) -> list[bytes]:
    """Send one request (JSON of ``job``, or ``raw`` bytes, or several ``frames``)."""
    if frames is None:
        frames = [raw if raw is not None else json.dumps(job).encode()]
    return _exchange(zmq.REQ, endpoint, frames, timeout_ms)


def ask_dealer(
    endpoint: str, frames: list[bytes], timeout_ms: int = REPLY_TIMEOUT_MS
) -> list[bytes]:
    """A DEALER client that sends no empty delimiter (the C server exit(-1)ed on this)."""
    return _exchange(zmq.DEALER, endpoint, frames, timeout_ms)


def _exchange(kind: int, endpoint: str, frames: list[bytes], timeout_ms: int) -> list[bytes]:
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms, zmq.POLLIN):
            raise TimeoutError("no reply")
        return sock.recv_multipart()
    finally:
        sock.close(linger=0)


def error_code(reply: list[bytes]) -> str:
    """The code word of a one-frame error reply; fails the test on a success reply."""
    assert len(reply) == 1 and reply[0], f"expected one error frame, got {len(reply)} frames"
    return reply[0].decode().split(":", 1)[0]


def meta_of(reply: list[bytes]) -> tuple[dict, dict]:
    assert reply[0] == b"", reply[0][:200]
    return json.loads(reply[1]), json.loads(reply[2])
