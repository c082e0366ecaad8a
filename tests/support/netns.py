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

SUBNET = "10.231"


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
