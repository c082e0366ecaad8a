"""``is-procmgr``: verify access objects and route requests to privilege-dropped workers."""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import sys
from collections.abc import Callable
from typing import Any

from pyis_common import config, daemonize
from pyis_common.logsetup import setup_logging


def dev_user() -> str:
    """--dev serves every session as the current user; as root, as ``nobody`` (never root)."""
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="is-procmgr", description=__doc__)
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument("--proxy", action="append", help="proxy backend endpoint (repeatable)")
    ap.add_argument("--auth-redis", help="URL of the Redis holding access objects")
    ap.add_argument("--compat-pubkey", help="PEM public key that verifies isAuthSig")
    ap.add_argument(
        "--dev",
        metavar="DATA_DIR",
        help="serve DATA_DIR as every ESAF home, as the current user (nobody when root); "
        "no ESAF needed",
    )
    ap.add_argument("--cache-redis", help="URL of the image host's Redis for the shared cache")
    ap.add_argument(
        "--cache-redis-password-file", help="0600 file with our admin password on the cache Redis"
    )
    ap.add_argument("--metrics", help="host:port for the Prometheus endpoint (port 0: any)")
    ap.add_argument("--curve-secret", help="our CURVE certificate for the proxy link")
    ap.add_argument("--proxy-curve-public", help="the proxy's public CURVE certificate")
    ap.add_argument("--trust-root", help="offline CA root certificate (enables JWT objects)")
    ap.add_argument("--trust-certs", help="directory of auth-server signing certificates")
    ap.add_argument("--trust-crl", help="the root's CRL")
    ap.add_argument("--log-level", default="INFO")
    daemonize.add_arguments(ap)
    return ap


def overrides_from(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags win over the environment and the file."""
    procmgr: dict[str, Any] = {
        "proxies": args.proxy,
        "auth_redis": args.auth_redis,
        "compat_pubkey": args.compat_pubkey,
        "cache_redis": args.cache_redis,
        "cache_redis_password_file": args.cache_redis_password_file,
        "curve_secret": args.curve_secret,
        "proxy_curve_public": args.proxy_curve_public,
        "metrics_address": args.metrics,
        "trust_root": args.trust_root,
        "trust_certs": args.trust_certs,
        "trust_crl": args.trust_crl,
    }
    if args.dev:
        procmgr |= {
            "dev_user": dev_user(),
            "esaf_home": os.path.abspath(args.dev),
            "require_esaf": False,
        }
    return {"procmgr": procmgr}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = overrides_from(args)
    try:
        cfg = config.load(args.config, overrides)  # refused here, on the terminal, not later
    except config.ConfigError as exc:
        print(f"is-procmgr: {exc}", file=sys.stderr)
        return 2
    with daemonize.context(args):
        return serve(cfg.procmgr, lambda: config.load(args.config, overrides).procmgr, args)


def serve(
    cfg: config.ProcmgrConfig,
    load_config: Callable[[], config.ProcmgrConfig],
    args: argparse.Namespace,
) -> int:
    setup_logging("is-procmgr", args.log_level)
    # the zygote first: before any zmq.Context, key or Redis connection exists in this process
    from procmgr.zygoteclient import ZygoteClient

    try:
        zygote = ZygoteClient()
    except (RuntimeError, OSError) as exc:
        print(f"is-procmgr: cannot start: {exc}", file=sys.stderr)
        return 2
    from procmgr.manager import Manager, listen_for_signals

    try:
        manager = Manager(cfg, zygote, load_config)
    except Exception as exc:  # a bad key, root or CRL file: say which, exit non-zero
        print(f"is-procmgr: cannot start: {exc}", file=sys.stderr)
        zygote.stop(timeout_s=5.0)
        return 2
    signals = listen_for_signals()  # before READY: whoever reads READY may signal at once
    metrics = f" metrics={manager.metrics_address}" if manager.metrics_address else ""
    print(f"READY proxies={','.join(cfg.proxies)} pid={os.getpid()}{metrics}", flush=True)
    logging.getLogger("procmgr").info("serving via %s", ", ".join(cfg.proxies))
    return manager.run(signals)


if __name__ == "__main__":
    sys.exit(main())
