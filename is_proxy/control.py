"""The proxy's control socket: off unless configured, and then only an ipc socket in a private
directory, so no other local user can PAUSE or TERMINATE the broker.

A tcp endpoint, even on loopback, is open to every account on the host, and ZeroMQ has no
peer credentials to check; an ipc socket is a file, and a directory of mode 0700 owned by the
proxy's user keeps everyone else from reaching it (systemd: ``RuntimeDirectory=is-proxy``,
``RuntimeDirectoryMode=0700``).

Commands (REP): ``PAUSE``, ``RESUME``, ``TERMINATE`` -> ``OK``; ``STATISTICS`` -> JSON.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Protocol

import zmq

log = logging.getLogger("is_proxy")
MAX_COMMAND_BYTES = 4096  # a command is one short word
CLOSE_LINGER_MS = 1000  # how long a closing proxy tries to deliver its last reply (TERMINATE's)


class Controlled(Protocol):
    """What the commands act on: the proxy's loop (is_proxy/proxy.py)."""

    paused: bool

    def shutdown(self, why: str) -> None: ...

    def statistics(self) -> dict: ...


class ControlEndpointError(ValueError):
    """The control endpoint would be reachable by other local users."""


def private_ipc_path(endpoint: str) -> Path:
    """The socket's path, once its directory is known to be ours alone (made 0700 if absent)."""
    if not endpoint.startswith("ipc://") or endpoint.startswith("ipc://@"):
        raise ControlEndpointError(
            f"control {endpoint!r}: only ipc:///path in a directory of mode 0700 is allowed "
            "(tcp and abstract sockets are open to every local user)"
        )
    path = Path(endpoint[len("ipc://") :])
    if not path.is_absolute():
        raise ControlEndpointError(f"control {endpoint!r}: the ipc path must be absolute")
    directory = path.parent
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ControlEndpointError(f"control directory {directory} is not a directory we own")
    if info.st_mode & 0o077:
        raise ControlEndpointError(
            f"control directory {directory} has mode {stat.S_IMODE(info.st_mode):o}; "
            "it must be 0700 so that no other user reaches the socket"
        )
    return path


def bind(ctx: zmq.Context, endpoint: str) -> zmq.Socket | None:
    """The REP socket on a private ipc path, or None when the control socket is off ("")."""
    if not endpoint:
        return None
    private_ipc_path(endpoint)
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_COMMAND_BYTES)
    sock.bind(endpoint)
    return sock


def answer(sock: zmq.Socket, proxy: Controlled) -> None:
    """Read one command from ``sock``, carry it out on ``proxy`` and send its reply."""
    command = sock.recv().decode("ascii", "replace").strip().upper()
    reply = "OK"
    if command == "PAUSE":
        proxy.paused = True
    elif command == "RESUME":
        proxy.paused = False
    elif command == "TERMINATE":
        proxy.shutdown("control")
    elif command == "STATISTICS":
        reply = json.dumps(proxy.statistics())
    else:
        reply = "ERROR unknown command"
    sock.send_string(reply)
    log.info("control %s -> %s", command[:20], reply[:80])


def close(sock: zmq.Socket) -> None:
    """Close with a linger: linger 0 (as bound) could drop TERMINATE's OK still queued."""
    sock.close(linger=CLOSE_LINGER_MS)
