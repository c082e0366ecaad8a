"""``is-proxy``: run the broker; prints one READY line with the bound endpoints."""

from __future__ import annotations

import argparse
import logging
import sys

from is_proxy.proxy import Proxy
from pyis_common import config, daemonize
from pyis_common.logsetup import setup_logging


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="is-proxy", description=__doc__)
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--frontend", help="clients connect here (default tcp://127.0.0.1:60202)")
    ap.add_argument("--backend", help="procmgrs connect here (default tcp://127.0.0.1:60203)")
    ap.add_argument(
        "--control", help="control socket, ipc:///DIR/NAME with DIR mode 0700 (default: none)"
    )
    ap.add_argument("--curve-secret", help="CURVE certificate (.key_secret) for the backend")
    ap.add_argument("--curve-clients", help="directory of procmgr public certificates")
    ap.add_argument("--log-level", default="INFO")
    daemonize.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        cfg = config.load(
            args.config,
            {
                "proxy": {
                    "frontend": args.frontend,
                    "backend": args.backend,
                    "control": args.control,
                    "curve_secret": args.curve_secret,
                    "curve_clients": args.curve_clients,
                }
            },
        )
    except config.ConfigError as exc:
        print(f"is-proxy: {exc}", file=sys.stderr)
        return 2
    with daemonize.context(args):
        return serve(cfg, args.log_level)


def serve(cfg: config.Config, log_level: str) -> int:
    setup_logging("is-proxy", log_level)
    try:
        proxy = Proxy(cfg.proxy)
    except Exception as exc:  # zmq.ZMQError on a bad or busy endpoint, an open control dir
        print(f"is-proxy: cannot start: {exc}", file=sys.stderr)
        return 2
    eps = proxy.endpoints()
    print("READY " + " ".join(f"{k}={v}" for k, v in eps.items()), flush=True)
    logging.getLogger("is_proxy").info("serving %s", eps)
    proxy.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
