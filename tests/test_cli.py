"""``is-cli`` as staff and scripts run it: a real subprocess against the real stack.

Exit codes are the interface scripts test, so every path checks one. A REP socket stands in
for the server only where pyis would never answer so (a C server's bare spot total, a reply
missing what was asked) and to see the exact request the CLI sends. The Lazy Pirate is shown
against a proxy that swallows a request and then restarts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from PIL import Image

from iscli import args as cli_module
from iscli import client
from procmgr import progress
from procmgr.__main__ import dev_user
from pyis_common import protocol
from pyisdev import procs
from pyisdev.stack import Stack
from tests.conftest import REPO
from tests.support.devsite import dev_stack

CLI = [sys.executable, "-m", "iscli"]
FN = "thau_0001.cbf"
RUN_TIMEOUT_S = 60.0  # a whole CLI run: a cold worker start on a loaded CI box, with margin
WAIT_S = 20.0  # for a condition we caused to become observable


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of its own, so a real ~/.config/pyis/cli.toml on this machine cannot interfere."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYIS_")}
    env.pop("XDG_CONFIG_HOME", None)
    return env | {"HOME": str(home)} | (extra or {})


def cli(
    args: list[str], home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        env=cli_env(home, env),
        cwd=REPO,
        timeout=RUN_TIMEOUT_S,
    )


def on(site: Any, pid: str | None = None) -> list[str]:
    """Endpoint, session and ESAF as flags."""
    pid = pid or site.session()
    return ["--endpoint", site.endpoint, "--pid", pid, "--esaf", str(site.esaf)]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition the test caused, with a deadline (never a sleep standing in for it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- against the real stack --------------------------------------------------------------


def test_jpeg_to_a_file(site, home, tmp_path):
    out = tmp_path / "out.jpg"
    done = cli(["jpeg", FN, *on(site), "--xsize", "256", "--label", "thau", "-o", str(out)], home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert decoded(out.read_bytes()).width == 256
    echoed = json.loads(done.stderr)  # the job, as the server decided it
    assert echoed["xsize"] == 256 and echoed["label"] == "thau" and "wval_used" in echoed


def test_jpeg_to_stdout_with_levels(site, home):
    args = ["jpeg", FN, *on(site), "--xsize", "200", "--contrast", "50", "--wval", "2", "-o", "-"]
    done = cli(args, home)
    assert done.returncode == 0, done.stderr
    assert decoded(done.stdout).width == 200
    echoed = json.loads(done.stderr)
    assert (echoed["wval_used"], echoed["bval_used"]) == (2, 50)


def test_jpeg_look_flags_reach_the_server(site, home):
    args = ["jpeg", FN, *on(site), "--xsize", "64", "--colormap", "viridis", "--scale", "log"]
    done = cli([*args, "--levels", "c", "-o", "-"], home)
    assert done.returncode == 0, done.stderr
    assert decoded(done.stdout).mode == "RGB"  # the heat map is colour even with no red
    echoed = json.loads(done.stderr)
    assert (echoed["colormap"], echoed["scale"], echoed["levels"]) == ("viridis", "log", "c")
    refused = cli([*args[:-1], "cubic", "-o", "-"], home)
    assert refused.returncode == 2 and b"invalid choice" in refused.stderr


def test_meta_is_pretty_json(site, home):
    done = cli(["meta", FN, *on(site)], home)
    assert done.returncode == 0, done.stderr
    assert b'\n  "' in done.stdout  # indented, one key a line
    meta = json.loads(done.stdout)
    assert (meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]) == (2463, 2527)


def test_status_needs_no_session_and_says_counts(site, home):
    assert cli(["meta", FN, *on(site)], home).returncode == 0  # a worker exists
    done = cli(["status", "--json", "--endpoint", site.endpoint], home)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert type(status["workers"]) is int and status["workers"] >= 1 and "in_flight" in status


def test_status_detail_comes_from_the_loopback_metrics_port(site, home):
    assert cli(["meta", FN, *on(site)], home).returncode == 0
    address = site.stack.procmgr.fields()["metrics"]
    done = cli(["status", "--detail", address], home)
    assert done.returncode == 0, done.stderr
    uid = pwd.getpwnam(site.user).pw_uid
    assert any(w["uid"] == uid and w["pid"] > 0 for w in json.loads(done.stdout)["workers"])


def test_error_replies_become_exit_codes(site, home):
    missing = cli(["meta", "nope.cbf", *on(site)], home)
    assert missing.returncode == 13
    assert missing.stderr.startswith(b"is-cli: not_found: ")
    other = ["meta", FN, *on(site), "--esaf", str(site.other_esaf)]  # the later --esaf wins
    forbidden = cli(other, home)
    assert forbidden.returncode == 12
    assert forbidden.stderr.startswith(b"is-cli: forbidden: ")
    assert cli(["meta", FN, *on(site, pid="no-such-session")], home).returncode == 11


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\u202e"  # title, clear screen, red, bidi override


def test_error_text_from_the_server_loses_its_terminal_escapes(site, home):
    """The server echoes the file name in its sentence; a name full of escapes prints inert."""
    missing = cli(["meta", f"{ESCAPES}nope.cbf", *on(site)], home)
    assert missing.returncode == 13
    err = missing.stderr.decode()
    assert err.startswith("is-cli: not_found: ") and "nope.cbf" in err
    assert err.rstrip("\n").isprintable(), repr(err)


def test_spots_prints_counts_and_d_ranges(site, home):
    """One line per bin: number, count, the bin's d range in Angstrom; then the total."""
    done = cli(["spots", FN, *on(site)], home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 17 and lines[-1].startswith("total ")
    rows = [line.split() for line in lines[:-1]]
    assert [int(row[0]) for row in rows] == list(range(1, 17))
    assert sum(int(row[1]) for row in rows) == int(lines[-1].split()[1])
    assert all(row[3] == "A" for row in rows)
    d_ranges = [[float(v) for v in row[2].split("-")] for row in rows[1:]]
    assert all(big > small for big, small in d_ranges)  # shells of falling d, outwards
    pairs = zip(d_ranges, d_ranges[1:], strict=False)
    assert all(a[1] == pytest.approx(b[0], rel=0.02) for a, b in pairs)  # bins touch


def test_index_through_the_stack_shows_progress_then_prints_the_result(site, home):
    """The site's procmgr runs tests/fake_indexer.py and publishes on the session Redis."""
    done = cli(["index", FN, *on(site), "--redis", site.stack.redis_url], home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == [str(site.home / FN)]
    shown = [line for line in done.stderr.decode().splitlines() if "progress:" in line]
    assert shown == [f"is-cli: progress: indexing step {i}/3" for i in (1, 2, 3)]


def test_index_of_two_images_sends_both_and_a_given_tag(site, home):
    """The tag names the progress channel: progress shown proves the server got this tag."""
    second = "thau_0002.cbf"
    shutil.copy2(site.home / FN, site.home / second)
    shutil.chown(site.home / second, "root", f"e{site.esaf}")
    args = ["index", FN, "--fn2", second, *on(site), "--tag", "t-9"]
    done = cli([*args, "--redis", site.stack.redis_url], home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == [str(site.home / FN), str(site.home / second)]
    assert b"is-cli: progress: indexing step 3/3" in done.stderr


def test_index_errors_become_exit_codes(site, home):
    assert cli(["index", "nope.cbf", *on(site)], home).returncode == 13
    outside = cli(["index", "../../etc/passwd", *on(site)], home)
    assert outside.returncode == 12 and outside.stderr.startswith(b"is-cli: forbidden: ")


def test_index_progress_loses_its_terminal_escapes(site, home):
    """The indexer prints what the test chose (a file name full of escapes): it prints inert."""
    name = f"say_{ESCAPES}COLSPOT\tdone.cbf"
    shutil.copy2(site.home / FN, site.home / name)
    shutil.chown(site.home / name, "root", f"e{site.esaf}")
    done = cli(["index", name, *on(site), "--redis", site.stack.redis_url], home)
    assert done.returncode == 0, done.stderr
    (shown,) = [line for line in done.stderr.decode().splitlines() if "COLSPOT" in line]
    assert shown.isprintable() and shown.endswith("COLSPOT done.cbf"), repr(shown)


def test_index_goes_on_without_progress_when_redis_is_unreachable(site, home):
    nowhere = "redis://127.0.0.1:1/0"  # port 1: nothing listens, the connect fails at once
    done = cli(["index", FN, *on(site), "--redis", nowhere], home)
    assert done.returncode == 0 and json.loads(done.stdout)["files"] == [str(site.home / FN)]
    assert b"is-cli: no progress shown: ConnectionError" in done.stderr


def test_progress_channel_is_the_one_the_procmgr_publishes_on():
    for tag in ("3f2a9c0d11e4b7a8", "run 7\tb", "x" * 100, " \n", "épreuve"):
        assert protocol.progress_channel("sess", tag) == progress.channel("sess", tag)


def test_inline_token_from_the_environment_is_sent_and_never_printed(site, home):
    pid, token = site.stack.token(site.user, [site.esaf])
    env = {
        "PYIS_ENDPOINT": site.endpoint,
        "PYIS_PID": pid,
        "PYIS_ESAF": str(site.esaf),
        "PYIS_AUTH": token,
    }
    runs = [
        cli(["jpeg", FN, "--xsize", "64", "-o", "-"], home, env),
        cli(["meta", FN], home, env),
        cli(["meta", "nope.cbf"], home, env),
        cli(["meta", FN, "--esaf", str(site.other_esaf)], home, env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 13, 12], [r.stderr for r in runs]
    assert decoded(runs[0].stdout).width == 64
    for run in runs:
        assert token.encode() not in run.stdout + run.stderr
    assert b'"auth"' not in runs[0].stderr  # the echoed job
    # the session holds no access object: only the inline token made those requests work
    without = cli(["meta", FN], home, {k: v for k, v in env.items() if k != "PYIS_AUTH"})
    assert without.returncode == 11


def test_token_on_the_command_line_is_never_printed(site, home, tmp_path):
    pid, token = site.stack.token(site.user, [site.esaf])
    out = tmp_path / "t.jpg"
    runs = [
        cli(["jpeg", FN, *on(site, pid), "--auth", token, "--xsize", "64", "-o", str(out)], home),
        cli([f"--auth={token}", "meta", "nope.cbf", *on(site, pid)], home),
        cli(["--auth", token, "status", token], home),  # argparse quotes the stray word
        cli(["--auth", token, "meta"], home),
    ]
    assert [r.returncode for r in runs] == [0, 13, 2, 2], [r.stderr for r in runs]
    assert decoded(out.read_bytes()).width == 64
    for run in runs:
        assert token.encode() not in run.stdout + run.stderr
    assert b"unrecognized arguments: ***" in runs[2].stderr


def test_config_file_then_environment_then_flags(site, home, tmp_path):
    good = site.session()
    default = home / ".config" / "pyis" / "cli.toml"
    default.parent.mkdir(parents=True)
    default.write_text(f'endpoint = "{site.endpoint}"\npid = "{good}"\nesaf = {site.esaf}\n')
    assert cli(["meta", FN], home).returncode == 0  # the file alone (the default path)
    bad_pid = {"PYIS_PID": "no-such-session"}
    assert cli(["meta", FN], home, bad_pid).returncode == 11  # environment over file
    assert cli(["meta", FN, "--pid", good], home, bad_pid).returncode == 0  # flag over env
    other = {"PYIS_ESAF": str(site.other_esaf)}
    assert cli(["meta", FN], home, other).returncode == 12
    assert cli(["meta", FN, "--esaf", str(site.esaf)], home, other).returncode == 0
    # --config replaces the default file; its timeout and retries apply
    nowhere = f"ipc://{tmp_path}/nobody"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(f'endpoint = "{nowhere}"\npid = "{good}"\ntimeout = 0.2\nretries = 2\n')
    args = ["meta", FN, "--config", str(explicit), "--esaf", str(site.esaf)]
    done = cli(args, home)
    assert done.returncode == 20
    assert b"after 2 tries of 0.2 s each" in done.stderr
    assert cli(args, home, {"PYIS_ENDPOINT": site.endpoint}).returncode == 0


# -- the Lazy Pirate ---------------------------------------------------------------------


def test_nothing_listening_exits_20_after_the_retries(home, tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody"
    t0 = time.monotonic()
    args = ["status", "--endpoint", endpoint, "--timeout", "0.3", "--retries", "3"]
    done = cli(args, home)
    assert done.returncode == 20
    assert time.monotonic() - t0 >= 0.9
    err = done.stderr.decode()
    assert err.count("retrying on a new socket") == 2
    assert f"no reply from {endpoint} after 3 tries of 0.3 s each" in err


@pytest.fixture
def own_stack(testdata: Path) -> Iterator[Stack]:
    """A stack of its own: this test stops and replaces its proxy."""
    with dev_stack(testdata) as stack:
        yield stack


def control(stack: Stack, command: str) -> str:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(stack.control)
        sock.send_string(command)
        assert sock.poll(int(WAIT_S * 1000)), f"the proxy did not answer {command}"
        return sock.recv_string()
    finally:
        sock.close(linger=0)


def test_a_lost_request_and_a_restarted_proxy_cost_retries_not_a_hang(own_stack, home, tmp_path):
    out = tmp_path / "a.jpg"
    pid = own_stack.sign_session(dev_user(), [21])
    args = [*CLI, "jpeg", "a.cbf", "--endpoint", own_stack.endpoint, "--pid", pid]
    args += ["--esaf", "21", "--xsize", "64", "-o", str(out)]
    warm = subprocess.run(args, capture_output=True, env=cli_env(home), cwd=REPO, timeout=60)
    assert warm.returncode == 0, warm.stderr  # worker started and image cached: 1 s is plenty
    # a paused proxy takes the request and never forwards it: the first try is lost for good
    assert control(own_stack, "PAUSE") == "OK"
    retrying = procs.Proc(
        [*args, "--timeout", "1", "--retries", "10"],
        lambda line: "retrying on a new socket" in line,
        stderr=subprocess.STDOUT,
        env=cli_env(home),
    )
    replacement = None
    try:
        retrying.wait_ready(WAIT_S)
        assert control(own_stack, "TERMINATE") == "OK"
        assert own_stack.proxy.proc.wait(WAIT_S) == 0
        replacement = procs.Proc(
            [
                *procs.pyis_command("is_proxy"),
                "--frontend",
                own_stack.endpoint,
                "--backend",
                own_stack.backend,
                *own_stack.proxy_curve_args(),
            ],
            lambda line: line.startswith("READY"),
        )
        replacement.wait_ready()
        assert retrying.proc.wait(RUN_TIMEOUT_S) == 0, "\n".join(retrying.lines)
    finally:
        retrying.stop()
        if replacement is not None:
            replacement.stop()
    assert decoded(out.read_bytes()).width == 64
    assert sum("retrying on a new socket" in line for line in retrying.lines) >= 1


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
