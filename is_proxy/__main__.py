"""``is-proxy``: run the broker; prints one READY line with the bound endpoints."""

from __future__ import annotations

import argparse
import logging
import sys

from is_proxy.proxy import Proxy
from pyis_common import config, configflags, daemonize
from pyis_common.logsetup import setup_logging
from pyis_common.version import add_version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="is-proxy", description=__doc__)
    add_version(ap)
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--log-level", default="INFO")
    daemonize.add_arguments(ap)
    configflags.add_flags(ap, "proxy")
    args = ap.parse_args(argv)
    try:
        cfg = config.load(args.config, configflags.overrides(args, "proxy"))
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
    # term waits out the control socket's linger (TERMINATE's OK); whatever is still open closes now
    proxy.ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
