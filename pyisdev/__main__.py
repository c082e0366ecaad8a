"""``is-dev``: the whole stack on loopback, without root, for development and demos.

Starts a private ``redis-server`` (standing in for the web host's session Redis), generates an
RSA key pair, signs an ``isAuth`` for one session, and runs ``is-proxy`` and ``is-procmgr`` on
ephemeral loopback ports. Ctrl-C or SIGTERM stops everything. ``--demo FILE -o OUT`` renders one
image through the real stack and exits: the quickest proof that it all works.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from iscli import cli
from procmgr.__main__ import dev_user
from pyis_common.version import add_version
from pyisdev import procs
from pyisdev.stack import Stack


def readable_by(user: str, folder: str) -> bool:
    """Whether ``user`` may list and enter ``folder`` (and every directory above it), asked of
    the kernel as that user: the worker will run as it, and permissions are the last word."""
    if os.geteuid() != 0:
        return os.access(folder, os.R_OK | os.X_OK)
    pw = pwd.getpwnam(user)
    probe = ["test", "-d", folder, "-a", "-r", folder, "-a", "-x", folder]
    done = subprocess.run(probe, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], check=False)
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="is-dev", description=__doc__)
    add_version(ap)
    ap.add_argument("--data", default=".", help="directory served as the ESAF home")
    ap.add_argument("--demo", metavar="FILE", help="render FILE (relative to --data) and exit")
    ap.add_argument("-o", "--output", default="demo.jpg", help="where --demo writes the JPEG")
    ap.add_argument("--xsize", type=int, default=512)
    ap.add_argument("--web", action="store_true", help="also run is-web; print a login link")
    args = ap.parse_args(argv)
    data = os.path.abspath(args.data)
    if not readable_by(dev_user(), data):  # else every request fails as "could not start"
        print(
            f"is-dev: the worker runs as {dev_user()!r}, who cannot read {data}: serve a "
            "directory it can list and enter (every directory above it needs o+x)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="pyis-dev-") as tmp:
        stack = Stack(Path(tmp), ["--dev", data])
        try:
            stack.start()
            pid = stack.sign_session(dev_user(), [0])
            if args.demo:
                return cli.main(
                    [
                        "--endpoint",
                        stack.endpoint,
                        "--pid",
                        pid,
                        "jpeg",
                        args.demo,
                        "--xsize",
                        str(args.xsize),
                        "-o",
                        args.output,
                    ]
                )
            jwt_pid, token = stack.token(dev_user(), [0], lifetime_s=3600)
            viewer = ""
            if args.web:
                stack.start_web()
                viewer = f"  viewer: open {stack.login_url(pid)} (a one-time link)\n"
            print(
                f"pyis dev stack up: serving {data}\n"
                f"  export PYIS_ENDPOINT={stack.endpoint} PYIS_REDIS={stack.redis_url}\n"
                f"  # a signed isAuth session (the C server's form):\n"
                f"  export PYIS_PID={pid}\n"
                f"  # or a JWT session certified by this stack's throwaway CA (valid 1 h):\n"
                f"  # export PYIS_PID={jwt_pid} PYIS_AUTH={token}\n"
                f"  is-cli jpeg <file relative to {data}> -o out.jpg\n"
                f"  (the CA, the signing certificate and the CRL are in {stack.workdir})\n"
                f"{viewer}Ctrl-C stops it.",
                flush=True,
            )
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        except procs.StartError as exc:
            print(f"is-dev: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
