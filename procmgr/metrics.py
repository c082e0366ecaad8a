"""Prometheus metrics for the procmgr, served on a loopback port (procmgr/statuspage.py).

The main loop updates them; prometheus-client's own thread serves them. The worker cache
counters are the last values each worker reported with a reply, summed, so a scrape never
waits on a worker.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pyis_requests",
            "Requests answered, by job type and outcome code",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pyis_request_seconds",
            "Time from request to reply, by job type",
            ["type"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.workers = Gauge("pyis_workers", "Workers running", registry=self.registry)
        self.in_flight = Gauge("pyis_in_flight", "Requests in flight", registry=self.registry)
        self.cache = Gauge(
            "pyis_worker_cache",
            "Stage-1 cache counters summed over workers",
            ["counter"],
            registry=self.registry,
        )

    def observe(self, jtype: str, outcome: str, seconds: float) -> None:
        self.requests.labels(jtype, outcome).inc()
        self.latency.labels(jtype).observe(seconds)

    def refresh(self, workers: int, in_flight: int, cache: Callable[[], dict[str, int]]) -> None:
        self.workers.set(workers)
        self.in_flight.set(in_flight)
        for name, value in cache().items():
            self.cache.labels(name).set(value)
