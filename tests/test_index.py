"""The index job: argv only, inside the ESAF home, private temp dir, progress, responsiveness."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from procmgr.progress import channel
from pyis_common.errors import Internal, Timeout, Unsupported
from tests.support.client import ask, error_code, meta_of
from tests.support.proctree import alive
from worker import index, jobs

HOSTILE_NAMES = [
    "a;touch PWNED1.cbf",
    "$(touch PWNED2).cbf",
    "`touch PWNED3`.cbf",
    "b' ; rm -rf ~ ; '.cbf",
]


def _copy(site, name: str) -> Path:
    dst = site.home / name
    shutil.copyfile(site.home / "thau_0001.cbf", dst)
    shutil.chown(dst, "root", f"e{site.esaf}")
    os.chmod(dst, 0o640)
    return dst


def _index(site, fn: str, **extra) -> list[bytes]:
    return ask(
        site.endpoint,
        {"pid": site.session(), "esaf": site.esaf, "type": "index", "fn": fn, **extra},
    )


def test_index_runs_as_the_user_in_its_results_folder_with_a_private_home(site):
    reply = _index(site, "thau_0001.cbf")
    _, result = meta_of(reply)
    assert result["files"] == [str(site.home / "thau_0001.cbf")]
    assert result["uid"] == pwd.getpwnam(site.user).pw_uid
    assert result["cwd"] == str(site.home / result["results_folder"])
    assert Path(result["home"]).name.startswith("pyis-index-")
    assert not Path(result["home"]).exists()
    assert "REDIS" not in " ".join(result["env"]) and "PYIS" not in " ".join(result["env"])


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_file_names_are_arguments_never_shell(site, name):
    path = _copy(site, name)
    _, result = meta_of(_index(site, name))
    assert result["files"] == [str(path)]
    assert result["argv"][-2:] == ["--", str(path)]
    for where in (site.home, Path("/tmp")):
        assert not list(where.glob("PWNED*"))
    assert (site.home / "thau_0001.cbf").exists()


def test_index_paths_must_stay_inside_the_esaf_home(site):
    assert error_code(_index(site, "../../etc/passwd")) == "forbidden"
    assert error_code(_index(site, "thau_0001.cbf", fn2="/etc/hostname")) == "forbidden"


def test_progress_is_published_on_the_session_channel(site):
    pid = site.session()
    tag = "progress-test"
    pubsub = site.stack.redis.pubsub()
    pubsub.subscribe(channel(pid, tag))
    pubsub.get_message(timeout=5)  # the subscribe confirmation
    reply = ask(
        site.endpoint,
        {"pid": pid, "esaf": site.esaf, "type": "index", "fn": "thau_0001.cbf", "tag": tag},
    )
    assert reply[0] == b""
    messages = []
    while not messages or not messages[-1].get("done"):
        msg = pubsub.get_message(timeout=10)
        assert msg is not None, f"progress stopped after {messages}"
        if msg["type"] == "message":
            messages.append(json.loads(msg["data"]))
    pubsub.close()
    lines = [m["progress"] for m in messages if "progress" in m]
    assert lines == [f"indexing step {i}/3" for i in (1, 2, 3)]
    assert messages[-1] == {"done": True, "outcome": "ok", "tag": tag}


def test_worker_answers_other_requests_while_indexing(site):
    wait = _copy(site, "wait_0001.cbf")
    fifo = site.home / "release"
    if not fifo.exists():
        os.mkfifo(fifo)
        shutil.chown(fifo, "root", f"e{site.esaf}")
        os.chmod(fifo, 0o660)
    replies: list[list[bytes]] = []
    runner = threading.Thread(target=lambda: replies.append(_index(site, wait.name)))
    runner.start()
    deadline = time.monotonic() + 30
    while not any(w["in_flight"] for w in site.stack.status_detail()["workers"]):
        assert runner.is_alive() and time.monotonic() < deadline
    jpeg = ask(
        site.endpoint,
        {"type": "jpeg", "pid": site.session(), "esaf": site.esaf, "fn": "thau_0001.cbf"},
    )
    assert jpeg[0] == b"" and not replies  # answered while the index still runs
    with open(fifo, "w") as fh:
        fh.write("go")
    runner.join(60)
    assert meta_of(replies[0])[1]["files"] == [str(wait)]


def test_index_without_a_configured_indexer_is_unsupported(tmp_path):
    pipeline = jobs.Pipeline(home=str(tmp_path))
    (tmp_path / "a.cbf").write_bytes(b"x")
    with pytest.raises(Unsupported, match="not configured"):
        pipeline.run({"type": "index", "fn": "a.cbf"})


# -- the indexer's limits, with real processes: time, stdout, stderr ----------------------


def indexer(code: str, **limits) -> index.IndexSettings:
    """An indexer that runs ``code``; its image paths (after ``--``) are in ``files``."""
    prelude = "import os, subprocess, sys, time\nfiles = sys.argv[sys.argv.index('--') + 1 :]\n"
    return index.IndexSettings(command=(sys.executable, "-c", prelude + code), **limits)


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):  # a killed orphan is reaped by init: wait for that, with a deadline
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_indexer_past_its_time_limit_is_killed_with_its_children(tmp_path):
    pids = tmp_path / "pids"
    code = (
        "child = subprocess.Popen(['sleep', '600'])\n"
        "open(files[0], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(600)\n"  # the indexer's own work: far past its limit
    )
    t0 = time.monotonic()
    with pytest.raises(Timeout, match="longer than 1 s"):
        index.run(indexer(code, timeout_s=1.0), [str(pids)], lambda _line: None)
    assert time.monotonic() - t0 < 60  # the limit, not the 600 s run
    for pid in map(int, pids.read_text().split()):  # the indexer and the child it started
        assert gone_within(pid, 30), f"pid {pid} outlived the time limit"


def test_an_indexer_that_prints_past_its_cap_is_killed_and_refused(tmp_path):
    code = "while True:\n    sys.stdout.write('x' * 65536)\n"  # never stops by itself
    with pytest.raises(Internal, match="more than the allowed output"):
        index.run(indexer(code, max_output=1 << 20), [], lambda _line: None)


def test_a_result_just_under_the_cap_is_taken(tmp_path):
    code = "import json\nprint(json.dumps({'pad': 'x' * (1000 - 20)}))\n"
    assert len(index.run(indexer(code, max_output=1000), [], lambda _l: None)["pad"]) == 980


def test_a_progress_flood_is_cut_to_short_lines_and_a_bounded_count(tmp_path):
    many = index.MAX_PROGRESS_LINES + 500
    code = f"for i in range({many}):\n    print(f'{{i:05d}}' + 'y' * 300, file=sys.stderr)\n"
    lines: list[str] = []
    assert index.run(indexer(code + "print('{}')\n"), [], lines.append) == {}
    assert len(lines) == index.MAX_PROGRESS_LINES
    assert {len(line) for line in lines} == {index.MAX_PROGRESS_LINE}
    last = f"{index.MAX_PROGRESS_LINES - 1:05d}"
    assert lines[0].startswith("00000") and lines[-1].startswith(last)


@pytest.mark.parametrize(
    "code,reason",
    [
        ("print('not json')", "did not print a JSON result"),
        ("sys.exit(3)", "exit status 3"),
    ],
)
def test_an_indexer_that_fails_is_one_internal_error(code, reason):
    with pytest.raises(Internal, match=reason):
        index.run(indexer(code), [], lambda _line: None)
