"""Operations: the status request, the Prometheus endpoint, config errors, SIGHUP."""

from __future__ import annotations

import json
import pwd
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from procmgr.__main__ import dev_user
from procmgr.metrics import Metrics
from procmgr.statuspage import StatusPage
from pyisdev.stack import Stack
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack


@pytest.fixture(scope="module")
def stack(testdata) -> Iterator[Stack]:
    with dev_stack(testdata, args=("--metrics", "127.0.0.1:0")) as stack:
        yield stack


def test_metrics_count_requests_by_type_and_outcome(stack):
    pid = stack.sign_session(dev_user(), [0])
    assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64})[0] == b""
    assert (
        error_code(ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "missing.cbf"}))
        == "not_found"
    )
    address = stack.procmgr.fields()["metrics"]
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    assert 'pyis_requests_total{outcome="ok",type="jpeg"} 1.0' in text
    assert 'pyis_requests_total{outcome="not_found",type="jpeg"} 1.0' in text
    assert 'pyis_request_seconds_bucket{le="0.5",type="jpeg"}' in text
    assert "pyis_workers 1.0" in text


def test_status_reports_workers_cache_and_outcomes(stack):
    status = stack.status_detail()
    assert status["requests"]["ok"] >= 1
    (worker,) = status["workers"]
    assert worker["ready"] and worker["pid"] > 0
    assert worker["cache"]["misses"] >= 1 and worker["cache"]["max_bytes"] > 0
    assert sum(status["latency"]["jpeg"]) >= 2
    assert len(status["latency"]["jpeg"]) == len(status["latency_ms_buckets"])


def test_public_status_says_counts_and_only_the_loopback_page_says_who(stack):
    """Anyone who reaches the proxy may ask ``status``: no uid, ESAF or pid in its answer."""
    pid = stack.sign_session(dev_user(), [7])
    assert (
        ask(stack.endpoint, {"type": "jpeg", "pid": pid, "esaf": 7, "fn": "a.cbf", "xsize": 64})[0]
        == b""
    )
    public = json.loads(ask(stack.endpoint, {"pid": "monitor", "type": "status"})[2])
    assert type(public["workers"]) is int and public["workers"] >= 1
    assert not {"uid", "esaf", "pid"} & set(json.dumps(public).replace('"', " ").split())
    detail = stack.status_detail()
    uid = pwd.getpwnam(dev_user()).pw_uid
    assert any(w["uid"] == uid and w["esaf"] == 7 and w["pid"] > 0 for w in detail["workers"])


def test_status_detail_is_not_served_on_a_non_loopback_address():
    ctx = zmq.Context()
    page = StatusPage(ctx, Metrics(), "0.0.0.0:0")  # no loop: a scrape shows no gauges
    try:
        port = page.address.rpartition(":")[2]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10)
        assert refused.value.code == 404
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status == 200  # the counters are still there for a scraper
    finally:
        page.close()
        ctx.term()


def test_sighup_reloads_and_keeps_serving(stack):
    stack.procmgr.signal(signal.SIGHUP)
    pid = stack.sign_session(dev_user(), [0])
    assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64})[0] == b""
    assert "SIGHUP" in (Path(stack.workdir) / "procmgr.log").read_text()


def test_sighup_the_moment_ready_is_printed_reloads_instead_of_killing(testdata):
    """systemd's ExecReload may follow READY at once: the handlers are in place before it."""
    with dev_stack(testdata) as stack:
        stack.procmgr.signal(signal.SIGHUP)  # no request first: the loop may not be up yet
        pid = stack.sign_session(dev_user(), [0])
        assert (
            ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64})[0] == b""
        )
        assert stack.procmgr.proc.poll() is None


@pytest.mark.parametrize(
    "text,words",
    [
        ("[procmgr]\nrequest_timout_s = 3\n", "procmgr.request_timout_s"),
        ('[procmgr]\nworker_threads = "many"\n', "procmgr.worker_threads"),
        ("[nonsense]\n", "[nonsense]"),
        ("[procmgr\n", "cannot read config"),
    ],
)
def test_bad_config_is_refused_at_start_naming_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "procmgr", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert words in result.stderr


def test_sighup_applies_a_changed_config_and_survives_a_broken_one(testdata):
    with dev_stack(testdata, "max_message_bytes = 65536") as stack:
        config, log = stack.workdir / "procmgr.toml", stack.workdir / "procmgr.log"
        pid = stack.sign_session(dev_user(), [0])
        job = {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64, "label": "x" * 200}
        assert ask(stack.endpoint, job)[0] == b""
        config.write_text("[procmgr]\nmax_message_bytes = 100\ncompat_enabled = false\n")
        stack.procmgr.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "configuration reloaded" not in log.read_text():
            assert time.monotonic() < deadline
            ask(stack.endpoint, {"pid": "monitor", "type": "status"})  # a loop turn
        reply = ask(stack.endpoint, job)
        assert error_code(reply) == "bad_request" and b"100 bytes" in reply[0]
        assert "compat_enabled needs a restart" in log.read_text()
        config.write_text("[procmgr\n")
        stack.procmgr.signal(signal.SIGHUP)
        while "config not reloaded" not in log.read_text():
            assert time.monotonic() < deadline
            ask(stack.endpoint, {"pid": "monitor", "type": "status"})
        assert error_code(ask(stack.endpoint, job)) == "bad_request"  # the last good config
