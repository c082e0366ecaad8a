"""ROUTER (clients) <-> ROUTER (procmgrs) with an optional control socket.

We run our own small loop instead of ``zmq.proxy_steerable``: its control protocol changed in
libzmq 4.3.5 (STYLE.md), and the loop lets us count, hold requests to their limits
(pyis_common/framelimits.py), and route as the zguide's Paranoid Pirate queue does: a request
goes only to a procmgr that announced credit, each is tagged and tracked, and a procmgr that
misses its heartbeats has its requests answered ``busy:`` at once (pyis_common/hostlink.py,
is_proxy/hosts.py). A request is taken off the frontend only while some procmgr has credit;
until then it waits in ZeroMQ's queue. The control socket: is_proxy/control.py.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque

import zmq

from is_proxy import control
from is_proxy.hosts import Flight, Host, Hosts, session_key
from is_proxy.metrics import ProxyMetrics
from pyis_common import curve, framelimits, hostlink
from pyis_common.config import ProxyConfig
from pyis_common.errors import wire_text
from pyis_common.protocol import MAX_REPLY_BYTES
from pyis_common.signals import SignalQueue
from pyis_common.zmtplink import LinkMonitor, set_heartbeats

log = logging.getLogger("is_proxy")
POLL_MS = 1000  # wake up at least this often; nothing time-based is urgent here
BURST = 100  # messages moved per wake-up and direction, then look at the other sockets
POLLIN = int(zmq.POLLIN)  # a plain int: enum flag arithmetic costs more than the check


class Proxy:
    def __init__(self, cfg: ProxyConfig, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.limits = framelimits.MessageLimits(cfg.max_request_frames, cfg.max_request_bytes)
        self.frontend = self._socket(zmq.ROUTER, cfg.max_message_bytes)
        self.backend = self._socket(zmq.ROUTER, MAX_REPLY_BYTES)
        self.backend.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable send raises, not drops
        self.hosts = Hosts()
        self.held: deque[tuple[framelimits.Received, float]] = deque()  # read, not yet sent
        set_heartbeats(self.backend)
        self.link = LinkMonitor(self.backend, "procmgr", log, self.hosts.leaving)
        self.auth = (
            curve.serve(self.ctx, self.backend, cfg.curve_secret, cfg.curve_clients)
            if cfg.curve_secret
            else None
        )
        self.control = control.bind(self.ctx, cfg.control)
        self.metrics = ProxyMetrics(self.ctx, cfg.metrics_address) if cfg.metrics_address else None
        self.frontend.bind(cfg.frontend)
        self.backend.bind(cfg.backend)
        self.paused = False
        self.running = True
        self.started = time.monotonic()
        self.counts = {
            "requests": 0,
            "replies": 0,
            "control": 0,
            "refused": 0,
            "host_lost": 0,  # requests answered busy: because their host went silent
            "late_replies": 0,  # replies from a host after we answered for it: dropped
        }

    def _socket(self, kind: int, maxmsg: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsg)
        sock.setsockopt(zmq.SNDHWM, self.cfg.hwm)
        sock.setsockopt(zmq.RCVHWM, self.cfg.hwm)
        return sock

    def endpoints(self) -> dict[str, str]:
        socks = {"frontend": self.frontend, "backend": self.backend, "control": self.control}
        bound = {
            name: sock.getsockopt_string(zmq.LAST_ENDPOINT)
            for name, sock in socks.items()
            if sock is not None
        }
        return bound | ({"metrics": self.metrics.address} if self.metrics else {})

    def run(self) -> None:
        signals = SignalQueue((signal.SIGTERM, signal.SIGINT))
        poller = zmq.Poller()  # one for the whole run: only the frontend comes and goes
        metrics = self.metrics.sock if self.metrics is not None else None
        for sock in (self.backend, self.link.sock, self.control, signals.fd, metrics):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        while self.running:
            # take requests only while some procmgr is present; until then ZeroMQ queues them
            taking = not self.paused and bool(self.hosts.hosts)
            poller.register(self.frontend, zmq.POLLIN if taking else 0)  # 0: unregistered
            events = dict(poller.poll(self._poll_ms()))
            if signals.fd in events and signals.drain():
                self.shutdown("signal")
            if self.backend in events or self.link.sock in events:
                # replies first: a leaving host's last heartbeat (capacity 0) is queued before
                # its drop's monitor event, though one poll may see only the later of the two
                self.forward_replies()
            if self.link.sock in events:
                self.link.handle()
            if self.control is not None and self.control in events:
                self.handle_control(self.control)
            if self.metrics is not None and self.metrics.sock in events:
                self.metrics.answer(self.statistics())
            self.give_up_silent_hosts()
            self.release_held()
            if self.frontend in events and not self.held:
                self.forward_requests()
        self.close()

    def _poll_ms(self) -> int:
        now = time.monotonic()
        expiry = self.hosts.next_expiry(now)
        if self.held:
            held_s = max(0.0, self.held[0][1] + hostlink.HOST_DEAD_AFTER_S - now)
            expiry = held_s if expiry is None else min(expiry, held_s)
        return POLL_MS if expiry is None else max(1, min(POLL_MS, int(expiry * 1000) + 1))

    def give_up_silent_hosts(self) -> None:
        """A host silent for HOST_DEAD_AFTER_S (killed, cut off, hung)."""
        for host, flights in self.hosts.silent(time.monotonic()):
            self.given_up(host, flights, f"silent for {hostlink.HOST_DEAD_AFTER_S:.0f} s")

    def given_up(self, host: Host, flights: list[Flight], why: str) -> None:
        """Answer each of its requests now with a retryable error; nothing more goes to it
        until it is heard again."""
        log.warning(
            "image host %s %s: given up, %d requests in flight answered busy",
            host.name,
            why,
            len(flights),
        )
        busy = wire_text("busy", "the image host serving this request went away; try again")
        for flight in flights:
            self.counts["host_lost"] += 1
            self._send(self.frontend, [*flight.reply_route, busy], "replies")

    def release_held(self) -> None:
        """Requests read but not sent (credit ran out, a host vanished under them) go first
        when credit comes back; one waiting longer than HOST_DEAD_AFTER_S is answered busy."""
        now = time.monotonic()
        while self.held and now - self.held[0][1] > hostlink.HOST_DEAD_AFTER_S:
            self.answer(self.held.popleft()[0], "busy", "no image host can take it; try again")
        while self.held and self.hosts.hosts:
            self.dispatch(self.held.popleft()[0])

    def forward_requests(self) -> None:
        """Up to a burst of requests, each held to the request limits as it is received."""
        for _ in range(BURST):
            if not readable(self.frontend):
                return
            try:
                msg = framelimits.receive(self.frontend, self.limits)
            except zmq.Again:
                return
            if msg.oversized:
                self.refuse(msg)
            elif not msg.envelope:
                self.answer(msg, "bad_request", framelimits.NO_DELIMITER)
            elif not self.dispatch(msg):
                return

    def dispatch(self, msg: framelimits.Received) -> bool:
        """Send one request to the host chosen for it, tagged; False (the request is held)
        when no host is present to take it."""
        key = session_key(msg.body[len(msg.envelope) :])
        host = self.hosts.choose(key)
        if host is None:
            if self.hosts.hosts:  # all present and full: overload is answered at once
                self.answer(msg, "busy", "every image host is busy; try again")
                return True
            self.held.append((msg, time.monotonic()))  # none present: one may come back
            return False
        tag = self.hosts.start(host, msg.reply_route, key)
        try:
            self.backend.send_multipart(
                [host.rid, msg.route[0], tag, *msg.body], zmq.NOBLOCK, copy=False
            )
        except zmq.ZMQError as exc:
            self.hosts.finish(tag)
            if exc.errno != zmq.EHOSTUNREACH:  # its queue is full: that host is swamped
                self.answer(msg, "busy", "the image host for this request is busy; try again")
                return True
            # its connection is gone, though stale heartbeats made it look alive
            self.given_up(host, self.hosts.remove(host), "disconnected")
            return self.dispatch(msg)
        self.counts["requests"] += 1
        return True

    def answer(self, msg: framelimits.Received, code: str, sentence: str) -> None:
        self._send(self.frontend, [*msg.reply_route, wire_text(code, sentence)], "replies")

    def forward_replies(self) -> None:
        """Heartbeats and replies: ``[host][client][tag][hops...][""][frames]`` goes back as
        ``[client][hops...][""][frames]`` if the tag is still in flight on that host. The
        frames pass through as libzmq holds them (a JPEG is neither copied into a Python
        object nor sent zero-copy, whose release wakes pyzmq's collector thread per reply)."""
        for _ in range(BURST):
            if not readable(self.backend):
                return
            try:
                frames = self.backend.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            rid, rest = frames[0].bytes, frames[1:]
            control = hostlink.is_control(rest)
            beat = hostlink.parse([f.bytes for f in rest]) if control else None
            if control and beat is None:
                log.warning("image host %s sent an unknown control message", rid.hex()[:10])
            new = self.hosts.heard(rid, beat, time.monotonic())
            if new is not None:
                log.info("image host %s up (capacity %d)", new.name, new.capacity)
            if control:
                continue
            flight = self.hosts.finish(rest[1].bytes, rid) if len(rest) >= 2 else None
            if flight is None:
                self.counts["late_replies"] += 1
                log.info("dropped a reply from image host %s: not in flight there", rid.hex()[:10])
                continue
            if not self._send(self.frontend, [rest[0], *rest[2:]], "replies"):
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
        self.answer(msg, "bad_request", sentence)

    def handle_control(self, sock: zmq.Socket) -> None:
        self.counts["control"] += 1
        control.answer(sock, self)

    def statistics(self) -> dict:
        """What STATISTICS answers and a Prometheus scrape shows (is_proxy/metrics.py)."""
        now = time.monotonic()
        uptime = round(now - self.started, 3)
        hosts = self.hosts.describe(now)
        return self.counts | {"paused": self.paused, "uptime_s": uptime, "hosts": hosts}

    def shutdown(self, why: str) -> None:
        """The one way out: SIGTERM, SIGINT and TERMINATE all come here."""
        log.info("shutting down (%s)", why)
        self.running = False

    def close(self) -> None:
        self.link.close()
        for sock in (self.frontend, self.backend):
            sock.close(linger=0)
        if self.control is not None:
            control.close(self.control)
        if self.auth is not None:
            self.auth.stop()
        if self.metrics is not None:
            self.metrics.close()


def readable(sock: zmq.Socket) -> bool:
    """A message can be read now: asking is cheaper than ending each burst on ``zmq.Again``,
    whose exception (built through pyzmq's enums) cost a tenth of the proxy's time."""
    events = sock.getsockopt(zmq.EVENTS)  # an int for this option (pyzmq types it int | bytes)
    return isinstance(events, int) and bool(events & POLLIN)
