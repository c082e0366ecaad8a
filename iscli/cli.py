"""``is-cli``: the image server from a terminal or a script.

A Lazy Pirate client (STYLE.md item 8, ``iscli.client``): a lost reply costs a resend on
a fresh socket, never a hang. Exit status is what a script tests (pyis_common/protocol.py):
0 ok, 10 + the error code's index in ``CODES``, 20 no reply, 2 usage or configuration, 1 a
local failure. Settings come from flags, then ``PYIS_*`` environment variables, then a TOML
file, then the defaults. A token (``--auth``, ``PYIS_AUTH``, ``auth`` in the file) is never
printed. The command line is iscli/args.py, the printing iscli/output.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq

from iscli import client, follow
from iscli.args import argv_secrets, build_job, parser
from iscli.client import ConfigError, NoReply, Settings
from iscli.output import PRINTERS, BadReply, ProgressBar, print_detail, printable
from pyis_common import jobtypes, protocol
from pyis_common.errors import parse_wire_text
from pyis_common.protocol import EXIT_BY_CODE, EXIT_LOCAL, EXIT_NO_REPLY, EXIT_USAGE

# indexing runs for minutes and a resend would start it again: wait longer than the procmgr's
# own index deadline (index_timeout_s = 900 s, + 5), so its `timeout:` answer comes first
INDEX_TIMEOUT_S = 960.0
STATUS_PID = "is-cli"  # status needs no session, but every request carries a pid


def send(settings: Settings, job: dict[str, Any], bar: ProgressBar) -> list[bytes]:
    """The request, with index's progress feed around it when a Redis is configured."""
    feed = None
    if jobtypes.of(job["type"]).publishes_progress and settings.redis:
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
        cli = _row(args).cli
        return PRINTERS[cli.output if cli is not None else "json"](args, frames, hidden)
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
        long_job = _row(args).deadline is jobtypes.Deadline.LONG_JOB
        floor = INDEX_TIMEOUT_S if long_job else 0.0
        if args.command == "follow":  # each try waits for a frame, then for its rendering
            floor = args.wait + client.DEFAULT_TIMEOUT_S
        settings = client.resolve(flags, env, client.load_config(path, explicit), floor)
    except ConfigError as exc:
        print(f"is-cli: {printable(str(exc), hidden)}", file=sys.stderr)
        return EXIT_USAGE
    hidden += [settings.auth or "", client.url_password(settings.redis)]
    if args.command == "status" and args.detail:
        return print_detail(args.detail, settings.timeout)
    if _row(args).answered_by is jobtypes.AnsweredBy.PROCMGR and not settings.pid:
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
    job = build_job(args.command, args, settings) | {"wait": args.wait}
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


def _row(args: argparse.Namespace) -> jobtypes.JobType:
    """The job-table row of the subcommand (every subcommand is one: pyis_common/jobtypes.py)."""
    return jobtypes.BY_COMMAND[args.command]
