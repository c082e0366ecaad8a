"""``is-procmgr``: verify access objects and route requests to privilege-dropped workers."""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import sys
from collections.abc import Callable
from typing import Any

from pyis_common import config, configflags, daemonize
from pyis_common.logsetup import setup_logging
from pyis_common.version import add_version


def dev_user() -> str:
    """--dev serves every session as the current user; as root, as ``nobody`` (never root)."""
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="is-procmgr", description=__doc__)
    add_version(ap)
    ap.add_argument("--config", help="TOML config file")
    ap.add_argument(
        "--dev",
        metavar="DATA_DIR",
        help="serve DATA_DIR as every ESAF home, as the current user (nobody when root); "
        "no ESAF needed",
    )
    ap.add_argument("--log-level", default="INFO")
    daemonize.add_arguments(ap)
    configflags.add_flags(ap, "procmgr")
    return ap


def overrides_from(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags win over the environment and the file."""
    overrides = configflags.overrides(args, "procmgr")
    if args.dev:
        overrides["procmgr"] |= {
            "dev_user": dev_user(),
            "esaf_home": os.path.abspath(args.dev),
            "require_esaf": False,
        }
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = overrides_from(args)
    try:
        cfg = config.load(args.config, overrides)  # refused here, on the terminal, not later
    except config.ConfigError as exc:
        print(f"is-procmgr: {exc}", file=sys.stderr)
        return 2
    pm = cfg.procmgr
    if not pm.trust_root and not (pm.compat_enabled and pm.compat_pubkey):
        print("is-procmgr: neither trust_root nor compat_pubkey is set: nothing verifies a session",
              file=sys.stderr)  # fmt: skip
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
        zygote = ZygoteClient(cfg.worker_spares)
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
