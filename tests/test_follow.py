"""The ``newest`` long-poll against the real stack: frames written into an ESAF home while a
follower waits, as detectors write them (write then close; a temporary name then rename)."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyis_common.workerstats import CACHE_COUNTERS
from pyisdev.stack import Stack
from tests.conftest import CBF, REPO, need_root
from tests.support.accounts import Accounts
from tests.support.client import ask, error_code, meta_of
from tests.support.detector import EigerSeries, write_frame
from worker.follow import Follows

_dirs = itertools.count(1)


def live_dir(home: Path, group: str, mode: int = 0o750) -> Path:
    folder = home / f"live_{os.getpid()}_{next(_dirs)}"
    folder.mkdir()
    shutil.chown(folder, "root", group)
    os.chmod(folder, mode)
    return folder


def newest(site, fn: str, seq: int = 0, wait: float = 10.0, **extra) -> list[bytes]:
    job = {"pid": site.session(), "esaf": site.esaf, "type": "newest", "fn": fn, "seq": seq}
    return ask(site.endpoint, job | {"wait": wait, "xsize": 256} | extra)


def in_background(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)))
    thread.start()
    return thread, out


def group_of(site) -> str:
    return f"e{site.esaf}"


def followed(reply: list[bytes]) -> dict:
    assert reply[0] == b"", reply
    echoed, _ = meta_of(reply)
    return echoed["newest"]


def test_follow_a_directory_while_frames_appear(site, testdata):
    folder = live_dir(site.home, group_of(site))
    rel = folder.name
    first = newest(site, rel, wait=0.5)  # nothing there yet: nothing new, no JPEG
    assert len(first) == 3 and followed(first) is None
    waiting, out = in_background(newest, site, rel)
    write_frame(testdata / CBF, folder / "x_0001.cbf", group=group_of(site))
    waiting.join()
    frame = followed(out[0])
    assert frame["fn"] == f"{rel}/x_0001.cbf" and frame["frame"] == 1 and frame["seq"] > 0
    assert len(out[0]) == 4 and Image.open(io.BytesIO(out[0][3])).width == 256
    # a rename into place is seen; the temporary name never is
    waiting, out = in_background(newest, site, rel, seq=frame["seq"])
    write_frame(testdata / CBF, folder / "x_0002.cbf", rename=True, group=group_of(site))
    waiting.join()
    second = followed(out[0])
    assert second["fn"] == f"{rel}/x_0002.cbf" and second["seq"] > frame["seq"]
    # the client is behind: it gets the newest at once, not the frames in between
    assert followed(newest(site, rel, seq=frame["seq"], wait=5))["fn"].endswith("x_0002.cbf")


def test_a_partially_written_frame_is_never_shown(site, testdata):
    folder = live_dir(site.home, group_of(site))
    rel = folder.name
    assert followed(newest(site, rel, wait=0.2)) is None  # the watch exists from here on
    data = (testdata / CBF).read_bytes()
    target = folder / "x_0001.cbf"
    with open(target, "wb") as f:
        shutil.chown(target, "root", group_of(site))
        os.chmod(target, 0o640)
        f.write(data[: len(data) // 2])
        f.flush()
        assert followed(newest(site, rel, wait=1.5)) is None  # open, half written: not offered
        f.write(data[len(data) // 2 :])
    reply = newest(site, rel, wait=10)  # closed: now it is, whole
    assert followed(reply)["fn"] == f"{rel}/x_0001.cbf"
    assert Image.open(io.BytesIO(reply[3])).format == "JPEG"


def test_a_frame_closed_short_is_refused_never_drawn(site, testdata):
    """A writer that closed the file before its last bytes: read again, then an error."""
    folder = live_dir(site.home, group_of(site))
    assert followed(newest(site, folder.name, wait=0.2)) is None
    waiting, out = in_background(newest, site, folder.name)
    write_frame((testdata / CBF).read_bytes()[:100000], folder / "x_0001.cbf", group=group_of(site))
    waiting.join()
    assert error_code(out[0]) in ("incomplete", "unsupported")


def test_a_template_follows_only_its_series(site, testdata):
    folder = live_dir(site.home, group_of(site))
    template = f"{folder.name}/a_####.cbf"
    assert followed(newest(site, template, wait=0.2)) is None
    waiting, out = in_background(newest, site, template)
    write_frame(testdata / CBF, folder / "b_0001.cbf", group=group_of(site))  # another series
    write_frame(testdata / CBF, folder / "a_0001.cbf.tmp", group=group_of(site))  # no image
    write_frame(testdata / CBF, folder / "a_0007.cbf", group=group_of(site))
    waiting.join()
    assert followed(out[0])["fn"] == f"{folder.name}/a_0007.cbf"


def test_an_eiger_series_is_followed_as_its_data_file_grows(site):
    folder = live_dir(site.home, group_of(site))
    series = EigerSeries(folder, "s", (30, 40), nimages=3)
    series.chown(group_of(site))
    master = f"{folder.name}/s_master.h5"
    assert followed(newest(site, master, wait=0.3)) is None  # no frame on disk yet
    rng = np.random.default_rng(16)
    seq = 0
    for n in (1, 2, 3):
        waiting, out = in_background(newest, site, master, seq=seq)
        assert series.append(rng.poisson(20, (30, 40)).astype(np.uint32)) == n
        waiting.join()
        frame = followed(out[0])
        assert (frame["fn"], frame["frame"]) == (master, n) and frame["seq"] > seq
        assert Image.open(io.BytesIO(out[0][3])).format == "JPEG"
        seq = frame["seq"]


def counters(site) -> dict:
    ask(
        site.endpoint,
        {"type": "jpeg", "pid": site.session(), "esaf": site.esaf, "fn": "thau_0001.cbf"},
    )
    _, status = meta_of(ask(site.endpoint, {"pid": "monitor", "type": "status"}))
    return status["cache"]


def test_two_followers_share_one_watch(site, testdata):
    before = counters(site)
    folder = live_dir(site.home, group_of(site))
    waiters = [in_background(newest, site, folder.name, wait=20) for _ in range(2)]
    for _ in range(100):  # both parked (the worker reports how many wait)
        now = counters(site)
        if now.get("followers", 0) - before.get("followers", 0) == 2:
            break
    assert now["watches"] - before.get("watches", 0) == 1
    renders = now.get("follow_renders", 0)
    write_frame(testdata / CBF, folder / "x_0001.cbf", group=group_of(site))
    for thread, _ in waiters:
        thread.join()
    fns = {followed(out[0])["fn"] for _, out in waiters}
    assert fns == {f"{folder.name}/x_0001.cbf"}
    assert counters(site)["follow_renders"] == renders + 1  # one rendering for both


def test_the_follow_counters_are_declared_ones(tmp_path):
    """A counter the procmgr does not know would vanish from status (workerstats.py)."""
    with ThreadPoolExecutor(1) as pool:
        follows = Follows(str(tmp_path), lambda req, clock: None, pool)
        assert set(follows.counters()) <= CACHE_COUNTERS


def test_a_directory_the_session_may_not_read_is_refused(site):
    folder = live_dir(site.home, group_of(site), mode=0o700)  # root's alone
    assert error_code(newest(site, folder.name, wait=1)) == "forbidden"
    assert error_code(newest(site, f"{folder.name}/x_####.cbf", wait=1)) == "forbidden"
    assert error_code(newest(site, "../", wait=1)) == "forbidden"


def test_wait_is_bounded(site):
    assert error_code(newest(site, ".", wait=31)) == "bad_request"
    assert error_code(newest(site, ".", wait=-1)) == "bad_request"


# -------------------------------------------------- idle long-polls and other users' slots


@pytest.fixture(scope="module")
def small_site(testdata: Path) -> Iterator[tuple[Stack, Accounts, int, Path, list[str]]]:
    """A stack with room for two requests in flight."""
    need_root()
    base = Path(tempfile.mkdtemp(prefix="pyis-follow-", dir="/tmp"))
    os.chmod(base, 0o755)
    acc = Accounts.create(base / "homes")
    esaf = 800000 + int(acc.tag) % 50000
    try:
        group, home = acc.esaf(esaf)
        users = [acc.user(f"pyisf{acc.tag}"), acc.user(f"pyisg{acc.tag}")]
        (home / "empty").mkdir()
        shutil.chown(home / "empty", "root", group)
        shutil.copyfile(testdata / CBF, home / "x.cbf")
        shutil.chown(home / "x.cbf", "root", group)
        os.chmod(home / "x.cbf", 0o640)
        config = base / "procmgr.toml"
        config.write_text(
            f'[procmgr]\nrequire_esaf = true\nesaf_group = "e{esaf}"\nmax_in_flight = 2\n'
        )
        stack = Stack(base, ["--config", str(config)]).start()
        yield stack, acc, esaf, home, users
        stack.stop()
    finally:
        acc.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_idle_long_polls_do_not_hold_slots_other_users_need(small_site):
    stack, _, esaf, _, (follower, other) = small_site
    pid = stack.sign_session(follower, [esaf])
    poll = {"pid": pid, "esaf": esaf, "type": "newest", "fn": "empty", "wait": 8}
    polls = [in_background(ask, stack.endpoint, poll) for _ in range(2)]
    job = {
        "type": "jpeg",
        "pid": stack.sign_session(other, [esaf]),
        "esaf": esaf,
        "fn": "x.cbf",
        "xsize": 64,
    }
    deadline = time.monotonic() + 6  # both polls in flight, and the proxy told of them (1 s)
    in_flight = 0
    while time.monotonic() < deadline and in_flight != 2:
        status = ask(stack.endpoint, {"pid": "monitor", "type": "status"})
        in_flight = json.loads(status[2])["in_flight"] if status[0] == b"" else 0
        time.sleep(0.05)
    assert in_flight == 2
    reply = ask(stack.endpoint, job)
    assert reply[0] == b"" and len(reply) == 4, reply  # not busy: the polls hold no slot
    for thread, out in polls:
        thread.join()
        assert json.loads(out[0][1])["newest"] is None


def test_is_cli_follow_keeps_the_newest_frame_and_ends_on_ctrl_c(site, testdata, tmp_path):
    folder = live_dir(site.home, group_of(site))
    assert followed(newest(site, folder.name, wait=0.2)) is None  # the watch exists from here
    output = tmp_path / "newest.jpg"
    args = ["follow", folder.name, "-o", str(output), "--xsize", "128", "--wait", "2"]
    args += ["--endpoint", site.endpoint, "--pid", site.session(), "--esaf", str(site.esaf)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYIS_")}
    run = subprocess.Popen(
        [sys.executable, "-m", "iscli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env | {"HOME": str(tmp_path)},
        cwd=REPO,
    )
    try:
        for n, rename in ((1, False), (2, True)):
            name = f"x_{n:04d}.cbf"
            write_frame(testdata / CBF, folder / name, rename=rename, group=group_of(site))
            line = run.stdout.readline().decode()
            seq, fn, word, frame, latency, unit = line.split()
            assert fn == f"{folder.name}/{name}" and (word, frame, unit) == ("frame", "1", "ms")
            assert int(seq) > 0 and float(latency) >= 0
            assert Image.open(output).size[0] == 128  # whole: it was renamed into place
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert b"stopped after 2 frames" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".newest")] == []


def test_a_path_bound_token_follows_inside_its_prefix_only(site, testdata):
    inside = live_dir(site.home, group_of(site))
    outside = live_dir(site.home, group_of(site))
    pid, token = site.stack.token(site.user, [site.esaf], paths=[f"{inside.name}/"])
    job = {"pid": pid, "esaf": site.esaf, "type": "newest", "auth": token, "wait": 0.2}
    for fn in (outside.name, f"{outside.name}/x_####.cbf", f"{inside.name}/../{outside.name}"):
        reply = ask(site.endpoint, job | {"fn": fn})
        assert error_code(reply) == "forbidden" and "bound" in reply[0].decode()
    assert followed(ask(site.endpoint, job | {"fn": inside.name})) is None
    waiting, out = in_background(ask, site.endpoint, job | {"fn": inside.name, "wait": 10})
    write_frame(testdata / CBF, inside / "x_0001.cbf", group=group_of(site))
    waiting.join()
    assert followed(out[0])["fn"] == f"{inside.name}/x_0001.cbf"
