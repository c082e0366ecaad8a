"""The procmgr's end of the proxy link: one ROUTER that connects out to every proxy.

The proxy sits on the web host, and the web host is not trusted: a frame over
``max_message_bytes`` makes libzmq drop that proxy's connection before the frame is read
(``MAXMSGSIZE``; the link monitor logs it and libzmq reconnects), and a message of more frames
than a route and a request can have is dropped, and logged, as it is read. A legitimate proxy
never sends either: it holds clients to smaller limits. Heartbeats find a stopped or cut-off
proxy within seconds (pyis_common/link.py).
"""

from __future__ import annotations

import logging

import zmq

from procmgr.frames import MAX_ENVELOPE
from pyis_common import curve, framelimits
from pyis_common.config import ProcmgrConfig
from pyis_common.link import LinkMonitor, set_heartbeats

log = logging.getLogger("procmgr")
ROUTE_BYTES = MAX_ENVELOPE * 256  # routing ids are at most 255 bytes; libzmq's are 5


class ProxyLink:
    def __init__(self, ctx: zmq.Context, cfg: ProcmgrConfig) -> None:
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes)
        set_heartbeats(self.router)
        # [proxy id] + what the proxy sent: [client id][hops...][""][JSON]
        self.limits = framelimits.MessageLimits(
            max_frames=MAX_ENVELOPE + 1, max_bytes=ROUTE_BYTES + cfg.max_message_bytes
        )
        self.monitor = LinkMonitor(self.router, "proxy", log)
        if cfg.proxy_curve_public:
            curve.connect_as_client(self.router, cfg.curve_secret, cfg.proxy_curve_public)
        for endpoint in cfg.proxies:
            self.router.connect(endpoint)

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
        self.monitor.close()
        self.router.close(linger=1000)
