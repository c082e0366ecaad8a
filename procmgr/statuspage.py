"""The loopback HTTP endpoint: ``/metrics`` (Prometheus) and ``/status`` (per-worker detail).

The ``status`` request over ZeroMQ needs no access object, so anyone who reaches the proxy may
ask it: it answers counts only. Which users and ESAFs have workers, and their pids, is served
here, and only when this endpoint is bound to a loopback address (an operator on the image
host, or a local scraper). The HTTP threads never touch the loop's state: they ask the loop
over an inproc socket, and it answers between two requests.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import make_server

import zmq
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from pyis_common import strictjson

log = logging.getLogger("procmgr")
INPROC = "inproc://pyis-status-detail"
ANSWER_TIMEOUT_MS = 2000  # the loop answers within a turn; a stuck loop gets 503, not a hang


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host or "127.0.0.1").is_loopback
    except ValueError:
        return host == "localhost"


class StatusPage:
    """Serve the registry and, on loopback only, the detail the loop hands over."""

    def __init__(self, ctx: zmq.Context, registry: CollectorRegistry, address: str) -> None:
        self.ctx = ctx
        host, _, port = address.rpartition(":")
        host = host or "127.0.0.1"
        self.detail_allowed = is_loopback(host)
        if not self.detail_allowed:
            log.warning("metrics on %s is not loopback: /status detail is not served", host)
        self.sock = ctx.socket(zmq.REP)  # the loop's side; it polls this socket
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(INPROC)
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
            if environ.get("PATH_INFO") != "/status":
                return metrics_app(environ, start_response)
            if not self.detail_allowed:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"per-worker detail is served on a loopback address only\n"]
            return self._detail(start_response)

        self.server = make_server(host, int(port), app, ThreadingWSGIServer, _SilentHandler)
        bound_host, bound_port = self.server.server_address[:2]
        self.address = f"{bound_host}:{bound_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _detail(self, start_response: Callable) -> list[bytes]:
        """In an HTTP thread: one question to the loop, its JSON or 503."""
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(INPROC)
            sock.send(b"detail")
            if not sock.poll(ANSWER_TIMEOUT_MS, zmq.POLLIN):
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"the procmgr loop did not answer\n"]
            body = sock.recv()
        finally:
            sock.close()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def answer(self, detail: Callable[[], dict[str, Any]]) -> None:
        """In the loop: answer the waiting question (the REP socket was readable)."""
        try:
            self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        self.sock.send(strictjson.dumps(detail()))

    def close(self) -> None:
        self.server.shutdown()
        self.sock.close(linger=0)
