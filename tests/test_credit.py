"""The procmgr's credit announcements over the real proxy link (a real ROUTER connecting to a
DEALER that stands for the proxy): a capacity that grew, as when a long-poll brings its own
slot, is announced at once; otherwise once a heartbeat interval."""

from __future__ import annotations

import dataclasses

import zmq

from procmgr.proxylink import ProxyLink
from pyis_common import hostlink
from pyis_common.config import ProcmgrConfig

INTERVAL = hostlink.HEARTBEAT_INTERVAL_S


def heard(proxy: zmq.Socket, timeout_ms: int = 5000) -> int:
    assert proxy.poll(timeout_ms, zmq.POLLIN), "no heartbeat"
    beat = hostlink.parse(proxy.recv_multipart())
    assert beat is not None
    return beat.capacity


def test_a_grown_capacity_is_announced_before_the_next_heartbeat():
    ctx = zmq.Context()
    proxy = ctx.socket(zmq.DEALER)
    proxy.setsockopt(zmq.LINGER, 0)
    proxy.bind("tcp://127.0.0.1:*")
    cfg = dataclasses.replace(
        ProcmgrConfig(), proxies=(proxy.getsockopt_string(zmq.LAST_ENDPOINT),)
    )
    link = ProxyLink(ctx, cfg)
    try:
        now = 1000.0
        while not proxy.poll(100, zmq.POLLIN):  # until connected: ROUTER drops the beats before
            now += INTERVAL
            link.beat(now, 4)
        assert heard(proxy) == 4
        link.beat(now + INTERVAL / 10, 4)  # within the interval, nothing new: no beat
        link.beat(now + INTERVAL / 5, 3)  # a drop waits for the interval
        link.beat(now + INTERVAL / 4, 6)  # a long-poll arrived: its slot is announced now
        assert heard(proxy) == 6
        link.beat(now + INTERVAL / 4 + INTERVAL, 5)
        assert heard(proxy) == 5  # the interval's beat carries the drop
    finally:
        link.close()
        proxy.close(0)
        ctx.term()
