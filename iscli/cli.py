"""``is-cli``: the image server from a terminal or a script.

A Lazy Pirate client (STYLE.md item 8, ``iscli.client``): a lost reply costs a resend on
a fresh socket, never a hang. Exit status is what a script tests: 0 ok, 10 + the error code's
index in ``errors.CODES``, 20 no reply, 2 usage or configuration, 1 a local failure.
Settings come from flags, then ``PYIS_*`` environment variables, then a TOML file, then the
defaults. A token (``--auth``, ``PYIS_AUTH``, ``auth`` in the file) is never printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import zmq

from iscli import client, follow
from iscli.client import DEFAULT_ENDPOINT, ConfigError, NoReply, Settings
from pyis_common import protocol
from pyis_common.errors import CODES, parse_wire_text
from pyis_common.request import COLORMAPS, LEVEL_RULES, SCALES

EXIT_OK, EXIT_LOCAL, EXIT_USAGE = 0, 1, 2
EXIT_BY_CODE = {code: 10 + i for i, code in enumerate(CODES)}
EXIT_NO_REPLY = 20
# indexing runs for minutes and a resend would start it again: wait longer than the procmgr's
# own index deadline (index_timeout_s = 900 s, + 5), so its `timeout:` answer comes first
INDEX_TIMEOUT_S = 960.0
STATUS_PID = "is-cli"  # status needs no session, but every request carries a pid
# the request fields a subcommand may carry; argparse dests are the wire names
JOB_FIELDS = ("fn", "fn2", "frame", "frame2", "xsize", "ysize", "zoom", "segcol", "segrow")
JOB_FIELDS += ("contrast", "wval", "label", "labelHeight", "levels", "scale", "colormap")


class BadReply(Exception):
    """A success reply without what the command needs: reported as ``internal``."""


def build_job(command: str, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The request object: only what was given, so the server's defaults apply to the rest."""
    job: dict[str, Any] = {"pid": settings.pid, "type": command}
    if settings.esaf is not None:
        job["esaf"] = settings.esaf
    for name in JOB_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            job[name] = value
    tag = getattr(args, "tag", None)
    if tag is None and command == "index":
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
EPILOG = """\
settings: flags > PYIS_ENDPOINT PYIS_PID PYIS_AUTH PYIS_ESAF PYIS_REDIS > config file
  (keys endpoint pid auth esaf timeout retries redis) > defaults
exit status: 0 ok, 10 bad_request, 11 unauthorized, 12 forbidden, 13 not_found,
  14 unsupported, 15 busy, 16 timeout, 17 internal, 18 incomplete (a frame still being
  written: retry), 20 no reply, 2 usage, 1 local failure"""


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
    _common_options(ap)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, allow_abbrev=False, hidden=ap.hidden)
        _common_options(p, progress=name == "index")
        return p

    jpeg = command("jpeg", "render an image to JPEG")
    jpeg.add_argument("-o", "--output", default="-", help="output file, - for stdout")
    _look_options(jpeg)
    meta = command("meta", "print an image's metadata as JSON")
    spots = command(
        "spots", "print the spot count and d-spacing range (A) of each of 16 bins, then the total"
    )
    index = command("index", "index one or two images; print the result as JSON")
    status = command("status", "print the server's status as JSON (counts)")
    status.add_argument(
        "--detail",
        metavar="HOST:PORT",
        help="on the image host: each worker's uid, ESAF and pid from the procmgr's loopback "
        "metrics port (e.g. 127.0.0.1:9464)",
    )
    for p in (jpeg, meta, spots, index):
        p.add_argument(
            "fn", metavar="FILE", help="image path, absolute or relative to the ESAF home"
        )
        p.add_argument("--frame", type=int, metavar="N", help="1-based frame of a multi-frame file")
    _image_options(jpeg)  # spots counts on a fixed reduction of the whole frame: none apply
    follower = command("follow", "keep writing the newest frame of a collection to a file")
    follower.add_argument("fn", metavar="DIR", help="directory, series template or Eiger master")
    follower.add_argument("-o", "--output", required=True, help="the JPEG, replaced atomically")
    follower.add_argument("--wait", type=float, default=4.0, metavar="S", help="long-poll wait (4)")
    follower.add_argument("--count", type=int, default=0, metavar="N", help="stop after N frames")
    _image_options(follower)
    index.add_argument("--fn2", metavar="FILE", help="a second image, e.g. 90 degrees away")
    index.add_argument("--frame2", type=int, metavar="N", help="frame of the second image")
    return ap


def scrub(text: str, hidden: list[str]) -> str:
    """``text`` with every secret replaced; used on everything we print that we did not write."""
    for secret in hidden:
        if secret:
            text = text.replace(secret, "***")
    return text


def printable(text: str, hidden: list[str]) -> str:
    """Server or file-name text made safe for a terminal: secrets replaced, line breaks and tabs
    become blanks, every other non-printable (ESC and the rest of a terminal escape's control
    bytes, bidi overrides, ...) is dropped, so a file name cannot recolour or rewrite the screen.
    """
    text = scrub(text, hidden)
    return "".join(ch if ch.isprintable() else " " if ch.isspace() else "" for ch in text)


def argv_secrets(argv: list[str]) -> list[str]:
    """Tokens given as ``--auth X`` or ``--auth=X``, known before argparse may quote them."""
    found = [a.split("=", 1)[1] for a in argv if a.startswith("--auth=")]
    found += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--auth"]
    return found


class ProgressBar:
    """Progress of a long job on stderr: one line redrawn in place on a terminal, plain lines
    otherwise (a log file wants every line, not carriage returns). Thread-safe, because the
    progress feed and the retry notices both write."""

    SPIN = "|/-\\"

    def __init__(self, stream: TextIO, hidden: list[str]) -> None:
        self.stream, self.hidden = stream, hidden
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.ticks, self.line = 0, "waiting"
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any] | None) -> None:
        with self.lock:
            self.ticks += 1
            if message is not None and "progress" in message:  # not the closing "done"
                self.line = " ".join(printable(str(message["progress"]), self.hidden).split())
                if not self.tty:
                    print(f"is-cli: progress: {self.line[:500]}", file=self.stream, flush=True)
            if self.tty:
                elapsed = time.monotonic() - self.t0
                spin = self.SPIN[self.ticks % len(self.SPIN)]
                self.stream.write(f"\r\x1b[K{spin} {elapsed:5.0f} s  {self.line[:100]}")
                self.stream.flush()

    def note(self, text: str) -> None:
        with self.lock:
            prefix = "\r\x1b[K" if self.tty else ""
            print(f"{prefix}is-cli: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            with self.lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()


def write_jpeg(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    if len(frames) < 4:
        raise BadReply("the reply has no image")
    try:
        if args.output == "-":
            sys.stdout.buffer.write(frames[3])
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as fh:
                fh.write(frames[3])
    except OSError as exc:
        print(f"is-cli: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_LOCAL
    job = {k: v for k, v in _json(frames, 1).items() if k != "auth"}
    print(scrub(json.dumps(job, sort_keys=True), hidden), file=sys.stderr)
    return EXIT_OK


def print_json(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    print(scrub(json.dumps(_json(frames, 2), indent=2, sort_keys=True), hidden))
    return EXIT_OK


def print_spots(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    """``BIN COUNT [DMAX-DMIN A]`` lines, then ``total N``; a C server sends only the total."""
    meta = _json(frames, 2)
    total, counts = meta.get("spots"), meta.get("spots_per_bin", [])
    if type(total) is not int or not isinstance(counts, list):
        raise BadReply("the reply has no spot count ('spots' in the meta frame)")
    ranges = meta.get("spots_bin_d_A")
    ranges = ranges if isinstance(ranges, list) and len(ranges) == len(counts) else []
    for i, n in enumerate(counts, 1):
        print(f"{i:2d} {n}{_d_range(ranges[i - 1] if ranges else None)}")
    print(f"total {total}")
    return EXIT_OK


def _d_range(pair: Any) -> str:
    """`` 39.21-5.317 A`` (``inf`` for the beam's own bin), or nothing without a geometry."""
    if not isinstance(pair, list) or len(pair) != 2:
        return ""
    big, small = ("inf" if v is None else f"{v:g}" for v in pair)
    return f" {big}-{small} A"


OUTPUTS: dict[str, Callable[[argparse.Namespace, list[bytes], list[str]], int]] = {
    "jpeg": write_jpeg,
    "meta": print_json,
    "spots": print_spots,
    "index": print_json,
    "status": print_json,
}


def print_detail(address: str, timeout: float) -> int:
    """The per-worker detail, which the public ``status`` answer leaves out."""
    try:
        with urllib.request.urlopen(f"http://{address}/status", timeout=timeout) as resp:
            detail = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        print(f"is-cli: no status detail from {address}: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    print(json.dumps(detail, indent=2, sort_keys=True))
    return EXIT_OK


def _json(frames: list[bytes], i: int) -> dict[str, Any]:
    try:
        value = json.loads(frames[i])
    except (IndexError, ValueError):
        raise BadReply(f"reply frame {i} is missing or not JSON") from None
    if not isinstance(value, dict):
        raise BadReply(f"reply frame {i} is not a JSON object")
    return value


def send(settings: Settings, job: dict[str, Any], bar: ProgressBar) -> list[bytes]:
    """The request, with index's progress feed around it when a Redis is configured."""
    feed = None
    if job["type"] == "index" and settings.redis:
        channel = protocol.progress_channel(job["pid"], job["tag"])
        feed = client.ProgressFeed(settings.redis, channel, bar)
        try:
            feed.start()
        except client.ProgressUnavailable as exc:
            bar.note(f"no progress shown: {printable(str(exc), bar.hidden)}")
            feed = None

    def on_retry(attempt: int, tries: int) -> None:
        bar.note(
            f"no reply in {settings.timeout:g} s; retrying on a new socket ({attempt + 1}/{tries})"
        )

    try:
        return client.request(settings.endpoint, job, settings.timeout, settings.retries, on_retry)
    finally:
        if feed is not None:
            feed.stop()
        bar.close()


def run(
    args: argparse.Namespace, settings: Settings, job: dict[str, Any], hidden: list[str]
) -> int:
    """Send, then turn the reply into output and an exit status."""
    if args.command == "jpeg" and args.output == "-" and sys.stdout.isatty():
        print("is-cli: not writing a JPEG to a terminal; use -o FILE or redirect", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar(sys.stderr, hidden)
    try:
        frames = send(settings, job, bar)
    except NoReply as exc:
        print(f"is-cli: {exc}; is the server running?", file=sys.stderr)
        return EXIT_NO_REPLY
    except zmq.ZMQError as exc:
        print(f"is-cli: bad endpoint {settings.endpoint!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if frames[0] != b"":
        code, sentence = parse_wire_text(frames[0])
        print(f"is-cli: {code}: {printable(sentence, hidden)}", file=sys.stderr)
        return EXIT_BY_CODE[code]
    try:
        return OUTPUTS[args.command](args, frames, hidden)
    except BadReply as exc:
        print(f"is-cli: internal: {printable(str(exc), hidden)}", file=sys.stderr)
        return EXIT_BY_CODE["internal"]
    except BrokenPipeError:  # `is-cli meta f | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        return EXIT_LOCAL


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ
    hidden = [*argv_secrets(argv), env.get("PYIS_AUTH", "")]
    args = parser(hidden).parse_args(argv)
    flags = vars(args)
    try:
        explicit = "config" in flags
        path = Path(flags["config"]) if explicit else client.config_path(env)
        floor = INDEX_TIMEOUT_S if args.command == "index" else 0.0
        if args.command == "follow":  # each try waits for a frame, then for its rendering
            floor = args.wait + client.DEFAULT_TIMEOUT_S
        settings = client.resolve(flags, env, client.load_config(path, explicit), floor)
    except ConfigError as exc:
        print(f"is-cli: {printable(str(exc), hidden)}", file=sys.stderr)
        return EXIT_USAGE
    hidden += [settings.auth or "", client.url_password(settings.redis)]
    if args.command == "status" and args.detail:
        return print_detail(args.detail, settings.timeout)
    if args.command == "status" and not settings.pid:
        settings = replace(settings, pid=STATUS_PID)
    if not settings.pid:
        print(
            "is-cli: a session id is needed (--pid, PYIS_PID or 'pid' in the config file)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.command == "follow":
        return run_follow(args, settings, hidden)
    return run(args, settings, build_job(args.command, args, settings), hidden)


def run_follow(args: argparse.Namespace, settings: Settings, hidden: list[str]) -> int:
    job = build_job("newest", args, settings) | {"wait": args.wait}
    codes = EXIT_BY_CODE | {"no_reply": EXIT_NO_REPLY, "local": EXIT_LOCAL}
    return follow.follow(
        settings,
        job,
        args.output,
        args.count,
        show=lambda line: print(printable(line, hidden), flush=True),
        warn=lambda line: print(f"is-cli: {printable(line, hidden)}", file=sys.stderr),
        exit_codes=codes,
    )
