"""The procmgr's metrics: one store for Prometheus and the ``status`` request.

The prometheus-client collectors are the store. The loopback endpoint (procmgr/statuspage.py)
serves them to Prometheus; ``snapshot`` reads the same collectors back for the ``status``
answer, so the two can never disagree. The worker cache counters are the last values each
worker reported with a reply, summed, so neither ever waits on a worker.

One latency bucket set, dense around the 500 ms an interactive view may take (DESIGN.md): a
histogram then says how many requests made the budget and by how much the others missed it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.samples import Sample

BUDGET_S = 0.5
LATENCY_BUCKETS_S = (
    *(0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.2, 0.3, 0.4, BUDGET_S, 0.6, 0.75, 1.0),
    *(2.5, 10.0, 60.0),  # index jobs and cold giant frames
)


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
            buckets=LATENCY_BUCKETS_S,
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

    def snapshot(self) -> dict[str, Any]:
        """The collectors' values as the ``status`` answer has them: outcome counts over all
        types, and per type the count in each latency bucket (not cumulative)."""
        outcomes: dict[str, int] = {}
        for sample in samples(self.requests, "pyis_requests_total"):
            outcome = sample.labels["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + int(sample.value)
        cumulative: dict[str, list[int]] = {}
        for sample in samples(
            self.latency, "pyis_request_seconds_bucket"
        ):  # in bucket order, per type
            cumulative.setdefault(sample.labels["type"], []).append(int(sample.value))
        return {
            "workers": int(samples(self.workers, "pyis_workers")[0].value),
            "in_flight": int(samples(self.in_flight, "pyis_in_flight")[0].value),
            "cache": {
                s.labels["counter"]: int(s.value) for s in samples(self.cache, "pyis_worker_cache")
            },
            "requests": outcomes,
            "latency_ms_buckets": [round(b * 1000) for b in LATENCY_BUCKETS_S] + ["inf"],
            "latency": {
                jtype: [n - prev for n, prev in zip(counts, [0, *counts], strict=False)]
                for jtype, counts in cumulative.items()
            },
        }


def samples(metric: Counter | Gauge | Histogram, name: str) -> list[Sample]:
    """The samples called ``name`` (a family has several: ``_bucket``, ``_count``, ...)."""
    return [s for family in metric.collect() for s in family.samples if s.name == name]
