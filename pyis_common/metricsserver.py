"""The HTTP side of a loop's metrics: a threaded server, and a question to the loop over inproc.

The procmgr and the proxy keep their state in one thread, their ZeroMQ loop. An HTTP thread
(a Prometheus scrape, the loopback ``/status`` page) never reads that state: it asks the loop
over an inproc REQ/REP pair, and the loop answers between two messages, so what a scrape shows
is what the loop's own status answer shows at that moment (one source).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer, make_server

import zmq
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

ANSWER_TIMEOUT_MS = 2000  # the loop answers within a turn; a stuck loop is an error, not a hang
_names = itertools.count(1)


class LoopQuestion:
    """The loop polls ``sock`` and calls ``answer``; any other thread calls ``ask``."""

    def __init__(self, ctx: zmq.Context, purpose: str) -> None:
        self.ctx = ctx
        self.endpoint = f"inproc://pyis-{purpose}-{next(_names)}"
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)

    def ask(self, timeout_ms: int = ANSWER_TIMEOUT_MS) -> bytes | None:
        """In an HTTP thread: the loop's answer, or None if it did not answer in time."""
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            sock.send(b"?")
            if not sock.poll(timeout_ms, zmq.POLLIN):
                return None
            return sock.recv()
        finally:
            sock.close()

    def answer(self, body: Callable[[], bytes]) -> None:
        """In the loop, when ``sock`` is readable: answer the waiting question."""
        try:
            self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        self.sock.send(body())

    def close(self) -> None:
        self.sock.close(linger=0)


def serve_http(address: str, app: Callable) -> tuple[WSGIServer, str]:
    """``app`` served on ``host:port`` (port 0: any free one) by daemon threads; the server and
    the address it is bound to."""
    host, _, port = address.rpartition(":")
    server = make_server(host or "127.0.0.1", int(port), app, ThreadingWSGIServer, _SilentHandler)
    bound_host, bound_port = str(server.server_address[0]), server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"{bound_host}:{bound_port}"
