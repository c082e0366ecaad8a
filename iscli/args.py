"""``is-cli``'s command line: the subcommands (one per job type of the job table that has a
``cli`` entry, pyis_common/jobtypes.py), their options, and the request they make.

Options are accepted before or after the subcommand; a token given as a flag is known before
argparse runs, so no usage error can quote it.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from typing import Any

from iscli.client import DEFAULT_ENDPOINT, Settings
from pyis_common import jobtypes
from pyis_common.protocol import (
    COLORMAPS,
    EXIT_BY_CODE,
    EXIT_NO_REPLY,
    EXIT_USAGE,
    LEVEL_RULES,
    SCALES,
)
from pyis_common.version import add_version

# the request fields a subcommand may carry; argparse dests are the wire names
JOB_FIELDS: tuple[str, ...] = ("fn", "fn2", "frame", "frame2", "xsize", "ysize")
JOB_FIELDS += ("zoom", "segcol", "segrow", "contrast", "wval", "label", "labelHeight")
JOB_FIELDS += ("levels", "scale", "colormap")


def build_job(command: str, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The request object of subcommand ``command``: only what was given, so the server's
    defaults apply to the rest."""
    row = jobtypes.BY_COMMAND[command]
    job: dict[str, Any] = {"pid": settings.pid, "type": row.name}
    if settings.esaf is not None:
        job["esaf"] = settings.esaf
    for name in JOB_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            job[name] = value
    tag = getattr(args, "tag", None)
    if tag is None and row.publishes_progress:
        tag = secrets.token_hex(8)  # names the progress channel; echoed back by the server
    if tag is not None:
        job["tag"] = tag
    if settings.auth:
        job["auth"] = settings.auth
    return job


def _number(text: str) -> int | float:
    """An int when it looks like one (the echo stays ``200``, not ``200.0``), else a float."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be finite")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that scrubs secrets from its error messages (it quotes the offending words)."""

    def __init__(self, *args: Any, hidden: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden = hidden if hidden is not None else []

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {scrub(message, self.hidden)}\n")


def _common_options(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """Accepted before or after the subcommand; SUPPRESS so 'given' is knowable (precedence).
    ``progress`` False: --redis is still accepted (a shared config) but not offered in help."""
    s = argparse.SUPPRESS
    p.add_argument(
        "--config", default=s, metavar="FILE", help="TOML file (default ~/.config/pyis/cli.toml)"
    )
    p.add_argument(
        "--endpoint", default=s, metavar="URL", help=f"server (PYIS_ENDPOINT; {DEFAULT_ENDPOINT})"
    )
    p.add_argument("--pid", default=s, help="session id (PYIS_PID)")
    p.add_argument("--auth", default=s, metavar="JWT", help="inline token (prefer PYIS_AUTH)")
    p.add_argument("--esaf", type=int, default=s, metavar="N", help="experiment number (PYIS_ESAF)")
    p.add_argument(
        "--timeout", type=float, default=s, metavar="S", help="seconds per try (5; index 960)"
    )
    p.add_argument("--retries", type=int, default=s, metavar="N", help="tries before giving up (3)")
    redis_help = "progress of index (PYIS_REDIS)" if progress else s
    p.add_argument("--redis", default=s, metavar="URL", help=redis_help)
    p.add_argument("--tag", default=s, help="echoed back; names index's progress channel")


def _image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--xsize", type=int, metavar="PX", help="output width in pixels")
    p.add_argument(
        "--ysize", type=int, metavar="PX", help="output height (default: keep the aspect ratio)"
    )
    p.add_argument("--zoom", type=_number, metavar="X", help="zoom >= 1")
    p.add_argument("--segcol", type=_number, metavar="X", help="segment column of the zoomed grid")
    p.add_argument("--segrow", type=_number, metavar="X", help="segment row of the zoomed grid")
    p.add_argument(
        "--contrast", type=_number, metavar="X", help="black level in counts (<=0 automatic)"
    )
    p.add_argument("--wval", type=_number, metavar="X", help="white level in counts (<0 automatic)")
    p.add_argument("--label", metavar="TEXT", help="banner text above the image")
    p.add_argument("--label-height", dest="labelHeight", type=int, metavar="PX", help="0..64")


def _look_options(p: argparse.ArgumentParser) -> None:
    """How the picture is drawn (pyis only: a C server ignores these fields)."""
    p.add_argument("--levels", choices=LEVEL_RULES, help="automatic levels: pyis's or the C rule")
    p.add_argument("--scale", choices=SCALES, help="grey scale between the levels")
    p.add_argument("--colormap", choices=COLORMAPS, help="inverted: spots dark on white")


DESCRIPTION = """\
Ask a pyis image server (or the C server it replaces) for a JPEG, an image's metadata, its spot
counts, an indexing result, or the server's status. A lost reply costs a resend on a new
socket (a Lazy Pirate), never a hang."""
EXIT_NOTES = {"incomplete": " (a frame still being written: retry)"}
EPILOG = f"""\
settings: flags > PYIS_ENDPOINT PYIS_PID PYIS_AUTH PYIS_ESAF PYIS_REDIS > config file
  (keys endpoint pid auth esaf timeout retries redis) > defaults
exit status: 0 ok, {", ".join(f"{n} {c}{EXIT_NOTES.get(c, '')}" for c, n in EXIT_BY_CODE.items())},
  {EXIT_NO_REPLY} no reply, {EXIT_USAGE} usage, 1 local failure"""


def _jpeg_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="-", help="output file, - for stdout")
    _look_options(p)
    _image_options(p)


def _index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fn2", metavar="FILE", help="a second image, e.g. 90 degrees away")
    p.add_argument("--frame2", type=int, metavar="N", help="frame of the second image")


def _status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.add_argument(
        "--detail",
        metavar="HOST:PORT",
        help="on the image host: each worker's uid, ESAF and pid from the procmgr's loopback "
        "metrics port (e.g. 127.0.0.1:9464)",
    )


def _follow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("fn", metavar="DIR", help="directory, series template or Eiger master")
    p.add_argument("-o", "--output", required=True, help="the JPEG, replaced atomically")
    p.add_argument("--wait", type=float, default=4.0, metavar="S", help="long-poll wait (4)")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N frames")
    _image_options(p)


# a subcommand's own options beyond its file (spots counts on a fixed reduction of the whole
# frame and meta reads a header: no image option applies to them)
OPTIONS = {
    "jpeg": _jpeg_options,
    "index": _index_options,
    "status": _status_options,
    "follow": _follow_options,
}


def parser(hidden: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; ``hidden`` are the secrets its error messages must not repeat."""
    formatter = argparse.RawDescriptionHelpFormatter
    # no abbreviations: '--au TOKEN' must not be a way around the scrubbing
    ap = _Parser(
        prog="is-cli",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=formatter,
        allow_abbrev=False,
        hidden=hidden,
    )
    add_version(ap)
    _common_options(ap)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for row in jobtypes.TABLE:
        if row.cli is None:
            continue
        name, text = row.cli.command, row.cli.help
        p = sub.add_parser(name, help=text, description=text, allow_abbrev=False, hidden=ap.hidden)
        _common_options(p, progress=row.publishes_progress)
        if row.needs_file:
            p.add_argument(
                "fn", metavar="FILE", help="image path, absolute or relative to the ESAF home"
            )
            p.add_argument(
                "--frame", type=int, metavar="N", help="1-based frame of a multi-frame file"
            )
        if name in OPTIONS:
            OPTIONS[name](p)
    return ap


def scrub(text: str, hidden: list[str]) -> str:
    """``text`` with every secret replaced; used on everything we print that we did not write."""
    for secret in hidden:
        if secret:
            text = text.replace(secret, "***")
    return text


def argv_secrets(argv: list[str]) -> list[str]:
    """Tokens given as ``--auth X`` or ``--auth=X``, known before argparse may quote them."""
    found = [a.split("=", 1)[1] for a in argv if a.startswith("--auth=")]
    found += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--auth"]
    return found
