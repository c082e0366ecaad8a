"""The procmgr's end of the proxy link: one ROUTER that connects out to every proxy.

The proxy sits on the web host, and the web host is not trusted: a frame over
``max_message_bytes`` makes libzmq drop that proxy's connection before the frame is read
(``MAXMSGSIZE``; the link monitor logs it and libzmq reconnects), and a message of more frames
than a route and a request can have is dropped, and logged, as it is read. A legitimate proxy
never sends either: it holds clients to smaller limits. Heartbeats find a stopped or cut-off
proxy within seconds (pyis_common/zmtplink.py).

libzmq reconnects after a lost connection, but not after a protocol error such as an oversized
frame: that proxy would stay cut off until a restart. A drop that libzmq does not follow with
a reconnect attempt is re-armed here after REARM_AFTER_S, slow enough that a hostile proxy
cannot make the procmgr spin on it.

Every proxy hears from us every HEARTBEAT_INTERVAL_S how many requests it may send
(pyis_common/hostlink.py). To address a proxy before it has sent anything, each connection
gets a routing id we choose (``CONNECT_ROUTING_ID``), a new one for every re-arm, since libzmq
refuses a routing id still held by a pipe on its way out.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time

import zmq

from pyis_common import curve, framelimits, hostlink
from pyis_common.config import ProcmgrConfig
from pyis_common.protocol import MAX_ENVELOPE
from pyis_common.zmtplink import LinkMonitor, set_heartbeats

log = logging.getLogger("procmgr")
ROUTE_BYTES = MAX_ENVELOPE * 256  # routing ids are at most 255 bytes; libzmq's are 5
CONNECT_TIMEOUT_MS = 3000  # a SYN into a cut link: give up and retry, not the kernel's 2 min
REARM_AFTER_S = 5.0  # libzmq's own retry comes within 0.1 s; none by then means it gave up


class ProxyLink:
    def __init__(self, ctx: zmq.Context, cfg: ProcmgrConfig) -> None:
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        set_heartbeats(self.router)
        self.router.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
        # [proxy id] + what the proxy sent: [client id][hops...][""][JSON]
        self.limit_messages(cfg.max_message_bytes)
        self.monitor = LinkMonitor(self.router, "proxy", log)
        if cfg.proxy_curve_public:
            curve.connect_as_client(self.router, cfg.curve_secret, cfg.proxy_curve_public)
        self.endpoints = tuple(cfg.proxies)
        self.dropped: dict[str, float] = {}  # endpoint -> when libzmq dropped it, not retrying
        self.peer_ids: dict[str, bytes] = {}  # endpoint -> the routing id we gave that proxy
        self.generation = itertools.count(1)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.next_beat = 0.0
        self.announced = 0  # the capacity the proxies heard last
        for endpoint in self.endpoints:
            self._connect(endpoint)

    def limit_messages(self, max_message_bytes: int) -> None:
        """The request cap (``max_message_bytes``, reloadable): checked on every message at
        once; libzmq's MAXMSGSIZE applies to connections made from then on."""
        self.router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.limits = framelimits.MessageLimits(
            max_frames=MAX_ENVELOPE + 1, max_bytes=ROUTE_BYTES + max_message_bytes
        )

    def _connect(self, endpoint: str) -> None:
        peer = f"proxy:{next(self.generation)}".encode()
        self.router.setsockopt(zmq.CONNECT_ROUTING_ID, peer)
        self.router.connect(endpoint)
        self.peer_ids[endpoint] = peer

    def beat_in_s(self, now: float) -> float:
        return max(0.0, self.next_beat - now)

    def beat(self, now: float, capacity: int, at_once: bool = False) -> None:
        """Tell every proxy, once an interval, how many requests it may have in flight here,
        and at once when that grew (a long-poll arrived and brought its own slot: the proxy
        must not answer other users ``busy:`` until the next interval). A drop waits for the
        interval, unless ``at_once``. A proxy not connected now misses this one (ROUTER drops
        it) and hears the next."""
        if not at_once and now < self.next_beat and capacity <= self.announced:
            return
        self.next_beat = now + hostlink.HEARTBEAT_INTERVAL_S
        self.announced = capacity
        frames = hostlink.heartbeat(capacity, self.name)
        for peer in self.peer_ids.values():
            try:
                self.router.send_multipart([peer, *frames], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # queue full or peer gone: the proxy gives us up, as it should

    def watch(self) -> None:
        """The monitor's events (the loop saw its socket readable): note drops, forget them
        when libzmq retries or reconnects by itself."""
        for kind, endpoint in self.monitor.handle():
            if kind == zmq.EVENT_DISCONNECTED and endpoint in self.endpoints:
                self.dropped[endpoint] = time.monotonic()
            else:
                self.dropped.pop(endpoint, None)

    def rearm(self, now: float) -> None:
        """Reconnect to proxies libzmq dropped for good (a protocol error), after a pause."""
        for endpoint, since in list(self.dropped.items()):
            if now - since >= REARM_AFTER_S:
                del self.dropped[endpoint]
                log.warning("reconnecting to proxy %s (dropped for a protocol error)", endpoint)
                self.router.disconnect(endpoint)
                self._connect(endpoint)

    def receive(self) -> list[bytes] | None:
        """One message as bytes, None if it was over the limits (dropped, logged);
        ``zmq.Again`` when there is none."""
        msg = framelimits.receive(self.router, self.limits)
        if msg.oversized:
            log.warning(
                "dropped a message of %d frames, %d bytes from proxy %s: over the limits "
                "(%d frames, %d bytes); a proxy never forwards one",
                msg.n_frames,
                msg.n_bytes,
                msg.route[0].bytes.hex()[:10],
                self.limits.max_frames,
                self.limits.max_bytes,
            )
            return None
        return [frame.bytes for frame in msg.frames]

    def close(self) -> None:
        """A last heartbeat of no capacity first: the proxies hear that this host is leaving,
        so its dropped link is news to them, not a fault (the linger gives it time to go)."""
        self.beat(time.monotonic(), 0, at_once=True)
        self.monitor.close()
        self.router.close(linger=1000)
