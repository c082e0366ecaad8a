"""``is-cli`` against a REP socket standing in for the server, where pyis would never answer
so (a C server's bare spot total, a reply missing what was asked) and to see the exact request
the CLI sends; and usage and settings, without a server."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from iscli import args as cli_module
from iscli import client
from tests.conftest import REPO
from tests.support.clirun import (
    CLI,
    FN,
    RUN_TIMEOUT_S,
    WAIT_S,
    cli,
    cli_env,
)

# -- what a C server or a broken one answers: a REP socket in its place ------------------


class FakeServer:
    """A REP socket on an ephemeral port: sees the CLI's request, answers what a test says."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def receive(self) -> dict[str, Any]:
        assert self.sock.poll(int(WAIT_S * 1000)), "the CLI sent nothing"
        frames = self.sock.recv_multipart()
        assert len(frames) == 1, "a request is one frame"
        return json.loads(frames[0])

    def reply(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def start_cli(args: list[str], home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(home),
        cwd=REPO,
    )


def test_index_request_carries_both_images_their_frames_and_a_fresh_tag(fake, home):
    args = ["index", "a.cbf", "--fn2", "b.cbf", "--frame", "3", "--frame2", "4"]
    run = start_cli([*args, "--endpoint", fake.endpoint, "--pid", "s1", "--esaf", "7"], home)
    request = fake.receive()
    tag = request.pop("tag")
    assert len(tag) == 16 and int(tag, 16) >= 0  # generated: it names the progress channel
    assert request == {
        "pid": "s1",
        "esaf": 7,
        "type": "index",
        "fn": "a.cbf",
        "fn2": "b.cbf",
        "frame": 3,
        "frame2": 4,
    }
    fake.reply([b"unsupported: job type 'index' is not served by this server yet"])
    out, err = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 14
    assert err.startswith(b"is-cli: unsupported: job type 'index'") and out == b""


def test_spots_output_is_one_line_per_bin_then_the_total(fake, home):
    run = start_cli(["spots", "a.cbf", "--endpoint", fake.endpoint, "--pid", "s"], home)
    assert fake.receive()["type"] == "spots"
    d_ranges = [[None, 9.5]] + [[10.0 / n, 10.0 / (n + 1)] for n in range(1, 16)]
    meta = {"spots": 120, "spots_per_bin": list(range(16)), "spots_bin_d_A": d_ranges}
    fake.reply([b"", b'{"type":"spots"}', json.dumps(meta).encode()])
    out, err = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split() == ["1", "0", "inf-9.5", "A"]
    assert lines[15].split() == ["16", "15", "0.666667-0.625", "A"]
    assert lines[16] == "total 120" and len(lines) == 17


def test_spots_of_a_c_server_is_its_one_total(fake, home):
    """The C server sends meta.spots as one integer and no bins: just the total."""
    run = start_cli(["spots", "a.cbf", "--endpoint", fake.endpoint, "--pid", "s"], home)
    fake.receive()
    fake.reply([b"", b'{"type":"spots"}', b'{"spots": 42}'])
    out, err = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, err
    assert out.decode().splitlines() == ["total 42"]


def test_spots_help_offers_only_the_flags_spots_uses():
    text = cli_module.parser().format_help()
    spots_help = _subcommand_help("spots")
    for unused in ("--xsize", "--ysize", "--zoom", "--segcol", "--contrast", "--label", "--redis"):
        assert unused not in spots_help
    assert "--frame" in spots_help and "--esaf" in spots_help
    assert "--xsize" in _subcommand_help("jpeg") and "--redis" in _subcommand_help("index")
    assert "18 incomplete" in text


def _subcommand_help(name: str) -> str:
    ap = cli_module.parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name].format_help()


def test_a_success_reply_without_what_was_asked_is_internal(fake, home):
    run = start_cli(["spots", "a.cbf", "--endpoint", fake.endpoint, "--pid", "s"], home)
    fake.receive()
    fake.reply([b"", b"{}", b'{"wavelength": 1.0}'])
    _, err = run.communicate(timeout=RUN_TIMEOUT_S)
    assert run.returncode == 17 and b"no spot count" in err


# -- usage and settings, without a server ------------------------------------------------


def test_usage_errors_exit_2(home, tmp_path):
    assert cli(["meta", FN], home).returncode == 2  # no session id anywhere
    bad_esaf = cli(["meta", FN, "--pid", "p"], home, {"PYIS_ESAF": "e42"})
    assert bad_esaf.returncode == 2 and b"PYIS_ESAF must be an integer" in bad_esaf.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text('endpiont = "tcp://x:1"\n')
    done = cli(["status", "--config", str(typo)], home)
    assert done.returncode == 2 and b"unknown key 'endpiont'" in done.stderr
    assert cli(["status", "--config", str(tmp_path / "none.toml")], home).returncode == 2
    assert cli(["status", "--endpoint", "not-an-endpoint"], home).returncode == 2
    assert cli(["status", "--retries", "0"], home).returncode == 2
    assert cli(["jpeg"], home).returncode == 2


def test_settings_precedence_and_the_index_timeout():
    file = {"endpoint": "tcp://file:1", "pid": "file", "timeout": 2, "retries": 4}
    env = {"PYIS_PID": "env", "PYIS_ESAF": "5", "PYIS_ENDPOINT": ""}
    flags = {"esaf": 6, "command": "meta", "fn": "x"}
    settings = client.resolve(flags, env, file)
    assert (settings.endpoint, settings.pid, settings.esaf) == ("tcp://file:1", "env", 6)
    assert (settings.timeout, settings.retries) == (2.0, 4)
    assert client.resolve({}, {}, {}) == client.Settings()
    # a long job raises a file's or the default timeout, but a flag is taken as given
    assert client.resolve({}, {}, file, timeout_floor=600).timeout == 600
    assert client.resolve({"timeout": 1.5}, {}, file, timeout_floor=600).timeout == 1.5
    with_token = client.resolve({}, {"PYIS_AUTH": "s3cr3t"}, {})
    assert with_token.auth == "s3cr3t" and "s3cr3t" not in repr(with_token)
