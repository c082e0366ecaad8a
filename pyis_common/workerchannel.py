"""Framing on the procmgr <-> zygote <-> worker channels (inherited socketpairs, never pickle).

One message on the byte stream::

    +---------+-----------+-----------+-------------------+-------------+------------+
    | VERSION | hdr_len   | n_payload | payload_len x n   | header      | payloads   |
    | u8      | u32 BE    | u8        | u32 BE each       | UTF-8 JSON  | raw bytes  |
    +---------+-----------+-----------+-------------------+-------------+------------+

The header is a JSON object (types: ``MSG_*``); payloads are opaque bytes (a JPEG, an array).
Every length is capped before anything is allocated, so a hostile peer can make us drop the
channel but never make us allocate or wait without bound.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

from pyis_common.strictjson import dumps, loads

VERSION = 1
PREFIX = struct.Struct(">BIB")
LENGTH = struct.Struct(">I")
MAX_HEADER = 1 << 20  # 1 MiB: a job, its metadata and stats fit with room to spare
MAX_PAYLOADS = 4
MAX_PAYLOAD = 256 << 20  # a 10000 x 10000 RGB JPEG at quality 100 stays below this

# message types (the header's "t")
MSG_READY = "ready"  # worker -> procmgr: privileges dropped, serving
MSG_JOB = "job"  # procmgr -> worker: a validated request
MSG_REPLY = "reply"  # worker -> procmgr: the answer to one job
MSG_SPAWN = "spawn"  # procmgr -> zygote: fork a worker for (uid, gid, home)
MSG_SPAWNED = "spawned"  # zygote -> procmgr: the child's pid, or why not
MSG_EXITED = "exited"  # zygote -> procmgr: a child was reaped
MSG_STOP = "stop"  # procmgr -> zygote/worker: finish and exit
MSG_PROGRESS = "progress"  # worker -> procmgr: a progress line of a long job (index)
MSG_CONFIG = "config"  # procmgr -> worker: settings that must not pass through the zygote


class WireError(Exception):
    """The peer broke the framing; the channel must be closed."""


def encode(header: dict[str, Any], payloads: list[bytes] | tuple[bytes, ...] = ()) -> bytes:
    return b"".join(encode_parts(header, payloads))


def encode_parts(header: dict[str, Any], payloads: list[bytes] | tuple[bytes, ...] = ()) -> list:
    """The message as its parts (prefix and header, then each payload as it is), for a
    gathering send that copies a JPEG once, into the socket, not first into a joined copy."""
    body = dumps(header)
    if len(body) > MAX_HEADER or len(payloads) > MAX_PAYLOADS:
        raise WireError("message too large")
    lengths = [PREFIX.pack(VERSION, len(body), len(payloads))]
    for p in payloads:
        if len(p) > MAX_PAYLOAD:
            raise WireError("payload too large")
        lengths.append(LENGTH.pack(len(p)))
    return [b"".join(lengths) + body, *payloads]


def send_parts(sock: socket.socket, parts: list) -> None:
    """``sendall`` of the parts joined, without joining them (``sendmsg`` gathers)."""
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if views and sent:
            views[0] = views[0][sent:]


class Decoder:
    """Incremental decoder: feed it whatever ``recv`` returned, get whole messages back.

    Used non-blocking by the procmgr (a worker that sends half a message cannot stall its
    loop) and blocking by the worker and zygote via :class:`Channel`. ``max_message``
    caps one whole message: a peer that announces more is refused as soon as its lengths
    arrive, before the procmgr buffers the rest.
    """

    def __init__(self, max_message: int | None = None) -> None:
        self._buf = bytearray()
        self.max_message = max_message

    @property
    def buffered(self) -> int:
        """Bytes of a message not yet complete (0 between messages)."""
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[tuple[dict[str, Any], list[bytes]]]:
        """The whole messages ``data`` completes. Nothing of ``data`` is kept by reference
        (the procmgr reads into one reused buffer): payloads are copied out once, and a
        message's beginning is copied into the decoder's own buffer."""
        if not self._buf:  # the usual case: whole messages, parsed where they were read
            out, used = self._parse(data)
            if used < len(data):
                self._buf += data[used:]
            return out
        self._buf += data
        out, used = self._parse(self._buf)
        del self._buf[:used]
        return out

    def _parse(
        self, buf: bytes | bytearray | memoryview
    ) -> tuple[list[tuple[dict[str, Any], list[bytes]]], int]:
        out: list[tuple[dict[str, Any], list[bytes]]] = []
        pos = 0
        with memoryview(buf) as view:
            while True:
                msg, end = self._take(view, pos)
                if msg is None:
                    return out, pos
                out.append(msg)
                pos = end

    def _take(
        self, buf: memoryview, start: int
    ) -> tuple[tuple[dict[str, Any], list[bytes]] | None, int]:
        have = len(buf) - start
        if have < PREFIX.size:
            return None, start
        version, hlen, npay = PREFIX.unpack_from(buf, start)
        if version != VERSION or hlen > MAX_HEADER or npay > MAX_PAYLOADS:
            raise WireError("bad frame prefix")
        lens_end = PREFIX.size + LENGTH.size * npay
        if have < lens_end:
            return None, start
        lens = [
            LENGTH.unpack_from(buf, start + PREFIX.size + LENGTH.size * i)[0] for i in range(npay)
        ]
        if any(n > MAX_PAYLOAD for n in lens):
            raise WireError("payload too large")
        total = lens_end + hlen + sum(lens)
        if self.max_message is not None and total > self.max_message:
            raise WireError(f"a message of {total} bytes is over the {self.max_message} limit")
        if have < total:
            return None, start
        pos = start + lens_end
        try:
            header = loads(bytes(buf[pos : pos + hlen]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError("header is not JSON") from exc
        if not isinstance(header, dict):
            raise WireError("header is not a JSON object")
        payloads, pos = [], pos + hlen
        for n in lens:
            payloads.append(bytes(buf[pos : pos + n]))
            pos += n
        return (header, payloads), start + total


class Channel:
    """A blocking, thread-safe message channel on one end of a socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._decoder = Decoder()
        self._pending: list[tuple[dict[str, Any], list[bytes]]] = []
        self._send_lock = threading.Lock()

    def send(self, header: dict[str, Any], payloads: list[bytes] | tuple[bytes, ...] = ()) -> None:
        parts = encode_parts(header, payloads)
        with self._send_lock:
            send_parts(self.sock, parts)

    def send_fds(self, header: dict[str, Any], fds: list[int]) -> None:
        """Send a message whose first byte carries file descriptors (SCM_RIGHTS)."""
        data = encode(header)
        with self._send_lock:
            sent = socket.send_fds(self.sock, [data], fds)
            if sent < len(data):
                self.sock.sendall(data[sent:])

    def has_pending(self) -> bool:
        """True when a whole message is already buffered (select would not say so)."""
        return bool(self._pending)

    def recv(self) -> tuple[dict[str, Any], list[bytes]] | None:
        """The next message, or None at end of stream."""
        msg, _ = self.recv_with_fds(0)
        return msg

    def recv_with_fds(
        self, maxfds: int
    ) -> tuple[tuple[dict[str, Any], list[bytes]] | None, list[int]]:
        fds: list[int] = []
        while not self._pending:
            if maxfds:
                data, got, _, _ = socket.recv_fds(self.sock, 1 << 16, maxfds)
                fds.extend(got)
            else:
                data = self.sock.recv(1 << 16)
            if not data:
                return None, fds
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0), fds
