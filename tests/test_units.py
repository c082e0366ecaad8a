"""Pure functions at the trust boundaries: framing, request parsing, access objects, config."""

from __future__ import annotations

import json

import pytest

from authsign import compat
from procmgr.frames import split_envelope
from pyis_common import config, strictjson, workerchannel
from pyis_common.errors import BadRequest, Unauthorized, parse_wire_text, wire_text
from pyis_common.request import parse, parse_frame


def test_wire_roundtrip_in_pieces():
    data = workerchannel.encode({"t": "job", "id": 7}, [b"\x00" * 10, b"jpeg"])
    dec = workerchannel.Decoder()
    got = []
    for i in range(len(data)):  # one byte at a time: a slow or malicious peer
        got += dec.feed(data[i : i + 1])
    assert got == [({"t": "job", "id": 7}, [b"\x00" * 10, b"jpeg"])]


def test_wire_messages_read_into_one_reused_buffer_keep_nothing_of_it():
    """The procmgr reads every channel into one buffer: what the decoder returns or keeps of a
    half message must survive that buffer being overwritten by the next read."""
    first = workerchannel.encode({"t": "reply", "id": 1}, [b"a" * 5000])
    second = workerchannel.encode({"t": "reply", "id": 2}, [b"b" * 7000])
    scratch, dec = bytearray(len(first) + 100), workerchannel.Decoder()
    scratch[: len(first) + 100] = first + second[:100]
    got = dec.feed(memoryview(scratch))
    scratch[:] = b"\xff" * len(scratch)  # the next read overwrites it all
    got += dec.feed(memoryview(bytearray(second[100:])))
    assert got == [
        ({"t": "reply", "id": 1}, [b"a" * 5000]),
        ({"t": "reply", "id": 2}, [b"b" * 7000]),
    ]
    assert dec.buffered == 0


@pytest.mark.parametrize(
    "bad",
    [
        b"\x02" + b"\x00" * 5,  # wrong version
        workerchannel.PREFIX.pack(
            workerchannel.VERSION, workerchannel.MAX_HEADER + 1, 0
        ),  # header too large
        workerchannel.PREFIX.pack(workerchannel.VERSION, 2, 0) + b"[]",  # not an object
        workerchannel.PREFIX.pack(workerchannel.VERSION, 3, 0) + b"NaN",
    ],
)
def test_wire_rejects_broken_frames(bad):
    with pytest.raises(workerchannel.WireError):
        workerchannel.Decoder().feed(bad)


def test_dumps_is_compact_and_sorted():
    assert strictjson.dumps({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_request_defaults_and_echo_hide_the_token():
    req = parse(
        {
            "pid": "s",
            "type": "jpeg",
            "fn": "a.cbf",
            "auth": "secret-token",
            "frame": -3,
            "zoom": 2.04,
        }
    )
    assert (req.type, req.xsize, req.frame, req.zoom) == ("jpeg", 512, 1, 2.0)
    assert "auth" not in req.echo() and "auth" not in req.to_worker()
    assert "pid" not in req.to_worker()


@pytest.mark.parametrize(
    "obj,words",
    [
        ({"pid": "s", "type": "jpeg", "xsize": True}, "xsize"),
        ({"pid": "s", "type": "jpeg", "xsize": 7}, "xsize"),
        ({"pid": "s", "type": "jpeg", "xsize": 256.5}, "xsize"),
        ({"pid": "s", "type": "jpeg", "labelHeight": 65}, "labelHeight"),
        ({"pid": "s", "type": "RSYNC_TRANSFER"}, "obsolete"),
        ({"pid": "s", "type": "jpeg", "contrast": "high"}, "contrast"),
        ({"pid": "s", "type": "jpeg", "esaf": -1}, "esaf"),
        ({"pid": "tab\there"}, "pid"),
    ],
)
def test_request_refusals_name_the_field(obj, words):
    with pytest.raises(BadRequest, match=words):
        parse(obj)


def test_request_reals_are_not_integers():
    with pytest.raises(BadRequest, match="xsize"):
        parse({"pid": "s", "type": "jpeg", "xsize": 256.0})


def test_request_frame_refuses_nan():
    with pytest.raises(BadRequest):
        parse_frame(b'{"pid": "s", "type": "jpeg", "contrast": Infinity}')


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1.5e400"])
def test_request_frame_refuses_a_number_that_overflows_to_infinity(number):
    with pytest.raises(BadRequest):
        parse_frame(b'{"pid": "s", "type": "jpeg", "contrast": ' + number + b"}")
    with pytest.raises(ValueError):
        strictjson.loads(b"[" + number + b"]")
    assert strictjson.loads(b"[1e300, 2.5]") == [1e300, 2.5]


def test_wire_text_unknown_code_becomes_internal():
    assert wire_text("oops", "x") == b"internal: the image server failed"
    assert parse_wire_text(b"not_found: no such file: a") == ("not_found", "no such file: a")
    assert wire_text("bad_request", "line\nbreak").count(b"\n") == 0


def test_split_envelope():
    assert split_envelope([b"p", b"c", b"", b"{}"]) == ([b"p", b"c", b""], [b"{}"])
    assert split_envelope([b"p", b"c", b"{}"]) == ([b"p", b"c"], None)
    assert split_envelope([b"p"]) == (None, None)
    route = [b"p"] + [b"x"] * 20 + [b"", b"{}"]
    assert split_envelope(route)[1] is None  # more than 16 envelope frames


@pytest.fixture(scope="module")
def rsa_key():
    return compat.generate_key()


def test_compat_sign_verify(rsa_key):
    isauth = compat.make_isauth("sess", "alice", [3, 1], 60)
    access = compat.verify(rsa_key.public_key(), isauth, compat.sign(rsa_key, isauth), "sess")
    assert access.user == "alice" and access.allowed_esafs == {1, 3}


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda a, s: (a + b" ", s), "signature"),
        (lambda a, s: (a, b"!!!"), "signature"),
        (lambda a, s: (None, s), "no access object"),
    ],
)
def test_compat_refusals(rsa_key, mutate, words):
    isauth = compat.make_isauth("sess", "alice", [1], 60)
    a, s = mutate(isauth, compat.sign(rsa_key, isauth))
    with pytest.raises(Unauthorized, match=words):
        compat.verify(rsa_key.public_key(), a, s, "sess")


def test_compat_time_window(rsa_key):
    obj = {"pid": "s", "uid": "a", "allowedESAFs": [1], "iat": 1000, "exp": 2000}
    isauth = json.dumps(obj).encode()
    sig = compat.sign(rsa_key, isauth)
    pub = rsa_key.public_key()
    assert compat.verify(pub, isauth, sig, "s", now=1500).expires == 2000
    assert compat.verify(pub, isauth, sig, "s", now=2020, leeway_s=30)
    with pytest.raises(Unauthorized, match="expired"):
        compat.verify(pub, isauth, sig, "s", now=2031, leeway_s=30)
    with pytest.raises(Unauthorized, match="not valid yet"):
        compat.verify(pub, isauth, sig, "s", now=900, leeway_s=30)


def test_small_rsa_keys_are_refused():
    small = compat.generate_key(1024)
    with pytest.raises(ValueError, match="2048"):
        compat.load_public_key(compat.public_pem(small))


def test_config_layers_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[procmgr]\nrequest_timeout_s = 3\nproxies = ["tcp://a:1"]\n')
    cfg = config.load(
        path, {"procmgr": {"worker_threads": 2}}, environ={"PYIS_PROCMGR_REQUIRE_ESAF": "false"}
    )
    assert cfg.procmgr.request_timeout_s == 3.0 and cfg.procmgr.proxies == ("tcp://a:1",)
    assert cfg.procmgr.worker_threads == 2 and cfg.procmgr.require_esaf is False
    path.write_text("[procmgr]\nrequest_timout_s = 3\n")
    with pytest.raises(config.ConfigError, match="procmgr.request_timout_s"):
        config.load(path)
    path.write_text('[procmgr]\nworker_threads = "many"\n')
    with pytest.raises(config.ConfigError, match="worker_threads"):
        config.load(path)


def test_worker_failure_bookkeeping_is_forgotten_after_its_window():
    from procmgr.workers import CRASH_WINDOW_S, Workers

    workers = Workers(config.ProcmgrConfig(), zygote=None)  # no worker is started here
    workers.backoff[(1000, 7)] = 100.0
    workers.crashes[(1000, 7)] = [50.0]
    workers.forget_old_failures(99.0)
    assert (1000, 7) in workers.backoff
    workers.forget_old_failures(50.0 + CRASH_WINDOW_S + 1)
    assert workers.backoff == {} and workers.crashes == {}
