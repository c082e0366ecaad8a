"""ROUTER (clients) <-> DEALER (procmgrs) with an optional control socket.

We run our own small loop instead of ``zmq.proxy_steerable``: its control protocol changed in
libzmq 4.3.5 (STYLE.md), and the loop lets us count, hold requests to their limits
(pyis_common/framelimits.py) and only take a request off the frontend when some procmgr can
receive it (a DEALER with no peer would block the loop). The control socket: is_proxy/control.py.
"""

from __future__ import annotations

import json
import logging
import signal
import time

import zmq

from is_proxy import control
from pyis_common import curve, framelimits
from pyis_common.config import ProxyConfig
from pyis_common.errors import wire_text
from pyis_common.link import LinkMonitor, set_heartbeats
from pyis_common.signals import SignalQueue

log = logging.getLogger("is_proxy")
POLL_MS = 1000  # wake up at least this often; nothing time-based is urgent here
NO_PEER_POLL_MS = 20  # while no procmgr is connected, look again soon: it may connect any time
MAX_REPLY_BYTES = 256 << 20  # a 10000 px JPEG at quality 100
BURST = 100  # messages moved per wake-up and direction, then look at the other sockets


class Proxy:
    def __init__(self, cfg: ProxyConfig, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.limits = framelimits.MessageLimits(cfg.max_request_frames, cfg.max_request_bytes)
        self.frontend = self._socket(zmq.ROUTER, cfg.max_message_bytes)
        self.backend = self._socket(zmq.DEALER, MAX_REPLY_BYTES)
        set_heartbeats(self.backend)
        self.link = LinkMonitor(self.backend, "procmgr", log)
        self.auth = (
            curve.serve(self.ctx, self.backend, cfg.curve_secret, cfg.curve_clients)
            if cfg.curve_secret
            else None
        )
        self.control = control.bind(self.ctx, cfg.control)
        self.frontend.bind(cfg.frontend)
        self.backend.bind(cfg.backend)
        self.paused = False
        self.running = True
        self.started = time.monotonic()
        self.counts = {"requests": 0, "replies": 0, "control": 0, "refused": 0}

    def _socket(self, kind: int, maxmsg: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsg)
        sock.setsockopt(zmq.SNDHWM, self.cfg.hwm)
        sock.setsockopt(zmq.RCVHWM, self.cfg.hwm)
        return sock

    def endpoints(self) -> dict[str, str]:
        socks = {"frontend": self.frontend, "backend": self.backend, "control": self.control}
        return {
            name: sock.getsockopt_string(zmq.LAST_ENDPOINT)
            for name, sock in socks.items()
            if sock is not None
        }

    def run(self) -> None:
        signals = SignalQueue((signal.SIGTERM, signal.SIGINT))
        while self.running:
            poller = zmq.Poller()
            poller.register(self.backend, zmq.POLLIN)
            poller.register(self.link.sock, zmq.POLLIN)
            if self.control is not None:
                poller.register(self.control, zmq.POLLIN)
            poller.register(signals.fd, zmq.POLLIN)
            # take requests only when a procmgr can receive them: a DEALER with no peer blocks
            ready = not self.paused and self.backend.getsockopt(zmq.EVENTS) & zmq.POLLOUT
            if ready:
                poller.register(self.frontend, zmq.POLLIN)
            events = dict(poller.poll(POLL_MS if ready or self.paused else NO_PEER_POLL_MS))
            if signals.fd in events and signals.drain():
                self.shutdown("signal")
            if self.link.sock in events:
                self.link.handle()
            if self.control is not None and self.control in events:
                self.handle_control(self.control)
            if self.backend in events:
                self.forward_replies()
            if self.frontend in events:
                self.forward_requests()
        self.close()

    def forward_requests(self) -> None:
        """Up to a burst of requests, each held to the request limits as it is received."""
        for _ in range(BURST):
            try:
                msg = framelimits.receive(self.frontend, self.limits)
            except zmq.Again:
                return
            if msg.oversized:
                self.refuse(msg)
            elif not self._send(self.backend, msg.frames, "requests"):
                return

    def forward_replies(self) -> None:
        for _ in range(BURST):
            try:
                frames = self.backend.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not self._send(self.frontend, frames, "replies"):
                return

    def _send(self, dst: zmq.Socket, frames: list, counter: str) -> bool:
        try:
            dst.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("dropped a message: %s queue full", counter)
            return False
        self.counts[counter] += 1
        return True

    def refuse(self, msg: framelimits.Received) -> None:
        """Over the limits: nothing of it goes on; its sender gets one error and a log line."""
        self.counts["refused"] += 1
        log.warning(
            "refused a request of %d frames, %d bytes from client %s (limits: %d frames, "
            "%d bytes); not forwarded",
            msg.n_frames,
            msg.n_bytes,
            msg.route[0].bytes.hex()[:10],
            self.limits.max_frames,
            self.limits.max_bytes,
        )
        sentence = (
            f"a request is one JSON frame after the empty delimiter, at most "
            f"{self.limits.max_bytes} bytes and {self.limits.max_frames} frames in all"
        )
        reply = [*msg.reply_route, wire_text("bad_request", sentence)]
        self._send(self.frontend, reply, "replies")

    def handle_control(self, sock: zmq.Socket) -> None:
        command = sock.recv().decode("ascii", "replace").strip().upper()
        self.counts["control"] += 1
        reply = "OK"
        if command == "PAUSE":
            self.paused = True
        elif command == "RESUME":
            self.paused = False
        elif command == "TERMINATE":
            self.shutdown("control")
        elif command == "STATISTICS":
            uptime = round(time.monotonic() - self.started, 3)
            reply = json.dumps(self.counts | {"paused": self.paused, "uptime_s": uptime})
        else:
            reply = "ERROR unknown command"
        sock.send_string(reply)
        log.info("control %s -> %s", command[:20], reply[:80])

    def shutdown(self, why: str) -> None:
        """The one way out: SIGTERM, SIGINT and TERMINATE all come here."""
        log.info("shutting down (%s)", why)
        self.running = False

    def close(self) -> None:
        self.link.close()
        for sock in (self.frontend, self.backend, self.control):
            if sock is not None:
                sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
