"""The loopback HTTP endpoint: ``/metrics`` (Prometheus) and ``/status`` (per-worker detail).

The ``status`` request over ZeroMQ needs no access object, so anyone who reaches the proxy may
ask it: it answers counts only. Which users and ESAFs have workers, and their pids, is served
here, and only when this endpoint is bound to a loopback address (an operator on the image
host, or a local scraper). The HTTP threads never touch the loop's state: they ask the loop
(pyis_common/metricsserver.py), and it answers between two requests: the detail, and for a
scrape the gauges (procmgr/metrics.py), so the loop never refreshes them for nobody.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import zmq
from prometheus_client import make_wsgi_app

from procmgr.metrics import Gauges, Metrics
from pyis_common import strictjson
from pyis_common.metricsserver import LoopQuestion, serve_http

log = logging.getLogger("procmgr")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host or "127.0.0.1").is_loopback
    except ValueError:
        return host == "localhost"


class StatusPage:
    """Serve the registry and, on loopback only, the detail the loop hands over."""

    def __init__(self, ctx: zmq.Context, metrics: Metrics, address: str) -> None:
        host = address.rpartition(":")[0]
        self.detail_allowed = is_loopback(host)
        if not self.detail_allowed:
            log.warning("metrics on %s is not loopback: /status detail is not served", host)
        self.question = LoopQuestion(ctx, "status-detail")
        self.sock = self.question.sock  # the loop polls it
        self.gauges_question = LoopQuestion(ctx, "gauges")
        self.gauges_sock = self.gauges_question.sock  # and this one
        metrics.ask_gauges = self._gauges
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
            if environ.get("PATH_INFO") != "/status":
                return metrics_app(environ, start_response)
            if not self.detail_allowed:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"per-worker detail is served on a loopback address only\n"]
            return self._detail(start_response)

        self.server, self.address = serve_http(address, app)

    def _detail(self, start_response: Callable) -> list[bytes]:
        """In an HTTP thread: one question to the loop, its JSON or 503."""
        body = self.question.ask()
        if body is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the procmgr loop did not answer\n"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def _gauges(self) -> Gauges | None:
        """In an HTTP thread, for a scrape: the loop's gauges now (None: it did not answer)."""
        body = self.gauges_question.ask()
        return None if body is None else strictjson.loads(body)

    def answer(self, detail: Callable[[], dict[str, Any]]) -> None:
        """In the loop: answer the waiting question (the REP socket was readable)."""
        self.question.answer(lambda: strictjson.dumps(detail()))

    def answer_gauges(self, gauges: Callable[[], Gauges]) -> None:
        """In the loop: a scrape's question for the gauges."""
        self.gauges_question.answer(lambda: strictjson.dumps(gauges()))

    def close(self) -> None:
        self.server.shutdown()
        self.question.close()
        self.gauges_question.close()
