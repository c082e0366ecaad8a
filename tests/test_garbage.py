"""Hostile and broken requests: each gets exactly one error reply, and the stack stays up."""

from __future__ import annotations

import json

import pytest

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
    ("xsize 0", {"job": {"pid": "x", "xsize": 0}}, "bad_request"),
    ("xsize -5", {"job": {"pid": "x", "xsize": -5}}, "bad_request"),
    ("xsize string", {"job": {"pid": "x", "xsize": "x"}}, "bad_request"),
    ("xsize 1e9", {"job": {"pid": "x", "xsize": 1e9}}, "bad_request"),
    ("xsize 10001", {"job": {"pid": "x", "xsize": 10001}}, "bad_request"),
    ("fn with NUL", {"job": {"pid": "x", "fn": "a\u0000b"}}, "bad_request"),
    ("100 KB request", {"job": {"pid": "x", "tag": "t" * 100_000}}, "bad_request"),
    ("two frames", {"frames": [b'{"pid": "x"}', b"more"]}, "bad_request"),
]


@pytest.mark.parametrize("name,kwargs,code", CASES, ids=[c[0] for c in CASES])
def test_one_error_reply(site, name, kwargs, code):
    reply = ask(
        site.endpoint, kwargs.get("job"), raw=kwargs.get("raw"), frames=kwargs.get("frames")
    )
    assert error_code(reply) == code, reply
    assert b"Traceback" not in reply[0]


def test_dealer_without_delimiter_gets_one_error_and_stack_stays_up(site):
    reply = ask_dealer(site.endpoint, [json.dumps({"pid": "x"}).encode()])
    assert error_code(reply) == "bad_request"
    assert b"delimiter" in reply[0]
    status = ask(site.endpoint, {"pid": "monitor", "type": "status"})
    assert status[0] == b""


def test_garbage_is_logged(site):
    ask(site.endpoint, None, raw=b"definitely not json")
    assert "outcome=bad_request" in site.log_text()
