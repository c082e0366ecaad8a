"""Hosts made of network namespaces and veth pairs, for tests of the multi-host deployment.

Each image host ``i`` is a namespace joined to the web host's namespace by one veth pair:
``10.231.<i>.1`` on the web side, ``10.231.<i>.2`` on the image side, and nothing else (no
route to anything outside; private addresses only on the veths made here). The filesystem is
shared, so every host sees the same data directory. Everything made is removed on the way out,
also after a failure, and any process left inside is killed first.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from pyisdev import procs
from pyisdev.stack import Stack

SUBNET = "10.231"
BACKEND_PORT = 60203  # each namespace has its own ports
FRONTEND = "tcp://127.0.0.1:60202"  # in the web namespace, where the clients run


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Site:
    web: str
    images: list[str] = field(default_factory=list)

    @staticmethod
    def inside(ns: str) -> tuple[str, ...]:
        """The prefix that runs a command inside namespace ``ns``."""
        return ("ip", "netns", "exec", ns)

    @staticmethod
    def web_address(i: int) -> str:
        """The web host as image host ``i`` reaches it."""
        return f"{SUBNET}.{i}.1"

    def cut(self, i: int) -> None:
        """Partition image host ``i``: its link down (its routes go with it)."""
        ip("-n", self.images[i - 1], "link", "set", f"h{i}", "down")

    def heal(self, i: int) -> None:
        ip("-n", self.images[i - 1], "link", "set", f"h{i}", "up")


def _remove(ns: str) -> None:
    found = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its veths along


@contextmanager
def site(n_images: int) -> Iterator[Site]:
    prefix = f"pyis-{secrets.token_hex(3)}"
    made = Site(web=f"{prefix}-web")
    try:
        ip("netns", "add", made.web)
        ip("-n", made.web, "link", "set", "lo", "up")
        for i in range(1, n_images + 1):
            ns = f"{prefix}-img{i}"
            ip("netns", "add", ns)
            made.images.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", made.web, "link", "add", f"w{i}", "type", "veth", "peer", f"h{i}", "netns", ns)
            ip("-n", made.web, "addr", "add", f"{SUBNET}.{i}.1/24", "dev", f"w{i}")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{i}.2/24", "dev", f"h{i}")
            ip("-n", made.web, "link", "set", f"w{i}", "up")
            ip("-n", ns, "link", "set", f"h{i}", "up")
        yield made
    finally:
        for ns in [*made.images, made.web]:
            _remove(ns)


def start_web(stack: Stack, site: Site, wrap: tuple[str, ...] = ()) -> None:
    """Session Redis (TCP on the web namespace's veths; a Unix socket for the test to sign
    sessions, reachable from outside any network namespace) and the proxy; ``wrap`` as for
    ``start_image_host``."""
    web = (*wrap, *site.inside(site.web))
    unix = stack.workdir / "session-redis.sock"
    stack.redis_proc, stack.redis_port = procs.redis_server(
        stack.workdir,
        ["--bind", "0.0.0.0", "--protected-mode", "no", "--unixsocket", str(unix)],
        wrap=web,
    )
    stack.procs.append(stack.redis_proc)
    stack.redis = redis.Redis(unix_socket_path=str(unix))
    stack.proxy = stack._run(
        "proxy",
        [
            *web,
            *procs.pyis_command("is_proxy"),
            "--frontend",
            FRONTEND,
            "--backend",
            f"tcp://0.0.0.0:{BACKEND_PORT}",
            "--control",
            f"ipc://{stack.workdir / 'proxy-run' / 'control'}",
            *stack.proxy_curve_args(),
        ],
    )
    stack.endpoint, stack.control = FRONTEND, stack.proxy.fields()["control"]


def start_image_host(stack: Stack, site: Site, i: int, wrap: tuple[str, ...] = ()) -> procs.Proc:
    """``wrap`` goes before ``ip netns exec`` (e.g. a cgroup placement)."""
    inside = (*wrap, *site.inside(site.images[i - 1]))
    stack.start_cache_redis(wrap=inside)
    stack.backend = f"tcp://{site.web_address(i)}:{BACKEND_PORT}"
    stack.redis_url = f"redis://{site.web_address(i)}:{stack.redis_port}/0"
    return stack.start_procmgr(wrap=inside, name=f"procmgr{i}")
