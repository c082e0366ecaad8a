"""The proxy's Prometheus endpoint: per image host its credit, heartbeat age and requests in
flight, and the proxy's own counts.

One source: a scrape asks the proxy's loop for the very dict the control socket's STATISTICS
answers (``Proxy.statistics``; pyis_common/metricsserver.py), and turns it into metric
families, so a scrape and STATISTICS taken at the same moment say the same. The loop keeps no
second set of counters and does no work for metrics between scrapes (its forwarding path stays
as it is). Host names come from the hosts' heartbeats (printable, at most
``hostlink.MAX_NAME``); a host that has reconnected is told apart by its link id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import zmq
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pyis_common.metricsserver import LoopQuestion, serve_http

COUNTERS = {  # STATISTICS key -> help; each is exported as pyis_proxy_<key>_total
    "requests": "Requests sent on to an image host",
    "replies": "Replies sent back to clients (the proxy's own error replies included)",
    "refused": "Requests refused for breaking the request limits",
    "host_lost": "Requests answered busy: because their image host went silent",
    "late_replies": "Replies from an image host after the proxy answered for it, dropped",
}
HOST_GAUGES = {  # STATISTICS hosts[] key -> (metric name, help)
    "capacity": ("pyis_proxy_host_capacity", "Requests the image host said it takes at once"),
    "credit": ("pyis_proxy_host_credit", "Requests the image host may still be sent now"),
    "in_flight": ("pyis_proxy_host_in_flight", "Requests in flight on the image host"),
    "heartbeat_age_s": (
        "pyis_proxy_host_heartbeat_age_seconds",
        "Seconds since the image host was last heard",
    ),
}


class LoopUnanswered(RuntimeError):
    """The loop did not answer a scrape in time: the scrape fails (HTTP 500), not a hang."""


class ProxyMetrics:
    """A Prometheus collector over the loop's statistics, served on ``address``."""

    def __init__(self, ctx: zmq.Context, address: str) -> None:
        self.question = LoopQuestion(ctx, "proxy-metrics")
        self.sock = self.question.sock  # the loop polls it and calls answer()
        registry = CollectorRegistry()
        registry.register(self)
        self.server, self.address = serve_http(address, make_wsgi_app(registry))

    def answer(self, statistics: dict) -> None:
        self.question.answer(lambda: json.dumps(statistics).encode())

    def collect(self) -> Iterator[Metric]:
        """In a scrape thread."""
        body = self.question.ask()
        if body is None:
            raise LoopUnanswered("the proxy loop did not answer")
        yield from families(json.loads(body))

    def close(self) -> None:
        self.server.shutdown()
        self.question.close()


def families(stats: dict) -> Iterator[Metric]:
    """Metric families of one STATISTICS dict."""
    for key, doc in COUNTERS.items():
        yield CounterMetricFamily(f"pyis_proxy_{key}", doc, value=stats[key])
    yield GaugeMetricFamily("pyis_proxy_hosts", "Image hosts present", value=len(stats["hosts"]))
    yield GaugeMetricFamily("pyis_proxy_paused", "1 while paused", value=int(stats["paused"]))
    for key, (name, doc) in HOST_GAUGES.items():
        family = GaugeMetricFamily(name, doc, labels=["host", "link"])
        for host in stats["hosts"]:
            family.add_metric([host["name"], host["link"]], host[key])
        yield family
    served = CounterMetricFamily(
        "pyis_proxy_host_served", "Replies the image host sent back", labels=["host", "link"]
    )
    for host in stats["hosts"]:
        served.add_metric([host["name"], host["link"]], host["served"])
    yield served
