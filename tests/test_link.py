"""The proxy <-> procmgr link: a hostile proxy cannot grow the procmgr, and a stopped peer is
noticed within the heartbeat timeout by the other end, which recovers by itself."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import zmq

from procmgr.proxylink import REARM_AFTER_S
from pyis_common import curve, hostlink
from pyis_common.zmtplink import LINK_DOWN_WITHIN_S
from pyisdev.stack import Stack
from tests.support import logs
from tests.support.client import ask
from tests.support.devsite import dev_stack

MIB = 1 << 20
SLACK_S = 3.0  # a loaded 2-core CI box may run a process's loop late by this much
STATUS = json.dumps({"pid": "monitor", "type": "status"}).encode()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


class RogueProxy:
    """A compromised web host: the proxy's certificate, and whatever messages it likes."""

    def __init__(self, stack: Stack) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.auth = curve.serve(
            self.ctx, self.sock, str(stack.proxy_secret), str(stack.curve_clients)
        )
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def status(self, client: bytes) -> list[bytes]:
        assert self.sock.poll(20000, zmq.POLLOUT), "the procmgr never connected"
        self.sock.send_multipart([client, b"", STATUS])
        while True:
            assert self.sock.poll(20000, zmq.POLLIN), "no answer over the rogue link"
            frames = self.sock.recv_multipart()
            if not hostlink.is_control(frames):  # the procmgr's heartbeats come too
                return frames

    def close(self) -> None:
        self.sock.close(0)
        self.auth.stop()
        self.ctx.term()


def test_a_hostile_proxy_is_dropped_and_the_procmgr_does_not_grow(testdata):
    rogue: list[RogueProxy] = []

    def add_rogue(stack: Stack) -> list[str]:
        rogue.append(RogueProxy(stack))
        return ["--proxy", rogue[0].endpoint]

    with dev_stack(testdata, before_start=add_rogue) as stack:
        proxy, log = rogue[0], stack.workdir / "procmgr.log"
        try:
            assert proxy.status(b"c1")[:2] == [b"c1", b""]  # the link works both ways
            # many small frames pass MAXMSGSIZE: counted as they are read, dropped, logged
            proxy.sock.send_multipart([b"c2"] + [b"hop"] * 40 + [b"", STATUS])
            logs.wait_for(log, "dropped a message of 43 frames", 20)
            assert proxy.status(b"c3")[:2] == [b"c3", b""]
            # a frame over max_message_bytes: libzmq drops that proxy before reading it
            reset_peak_rss(stack.procmgr.pid)
            before = rss_kib(stack.procmgr.pid)
            proxy.sock.send_multipart([b"c4", b""] + [b"x" * MIB] * 64)
            logs.wait_for(log, "proxy link lost", 20)
            grown_kib = rss_kib(stack.procmgr.pid, "VmHWM") - before
            assert grown_kib < 16 * 1024, f"the procmgr grew by {grown_kib} KiB"
            assert ask(stack.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
            # libzmq gives up on a peer after a protocol error; the procmgr re-arms it
            logs.wait_for(log, "reconnecting to proxy", REARM_AFTER_S + 20)
            assert proxy.status(b"c5")[:2] == [b"c5", b""]
        finally:
            proxy.close()


def test_a_stopped_proxy_or_procmgr_is_noticed_within_the_heartbeat_timeout(testdata):
    with dev_stack(testdata) as stack:
        for stopped, watcher, line in (
            (stack.proxy, "procmgr", "proxy link lost"),
            (stack.procmgr, "proxy", "procmgr link lost"),
        ):
            log, up = stack.workdir / f"{watcher}.log", line.replace("lost", "up")
            logs.wait_for(log, up, 20)  # up first: a handshake with a stopped peer never ends
            ups, losses = logs.count(log, up), logs.count(log, line)
            os.kill(stopped.pid, signal.SIGSTOP)  # TCP stays open: only heartbeats tell
            try:
                noticed_s = logs.wait_for(
                    log, line, LINK_DOWN_WITHIN_S + SLACK_S, at_least=losses + 1
                )
            finally:
                os.kill(stopped.pid, signal.SIGCONT)
            assert noticed_s <= LINK_DOWN_WITHIN_S + SLACK_S
            logs.wait_for(log, up, 20, at_least=ups + 1)
            assert ask(stack.endpoint, {"pid": "monitor", "type": "status"})[0] == b""


def test_a_procmgr_that_shuts_down_says_so_and_its_link_closes_without_a_warning(testdata):
    """A restart is routine: the procmgr's last heartbeat announces no capacity, so the proxy
    logs the dropped link as news (INFO), not as the fault it logs for a vanished peer."""
    with dev_stack(testdata) as stack:
        log = stack.workdir / "proxy.log"
        logs.wait_for(log, "procmgr link up", 20)
        assert ask(stack.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
        assert stack.procmgr.stop() == 0  # SIGTERM: the way systemd stops it
        logs.wait_for(log, "procmgr link closed", 20)
        assert logs.count(log, "procmgr link lost") == 0
