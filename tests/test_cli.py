"""``is-cli`` as staff and scripts run it: a real subprocess against the real stack.

The Lazy Pirate is in test_cli_pirate.py; a REP socket standing in for the server, and usage
without one, in test_cli_fake.py.

Exit codes are the interface scripts test, so every path checks one.
"""

from __future__ import annotations

import json
import pwd
import shutil

import pytest

from procmgr import progress
from pyis_common import protocol
from tests.support.clirun import (
    FN,
    cli,
    decoded,
    on,
)

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
