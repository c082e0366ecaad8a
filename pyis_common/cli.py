"""``is-cli``: a REQ client for staff and scripts, a Lazy Pirate (zguide lpclient.py).

Poll with a timeout; on silence close the socket with LINGER 0, reopen, resend; give up after
``--retries`` with a clear message. Exit status: 0 ok, one per error code word, 20 no reply.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import zmq

from pyis_common.errors import CODES, parse_wire_text

EXIT_BY_CODE = {code: 10 + i for i, code in enumerate(CODES)}
EXIT_NO_REPLY = 20
DEFAULT_ENDPOINT = "tcp://127.0.0.1:60202"


class NoReply(Exception):
    pass


def request(
    endpoint: str, job: dict[str, Any], timeout_s: float = 5.0, retries: int = 3
) -> list[bytes]:
    """Send ``job``; return the reply frames. Raises NoReply after ``retries`` silences."""
    ctx = zmq.Context.instance()
    body = json.dumps(job).encode()
    for _attempt in range(max(1, retries)):
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        try:
            sock.send(body)
            if sock.poll(int(timeout_s * 1000), zmq.POLLIN):
                return sock.recv_multipart()
        finally:
            sock.close(linger=0)
    raise NoReply(f"no reply from {endpoint} after {retries} tries of {timeout_s:g} s")


def build_job(args: argparse.Namespace) -> dict[str, Any]:
    job: dict[str, Any] = {"pid": args.pid, "type": args.command}
    fields = {
        "esaf": "esaf",
        "fn": "file",
        "frame": "frame",
        "xsize": "xsize",
        "ysize": "ysize",
        "zoom": "zoom",
        "segcol": "segcol",
        "segrow": "segrow",
        "contrast": "contrast",
        "wval": "wval",
        "label": "label",
        "labelHeight": "label_height",
        "tag": "tag",
    }
    for wire_name, attr in fields.items():
        value = getattr(args, attr, None)
        if value is not None:
            job[wire_name] = value
    return job


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="is-cli", description=__doc__)
    ap.add_argument("--endpoint", default=os.environ.get("PYIS_ENDPOINT", DEFAULT_ENDPOINT))
    ap.add_argument("--pid", default=os.environ.get("PYIS_PID"), help="session id (PYIS_PID)")
    ap.add_argument("--esaf", type=int, default=_env_int("PYIS_ESAF"))
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per try")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--tag")
    sub = ap.add_subparsers(dest="command", required=True)
    jpeg = sub.add_parser("jpeg", help="render an image to JPEG")
    meta = sub.add_parser("meta", help="print an image's metadata")
    sub.add_parser("status", help="print the server's status")
    for p in (jpeg, meta):
        p.add_argument("file", help="path, absolute or relative to the ESAF home")
        p.add_argument("--frame", type=int)
    jpeg.add_argument("-o", "--output", default="-", help="output file, - for stdout")
    jpeg.add_argument("--xsize", type=int)
    jpeg.add_argument("--ysize", type=int)
    for name in ("zoom", "segcol", "segrow", "contrast", "wval"):
        jpeg.add_argument(f"--{name}", type=float)
    jpeg.add_argument("--label")
    jpeg.add_argument("--label-height", type=int)
    return ap


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.pid:
        print("is-cli: a session id is needed (--pid or PYIS_PID)", file=sys.stderr)
        return 2
    try:
        frames = request(args.endpoint, build_job(args), args.timeout, args.retries)
    except NoReply as exc:
        print(f"is-cli: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    if frames[0] != b"":
        code, sentence = parse_wire_text(frames[0])
        print(f"is-cli: {code}: {sentence}", file=sys.stderr)
        return EXIT_BY_CODE[code]
    if args.command == "jpeg":
        if len(frames) < 4:
            print("is-cli: the reply has no image", file=sys.stderr)
            return EXIT_BY_CODE["internal"]
        if args.output == "-":
            sys.stdout.buffer.write(frames[3])
        else:
            with open(args.output, "wb") as fh:
                fh.write(frames[3])
        print(frames[1].decode(), file=sys.stderr)
        return 0
    print(json.dumps(json.loads(frames[2] or b"{}"), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
