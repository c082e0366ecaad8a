"""One source of metrics: what Prometheus scrapes from the procmgr and from the proxy is what
the ``status`` request and the proxy's STATISTICS answer, taken from the real endpoints."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import zmq
from prometheus_client.parser import text_string_to_metric_families

from procmgr.__main__ import dev_user
from pyis_common import hostlink
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack
from tests.test_control import statistics
from tests.test_hosts import SLACK_S, wait_until


def scrape(address: str) -> dict[str, list]:
    """Samples by name: [(labels, value)]."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_the_status_answer_is_the_prometheus_store_with_buckets_around_the_budget(testdata):
    with dev_stack(testdata) as stack:
        pid = stack.sign_session(dev_user(), [0])
        for xsize in (64, 72, 80):
            job = {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": xsize}
            assert ask(stack.endpoint, job)[0] == b""
        missing = {"type": "jpeg", "pid": pid, "fn": "missing.cbf"}
        assert error_code(ask(stack.endpoint, missing)) == "not_found"
        # the status request counts itself; nothing happens between it and the scrape
        status = json.loads(ask(stack.endpoint, {"pid": "monitor", "type": "status"})[2])
        scraped = scrape(stack.procmgr.fields()["metrics"])

    outcomes: dict[str, float] = {}
    for labels, value in scraped["pyis_requests_total"]:
        outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + value
    assert status["requests"] == outcomes == {"ok": 4, "not_found": 1}  # 3 jpeg, 1 status
    buckets = scraped["pyis_request_seconds_bucket"]
    jpeg = [(labels["le"], v) for labels, v in buckets if labels["type"] == "jpeg"]
    bounds = [float(le) * 1000 for le, _ in jpeg if le != "+Inf"]
    assert status["latency_ms_buckets"] == [*bounds, "inf"]
    cumulative = [v for _, v in jpeg]
    assert status["latency"]["jpeg"] == [
        n - prev for n, prev in zip(cumulative, [0, *cumulative], strict=False)
    ]
    assert sum(status["latency"]["jpeg"]) == 4
    assert status["workers"] == scraped["pyis_workers"][0][1] == 1
    assert (
        status["cache"]["misses"]
        == dict((labels["counter"], v) for labels, v in scraped["pyis_worker_cache"])["misses"]
    )
    # one bucket set, dense around the 500 ms an interactive view may take
    assert 500 in bounds and len([b for b in bounds if 100 < b < 1000]) >= 5


def host_rows(scraped: dict[str, list], name: str) -> dict[str, dict[str, float]]:
    """Per host name, the value of each per-host gauge."""
    rows: dict[str, dict[str, float]] = {}
    for labels, value in scraped.get(name, []):
        rows.setdefault(labels["host"], {})[name] = value
    return rows


def test_the_proxy_exports_per_host_credit_heartbeat_age_and_in_flight_as_statistics_does(
    testdata,
):
    with dev_stack(testdata) as stack:
        address = stack.proxy.fields()["metrics"]
        wait_until("the procmgr is heard", lambda: len(statistics(stack.control)["hosts"]) == 1)
        job = {"type": "jpeg", "pid": stack.sign_session(dev_user(), [0]), "fn": "a.cbf"}
        assert ask(stack.endpoint, job | {"xsize": 64})[0] == b""
        scraped, (host,) = scrape(address), statistics(stack.control)["hosts"]
        assert scraped["pyis_proxy_hosts"] == [({}, 1)]
        assert scraped["pyis_proxy_requests_total"] == [({}, 1)]
        labels = {"host": host["name"], "link": host["link"]}
        for key in ("capacity", "credit", "in_flight", "served"):
            name = f"pyis_proxy_host_{key}" + ("_total" if key == "served" else "")
            assert scraped[name] == [(labels, host[key])], name
        assert host["in_flight"] == 0 and host["credit"] == host["capacity"] > 0
        ((_, age),) = scraped["pyis_proxy_host_heartbeat_age_seconds"]
        assert 0 <= age <= hostlink.HEARTBEAT_INTERVAL_S + SLACK_S

        os.kill(stack.procmgr.pid, signal.SIGSTOP)  # hung: the request stays in flight there
        client = zmq.Context.instance().socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        try:
            client.connect(stack.endpoint)
            client.send_multipart([b"", json.dumps(job | {"xsize": 72}).encode()])
            in_flight = lambda: host_rows(scrape(address), "pyis_proxy_host_in_flight")  # noqa: E731
            wait_until(
                "the request in flight",
                lambda: in_flight()[host["name"]] == {"pyis_proxy_host_in_flight": 1},
            )
            (during,) = statistics(stack.control)["hosts"]
            assert during["in_flight"] == 1 and during["credit"] == host["capacity"] - 1
            assert client.poll(int((hostlink.HOST_DEAD_AFTER_S + SLACK_S) * 1000))
            assert client.recv_multipart()[1].startswith(b"busy:")
            after = scrape(address)
        finally:
            os.kill(stack.procmgr.pid, signal.SIGCONT)
            client.close(0)
        assert after["pyis_proxy_hosts"] == [({}, 0)]
        assert after["pyis_proxy_host_lost_total"] == [({}, 1)]
        assert "pyis_proxy_host_in_flight" not in after  # a host given up is not shown
        assert statistics(stack.control)["host_lost"] == 1
