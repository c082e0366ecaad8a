"""Hostile and broken requests: each gets exactly one error reply, and the stack stays up."""

from __future__ import annotations

import grp
import json
import os
import stat

import pytest

from tests.support import bombs
from tests.support.client import ask, ask_dealer, error_code

CASES = [
    ("not json", {"raw": b"hello, world"}, "bad_request"),
    ("invalid utf-8", {"raw": b'{"pid": "\xff\xfe"}'}, "bad_request"),
    ("json array", {"raw": b"[1, 2, 3]"}, "bad_request"),
    ("json null", {"raw": b"null"}, "bad_request"),
    ("NaN", {"raw": b'{"pid": "x", "xsize": NaN}'}, "bad_request"),
    (
        "deeply nested",
        {"raw": b'{"pid": "x", "tag": ' + b"[" * 100000 + b"]" * 100000 + b"}"},
        "bad_request",
    ),
    ("no pid", {"job": {"type": "jpeg", "fn": "x.cbf"}}, "bad_request"),
    ("numeric pid", {"job": {"pid": 12345, "fn": "x.cbf"}}, "bad_request"),
    ("10 KB pid", {"job": {"pid": "p" * 10240, "fn": "x.cbf"}}, "bad_request"),
    ("unknown type", {"job": {"pid": "x", "type": "launch_missiles"}}, "bad_request"),
    ("obsolete type", {"job": {"pid": "x", "type": "rsync_transfer"}}, "bad_request"),
    ("xsize 0", {"job": {"pid": "x", "type": "jpeg", "xsize": 0}}, "bad_request"),
    ("xsize -5", {"job": {"pid": "x", "type": "jpeg", "xsize": -5}}, "bad_request"),
    ("xsize 256.0", {"job": {"pid": "x", "type": "jpeg", "xsize": 256.0}}, "bad_request"),
    ("json number", {"raw": b"42"}, "bad_request"),
    ("xsize string", {"job": {"pid": "x", "type": "jpeg", "xsize": "x"}}, "bad_request"),
    ("xsize 1e9", {"job": {"pid": "x", "type": "jpeg", "xsize": 1e9}}, "bad_request"),
    ("xsize 10001", {"job": {"pid": "x", "type": "jpeg", "xsize": 10001}}, "bad_request"),
    ("fn with NUL", {"job": {"pid": "x", "type": "jpeg", "fn": "a\u0000b"}}, "bad_request"),
    ("100 KB request", {"job": {"pid": "x", "type": "jpeg", "tag": "t" * 100_000}}, "bad_request"),
    ("two frames", {"frames": [b'{"pid": "x"}', b"more"]}, "bad_request"),
    # multipart floods: every frame within MAXMSGSIZE, the message not (the proxy answers)
    ("multipart 64 x 1 MiB", {"frames": [b"x" * (1 << 20)] * 64}, "bad_request"),
    ("multipart 5 small frames", {"frames": [b'{"pid": "x"}'] * 5}, "bad_request"),
    ("multipart 2 x 40 KB", {"frames": [b"x" * 40_000] * 2}, "bad_request"),
    ("no type", {"job": {"pid": "x", "fn": "x.cbf"}}, "bad_request"),
    ("zoom 0.5", {"job": {"pid": "x", "type": "jpeg", "zoom": 0.5}}, "bad_request"),
    (
        "segcol past the grid",
        {"job": {"pid": "x", "type": "jpeg", "zoom": 2, "segcol": 1.5}},
        "bad_request",
    ),
    (
        "segrow negative",
        {"job": {"pid": "x", "type": "jpeg", "zoom": 4, "segrow": -1}},
        "bad_request",
    ),
    # the rest carry a valid access object: the worker's path policy answers them
    ("fn ..", {"fn": "../../../etc/shadow"}, "forbidden"),
    ("fn absolute outside", {"fn": "/etc/passwd"}, "forbidden"),
    ("fn device outside", {"fn": "/dev/zero"}, "forbidden"),
    ("fn FIFO", {"fn": "hostile/fifo"}, "bad_request"),
    ("fn device node", {"fn": "hostile/null"}, "bad_request"),
    ("fn symlink loop", {"fn": "hostile/loop"}, "bad_request"),
    ("fn directory", {"fn": "hostile"}, "bad_request"),
    ("fn trailing slash", {"fn": "thau_0001.cbf/"}, "bad_request"),
    ("fn trailing slash dot", {"fn": "thau_0001.cbf/."}, "bad_request"),
    ("fn empty file", {"fn": "hostile/empty.cbf"}, "unsupported"),
    ("fn text file", {"fn": "hostile/notes.cbf"}, "unsupported"),
    ("fn truncated CBF", {"fn": "hostile/truncated.cbf"}, "incomplete"),
    ("frame out of range", {"fn": "thau_0001.cbf", "frame": 2}, "not_found"),
    *((f"bomb {name}", {"fn": f"hostile/{name}"}, "unsupported") for name in bombs.BOMBS),
]


@pytest.fixture(scope="module")
def hostile(site):
    """Things that are not images, inside the ESAF home, readable by its group."""
    d = site.home / "hostile"
    d.mkdir()
    os.mkfifo(d / "fifo")
    os.mknod(d / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (d / "loop").symlink_to(d / "loop")
    (d / "empty.cbf").write_bytes(b"")
    (d / "notes.cbf").write_text("beamtime notes, not an image\n")
    cbf = (site.home / "thau_0001.cbf").read_bytes()
    (d / "truncated.cbf").write_bytes(cbf[: len(cbf) // 3])
    bombs.write_all(d)  # kilobytes declaring hundreds of megabytes
    for p in [d, *d.iterdir()]:
        os.chown(p, 0, grp.getgrnam(f"e{site.esaf}").gr_gid, follow_symlinks=False)
        if not p.is_symlink():
            os.chmod(p, 0o750 if p.is_dir() else 0o640)
    return d


@pytest.mark.parametrize("name,kwargs,code", CASES, ids=[c[0] for c in CASES])
def test_one_error_reply(site, hostile, name, kwargs, code):
    if {"job", "raw", "frames"} & set(kwargs):
        reply = ask(
            site.endpoint, kwargs.get("job"), raw=kwargs.get("raw"), frames=kwargs.get("frames")
        )
    else:  # a path case: with a valid access object, so the worker's policy answers
        job = {"pid": site.session(), "esaf": site.esaf, "type": "jpeg", **kwargs}
        reply = ask(site.endpoint, job)
    assert error_code(reply) == code, reply
    assert b"Traceback" not in reply[0]
    assert ask(site.endpoint, {"pid": "monitor", "type": "status"})[0] == b""  # still up


def test_dealer_without_delimiter_gets_one_error_and_stack_stays_up(site):
    reply = ask_dealer(site.endpoint, [json.dumps({"pid": "x"}).encode()])
    assert error_code(reply) == "bad_request"
    assert b"delimiter" in reply[0]
    status = ask(site.endpoint, {"pid": "monitor", "type": "status"})
    assert status[0] == b""


def test_seventeen_envelope_frames_get_one_error(site):
    frames = [b"hop"] * 17 + [b"", json.dumps({"pid": "x"}).encode()]
    reply = ask_dealer(site.endpoint, frames)
    assert error_code(reply) == "bad_request"
    assert ask(site.endpoint, {"pid": "monitor", "type": "status"})[0] == b""


def test_a_100_mb_frame_is_refused_by_the_size_cap_and_the_stack_stays_up(site):
    """libzmq drops the connection of a peer that exceeds MAXMSGSIZE: no reply can go back,
    and nothing of it reaches the procmgr; everyone else is served as before."""
    with pytest.raises(TimeoutError):
        ask(site.endpoint, None, raw=b"x" * (100 << 20), timeout_ms=3000)
    assert ask(site.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
    pid = site.session()
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "thau_0001.cbf"}
    assert ask(site.endpoint, job)[0] == b""


def test_garbage_is_logged(site):
    ask(site.endpoint, None, raw=b"definitely not json")
    assert "outcome=bad_request" in site.log_text()
