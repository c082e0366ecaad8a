"""ROUTER (clients) <-> DEALER (procmgrs) with a control socket.

We run our own small loop instead of ``zmq.proxy_steerable``: its control protocol changed in
libzmq 4.3.5 (STYLE.md), and the loop lets us count, cap message sizes and only take a request
off the frontend when some procmgr can receive it (a DEALER with no peer would block the loop).

Control socket (REP): ``PAUSE``, ``RESUME``, ``TERMINATE`` -> ``OK``; ``STATISTICS`` -> JSON.
"""

from __future__ import annotations

import json
import logging
import signal
import time

import zmq

from pyis_common import curve
from pyis_common.config import ProxyConfig
from pyis_common.signals import SignalQueue

log = logging.getLogger("is_proxy")
POLL_MS = 1000  # wake up at least this often; nothing time-based is urgent here
NO_PEER_POLL_MS = 20  # while no procmgr is connected, look again soon: it may connect any time
MAX_REPLY_BYTES = 256 << 20  # a 10000 px JPEG at quality 100


class Proxy:
    def __init__(self, cfg: ProxyConfig, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.frontend = self._socket(zmq.ROUTER, cfg.max_message_bytes)
        self.backend = self._socket(zmq.DEALER, MAX_REPLY_BYTES)
        self.control = self._socket(zmq.REP, 4096)
        self.auth = (
            curve.serve(self.ctx, self.backend, cfg.curve_secret, cfg.curve_clients)
            if cfg.curve_secret
            else None
        )
        self.frontend.bind(cfg.frontend)
        self.backend.bind(cfg.backend)
        self.control.bind(cfg.control)
        self.paused = False
        self.running = True
        self.started = time.monotonic()
        self.counts = {"requests": 0, "replies": 0, "control": 0}

    def _socket(self, kind: int, maxmsg: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsg)
        sock.setsockopt(zmq.SNDHWM, self.cfg.hwm)
        sock.setsockopt(zmq.RCVHWM, self.cfg.hwm)
        return sock

    def endpoints(self) -> dict[str, str]:
        return {
            name: sock.getsockopt_string(zmq.LAST_ENDPOINT)
            for name, sock in (
                ("frontend", self.frontend),
                ("backend", self.backend),
                ("control", self.control),
            )
        }

    def run(self) -> None:
        signals = SignalQueue((signal.SIGTERM, signal.SIGINT))
        while self.running:
            poller = zmq.Poller()
            poller.register(self.backend, zmq.POLLIN)
            poller.register(self.control, zmq.POLLIN)
            poller.register(signals.fd, zmq.POLLIN)
            # take requests only when a procmgr can receive them: a DEALER with no peer blocks
            ready = not self.paused and self.backend.getsockopt(zmq.EVENTS) & zmq.POLLOUT
            if ready:
                poller.register(self.frontend, zmq.POLLIN)
            events = dict(poller.poll(POLL_MS if ready or self.paused else NO_PEER_POLL_MS))
            if signals.fd in events and signals.drain():
                self.shutdown("signal")
            if self.control in events:
                self.handle_control()
            if self.backend in events:
                self.forward(self.backend, self.frontend, "replies")
            if self.frontend in events:
                self.forward(self.frontend, self.backend, "requests")
        self.close()

    def forward(self, src: zmq.Socket, dst: zmq.Socket, counter: str) -> None:
        """Move up to a burst of whole multipart messages without blocking."""
        for _ in range(100):
            try:
                frames = src.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                dst.send_multipart(frames, zmq.NOBLOCK, copy=False)
                self.counts[counter] += 1
            except zmq.Again:
                log.warning("dropped a message: %s queue full", counter)
                return

    def handle_control(self) -> None:
        command = self.control.recv().decode("ascii", "replace").strip().upper()
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
        self.control.send_string(reply)
        log.info("control %s -> %s", command[:20], reply[:80])

    def shutdown(self, why: str) -> None:
        """The one way out: SIGTERM, SIGINT and TERMINATE all come here."""
        log.info("shutting down (%s)", why)
        self.running = False

    def close(self) -> None:
        for sock in (self.frontend, self.backend, self.control):
            sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
