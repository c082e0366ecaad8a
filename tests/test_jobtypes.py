"""The job table is the one place a job type is declared: everything that acts on a type reads it.

Adding a type is a row in pyis_common/jobtypes.py plus its handler; these tests fail when a
row lacks a handler, a handler lacks a row, or a reader still keeps a list of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iscli import args as cli_args
from iscli import output
from procmgr.frames import reply_frames
from pyis_common import jobtypes
from pyis_common.errors import BadRequest, Unsupported
from pyis_common.jobtypes import AnsweredBy, Deadline, Payload
from pyis_common.request import parse
from tests.conftest import REPO
from worker import jobs

FN = "thau_0001.cbf"
RUN_TIMEOUT_S = 60.0  # a whole CLI run: a cold worker start on a loaded CI box, with margin


def test_every_pipeline_type_has_a_handler_and_every_handler_a_row():
    pipeline = {t.name for t in jobtypes.TABLE if t.answered_by is AnsweredBy.PIPELINE}
    assert set(jobs.HANDLERS) == pipeline


def test_types_the_pipeline_does_not_run_are_refused_by_it_not_crashed_on():
    pipe = jobs.Pipeline(home="/nonexistent")
    for row in jobtypes.TABLE:
        if row.answered_by is not AnsweredBy.PIPELINE:
            with pytest.raises(Unsupported, match="not run by a worker's pipeline"):
                pipe.run({"type": row.name, "fn": FN})


def test_a_worker_may_send_a_payload_only_for_a_type_whose_row_has_one():
    header = {"job": {}, "meta": {}}
    for row in jobtypes.TABLE:
        req = parse({"pid": "s", "type": row.name, "fn": FN, "wait": 0})
        assert len(reply_frames(req, header, [])) == 2  # job, meta (the "" goes in front)
        if row.payload is not Payload.NONE:
            assert reply_frames(req, header, [b"\xff\xd8"])[2] == b"\xff\xd8"
        else:
            with pytest.raises(ValueError, match="malformed reply"):
                reply_frames(req, header, [b"smuggled"])


def test_the_cli_offers_exactly_the_table_s_commands_each_with_a_printer():
    ap = cli_args.parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(jobtypes.BY_COMMAND)
    for command, row in jobtypes.BY_COMMAND.items():
        assert row.cli is not None
        assert row.cli.output in output.PRINTERS or row.answered_by is AnsweredBy.FOLLOWER
        offered = sub.choices[command].format_help()
        assert ("--frame" in offered) == row.needs_file, command
        assert ("--redis" in offered) == row.publishes_progress, command


def test_scopes_and_long_polls_come_from_the_rows():
    assert jobtypes.DEFAULT_SCOPE.split() == [t.name for t in jobtypes.TABLE if t.in_default_scope]
    assert "status" not in jobtypes.DEFAULT_SCOPE.split()  # answered without a session
    assert jobtypes.LONG_POLL_TYPES == {"newest"} == jobtypes.FOLLOWED_TYPES
    assert [t.name for t in jobtypes.TABLE if t.deadline is Deadline.LONG_JOB] == ["index"]


def test_a_request_takes_its_default_size_and_file_rule_from_its_row():
    for row in jobtypes.TABLE:
        job = {"type": row.name, "fn": FN, "wait": 0}
        assert parse(job, need_pid=False).xsize == row.default_xsize
        if row.needs_file:
            with pytest.raises(BadRequest, match="'fn' names no file"):
                parse({"type": row.name}, need_pid=False)
        else:
            assert parse({"type": row.name, "wait": 0}, need_pid=False).fn is None


def test_frame2_needs_the_image_it_belongs_to():
    with pytest.raises(BadRequest, match="'frame2' needs 'fn2'"):
        parse({"type": "index", "fn": FN, "frame2": 2}, need_pid=False)
    with pytest.raises(BadRequest, match="'frame2' must be between 1"):
        parse({"type": "index", "fn": FN, "fn2": FN, "frame2": 0}, need_pid=False)
    req = parse({"type": "index", "fn": FN, "fn2": FN, "frame2": 3}, need_pid=False)
    assert req.frame2 == 3


def test_status_summary_shows_counts_and_ignores_what_it_does_not_know():
    status = {
        "uptime_s": 3725.5,
        "workers": 3,
        "in_flight": 1,
        "requests": {"ok": 120, "not_found": 2, "busy": "lots", "x" * 5: -1},
        "cache": {"hits": 30, "misses": 10},
        "worker_start_ms": [40.0, 55.5, 47.0],
    }
    assert output.summary(status) == [
        "up 1 h 2 min, 3 workers, 1 requests in flight",
        "requests: 120 ok, 2 not_found",
        "cache: 30 hits, 10 misses (75 % hits)",
        "worker start: median 47 ms (last 3)",
    ]
    hostile = {"workers": True, "cache": {"hits": "1"}, "worker_start_ms": ["1e9"]}
    assert output.summary(hostile) == [
        "the server's status has none of the usual fields; --json shows it"
    ]


# -- against the real stack ----------------------------------------------------------------


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYIS_")} | {"HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "iscli", *args],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=RUN_TIMEOUT_S,
    )


def test_index_frames_reach_the_indexer(site, tmp_path):
    """``is-cli index --frame/--frame2`` used to be dropped on the way: the indexer (the site's
    tests/fake_indexer.py, which reports its argv) now gets them before the ``--``."""
    on = ["--endpoint", site.endpoint, "--pid", site.session(), "--esaf", str(site.esaf)]
    args = ["index", FN, "--frame", "1", "--fn2", FN, "--frame2", "1", *on]
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout)["argv"]
    cut = argv.index("--")
    assert argv[cut - 4 : cut] == ["--frame", "1", "--frame2", "1"]
    assert json.loads(done.stdout)["files"] == [str(site.home / FN)] * 2


def test_an_index_frame_past_the_file_s_end_is_not_found(site, tmp_path):
    on = ["--endpoint", site.endpoint, "--pid", site.session(), "--esaf", str(site.esaf)]
    done = _cli(["index", FN, "--fn2", FN, "--frame2", "2", *on], tmp_path)
    assert done.returncode == 13, done.stderr  # not_found: the server looked at frame 2
    assert done.stderr.startswith(b"is-cli: not_found: ")


def test_status_prints_a_summary_and_json_on_request(site, tmp_path):
    human = _cli(["status", "--endpoint", site.endpoint], tmp_path)
    assert human.returncode == 0, human.stderr
    first = human.stdout.decode().splitlines()[0]
    assert first.startswith("up ") and " workers, " in first and "in flight" in first
    raw = _cli(["status", "--json", "--endpoint", site.endpoint], tmp_path)
    assert raw.returncode == 0, raw.stderr
    assert type(json.loads(raw.stdout)["workers"]) is int
