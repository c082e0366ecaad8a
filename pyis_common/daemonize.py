"""Run as a classic Unix daemon on hosts without systemd (python-daemon, PEP 3143).

Under systemd the services run in the foreground (Type=exec) and log to the journal; elsewhere
``--daemon`` detaches (double fork, new session, cwd /, closed descriptors), writes a locked
pid file and sends stdout and stderr to ``--log-file``. It must happen before any thread,
ZeroMQ context or zygote exists: the fork would leave them behind.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--daemon", action="store_true", help="detach (for hosts without systemd)")
    ap.add_argument("--pidfile", help="with --daemon: a locked pid file")
    ap.add_argument("--log-file", help="with --daemon: where stdout and stderr go")


def context(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """A DaemonContext for ``--daemon``, else a no-op context."""
    if not args.daemon:
        return contextlib.nullcontext()
    import daemon
    import daemon.pidfile

    log = open(args.log_file, "a", buffering=1) if args.log_file else None  # noqa: SIM115
    return daemon.DaemonContext(
        pidfile=daemon.pidfile.TimeoutPIDLockFile(args.pidfile, 5) if args.pidfile else None,
        stdout=log,
        stderr=log,
        umask=0o022,
        signal_map={},  # our own handlers (signals.SignalQueue) are installed afterwards
    )
