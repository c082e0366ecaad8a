"""The procmgr's metrics: one store for Prometheus and the ``status`` request.

The store is a few plain counters the loop bumps once per request (a dict entry and a bucket:
about a microsecond, where prometheus-client's labelled collectors cost the loop several per
request, before each reply). A collector registered with the Prometheus registry reads the
same counters when it is scraped, and ``snapshot`` reads them for the ``status`` answer, so the
two can never disagree. The gauges (workers, requests in flight, the worker cache counters)
are the loop's state: ``status`` takes them from the loop directly, and a scrape (in an HTTP
thread, which never reads the loop's state) asks the loop for them (procmgr/statuspage.py).
The worker cache counters are the last values each worker reported with a reply, summed, so
neither ever waits on a worker.

One latency bucket set, dense around the 500 ms an interactive view may take (DESIGN.md): a
histogram then says how many requests made the budget and by how much the others missed it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

BUDGET_S = 0.5
LATENCY_BUCKETS_S = (
    *(0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.2, 0.3, 0.4, BUDGET_S, 0.6, 0.75, 1.0),
    *(2.5, 10.0, 60.0),  # index jobs and cold giant frames
)
Gauges = dict[str, Any]  # {"workers": n, "in_flight": n, "cache": {counter: n}}
NO_GAUGES: Gauges = {"workers": 0, "in_flight": 0, "cache": {}}


class Metrics:
    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}  # (type, outcome) -> requests
        self.buckets: dict[str, list[int]] = {}  # type -> count per bucket (the last: +Inf)
        self.sums: dict[str, float] = {}  # type -> seconds
        self.gauges: Gauges = NO_GAUGES  # the last the loop gave (a scrape it did not answer)
        self.cache: dict[str, int] = {}  # a counter once reported keeps its last value
        self.ask_gauges: Callable[[], Gauges | None] = lambda: None  # set by the status page
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def observe(self, jtype: str, outcome: str, seconds: float) -> None:
        """One answered request (on the loop)."""
        key = (jtype, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        counts = self.buckets.get(jtype)
        if counts is None:
            counts = self.buckets[jtype] = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self.sums[jtype] = 0.0
        counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1  # le: at most the bound
        self.sums[jtype] += seconds

    def current(self, workers: int, in_flight: int, cache_totals: dict[str, int]) -> Gauges:
        """The gauges now (on the loop): what ``status`` shows and a scrape asks for."""
        self.cache.update(cache_totals)
        self.gauges = {"workers": workers, "in_flight": in_flight, "cache": dict(self.cache)}
        return self.gauges

    def snapshot(self, gauges: Gauges) -> dict[str, Any]:
        """The store as the ``status`` answer has it: outcome counts over all types, and per
        type the count in each latency bucket (not cumulative)."""
        outcomes: dict[str, int] = {}
        for (_, outcome), n in dict(self.outcomes).items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        return {
            "workers": gauges["workers"],
            "in_flight": gauges["in_flight"],
            "cache": gauges["cache"],
            "requests": outcomes,
            "latency_ms_buckets": [round(b * 1000) for b in LATENCY_BUCKETS_S] + ["inf"],
            "latency": {jtype: list(counts) for jtype, counts in dict(self.buckets).items()},
        }


class _Collector:
    """What a scrape reads (in an HTTP thread): copies of the counters, the loop's gauges."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        gauges = m.ask_gauges()
        if gauges is not None:
            m.gauges = gauges
        gauges = m.gauges
        requests = CounterMetricFamily(
            "pyis_requests",
            "Requests answered, by job type and outcome code",
            labels=["type", "outcome"],
        )
        for (jtype, outcome), n in dict(m.outcomes).items():
            requests.add_metric([jtype, outcome], n)
        yield requests
        latency = HistogramMetricFamily(
            "pyis_request_seconds", "Time from request to reply, by job type", labels=["type"]
        )
        sums = dict(m.sums)
        for jtype, counts in dict(m.buckets).items():
            bounds = [*map(floatToGoString, LATENCY_BUCKETS_S), "+Inf"]
            cumulative, total = [], 0
            for bound, n in zip(bounds, list(counts), strict=True):
                total += n
                cumulative.append((bound, float(total)))
            latency.add_metric([jtype], cumulative, sums.get(jtype, 0.0))
        yield latency
        yield GaugeMetricFamily("pyis_workers", "Workers running", value=gauges["workers"])
        yield GaugeMetricFamily("pyis_in_flight", "Requests in flight", value=gauges["in_flight"])
        cache = GaugeMetricFamily(
            "pyis_worker_cache", "Stage-1 cache counters summed over workers", labels=["counter"]
        )
        for name, value in dict(gauges["cache"]).items():
            cache.add_metric([name], value)
        yield cache
