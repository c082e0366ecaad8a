"""``is-web``: the HTTP gateway and viewer; prints one READY line with the URL it serves."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from isweb.app import make_app
from isweb.guard import AccessLogger
from pyis_common import config, configflags
from pyis_common.logsetup import setup_logging
from pyis_common.version import add_version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="is-web", description=__doc__)
    add_version(ap)
    ap.add_argument("--config", help="TOML config file ([web] section)")
    ap.add_argument("--log-level", default="INFO")
    configflags.add_flags(ap, "web")
    args = ap.parse_args(argv)
    try:
        cfg = config.load(args.config, configflags.overrides(args, "web")).web
        host, _, port = cfg.listen.rpartition(":")
        port_number = int(port)
    except config.ConfigError as exc:
        print(f"is-web: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"is-web: web.listen must be host:port, not {cfg.listen!r}", file=sys.stderr)
        return 2
    setup_logging("is-web", args.log_level)
    return asyncio.run(serve(cfg, host.strip("[]") or "127.0.0.1", port_number))


async def serve(cfg: config.WebConfig, host: str, port: int) -> int:
    runner = web.AppRunner(make_app(cfg), access_log_class=AccessLogger, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        print(f"is-web: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        await runner.cleanup()
        return 2
    bound = runner.addresses[0]
    url = f"http://{bound[0]}:{bound[1]}"
    print(f"READY url={url} endpoint={cfg.endpoint}", flush=True)
    logging.getLogger("isweb").info("serving %s for %s", url, cfg.endpoint)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
