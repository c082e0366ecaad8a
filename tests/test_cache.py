"""Tier-1 cache through the real stack: hits, file identity, single-flight."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import redis

from tests.conftest import TESTDATA
from tests.support import logs
from tests.support.client import ask, meta_of


def _status(site) -> dict:
    return json.loads(ask(site.endpoint, {"pid": "monitor", "type": "status"})[2])


def _place(site, name: str, src: str) -> None:
    dst = site.home / name
    tmp = site.home / f".{name}.tmp"
    shutil.copyfile(TESTDATA / src, tmp)
    shutil.chown(tmp, "root", f"e{site.esaf}")
    os.chmod(tmp, 0o640)
    os.replace(tmp, dst)  # a new inode, as a detector writer renames a finished file


def test_repeat_is_served_from_the_lru_without_reading(site):
    _place(site, "lru.cbf", "cbf/thau_3_2_0001.cbf")
    pid = site.session()
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "lru.cbf", "xsize": 300}
    assert ask(site.endpoint, job)[0] == b""
    before = _status(site)["cache"]
    again = ask(site.endpoint, job | {"contrast": 77})
    after = _status(site)["cache"]
    assert meta_of(again)[0]["bval_used"] == 77
    assert after["hits"] == before["hits"] + 1
    assert after["stage1_computed"] == before["stage1_computed"]
    assert "tier=lru" in site.log_text()


def test_rewritten_file_is_never_served_stale(site):
    _place(site, "rewrite.cbf", "cbf/thau_3_2_0001.cbf")
    pid = site.session()
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "rewrite.cbf", "xsize": 256}
    first = meta_of(ask(site.endpoint, job))[1]
    _place(site, "rewrite.cbf", "cbf/thau_3_2_0002.cbf")
    second = meta_of(ask(site.endpoint, job))[1]
    assert (first["max"], first["mean"]) != (second["max"], second["mean"])


def test_ten_concurrent_first_requests_compute_stage1_once(site):
    _place(site, "flight.cbf", "cbf/dlsnxs2cbf_therm_0001.cbf")  # the largest: a long read
    pid = site.session()
    before = _status(site)["cache"]["stage1_computed"]
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "flight.cbf", "xsize": 333}
    replies: list[list[bytes]] = []
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        replies.append(ask(site.endpoint, job))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == 10 and all(r[0] == b"" for r in replies)
    assert len({r[3] for r in replies}) == 1  # the same JPEG for all
    assert _status(site)["cache"]["stage1_computed"] == before + 1


def test_second_user_of_the_esaf_is_served_from_redis(site):
    _place(site, "shared.cbf", "cbf/thau_3_2_0002.cbf")
    job = {"esaf": site.esaf, "type": "jpeg", "fn": "shared.cbf", "xsize": 222}
    first = ask(site.endpoint, job | {"pid": site.session()})
    second = ask(site.endpoint, job | {"pid": site.session(user=site.other_user)})
    assert first[0] == second[0] == b"" and first[3] == second[3]
    _status(site)  # a loop turn: the line of a worker's answer is written after its reply
    lines = [ln for ln in site.log_text().splitlines() if "type=jpeg" in ln]
    assert "tier=redis" in lines[-1]
    assert site.stack.cache_redis.keys(f"pyis:e{site.esaf}:s1:*")


def test_a_worker_of_one_esaf_cannot_touch_another_esafs_keys(site):
    pid = site.session()
    assert (
        ask(site.endpoint, {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "thau_0001.cbf"})[
            0
        ]
        == b""
    )
    admin = site.stack.cache_redis
    user = f"pyis-e{site.esaf}"
    own = admin.execute_command("ACL", "DRYRUN", user, "GET", f"pyis:e{site.esaf}:s1:x")
    other = admin.execute_command("ACL", "DRYRUN", user, "GET", f"pyis:e{site.other_esaf}:s1:x")
    assert own == b"OK"
    assert b"no permissions" in other
    flush = admin.execute_command("ACL", "DRYRUN", user, "FLUSHALL")
    assert b"no permissions" in flush


def _stage1_keys(site) -> set[bytes]:
    """Tier 2's stage-1 entries (worker/tier2.py names them ``<prefix>s1:<digest>``)."""
    return set(site.stack.cache_redis.scan_iter(match="*s1:*"))


def _acl_users(site) -> list[str]:
    """The cache's ACL users; none while our admin connection is being set up. The procmgr drops
    connections still logged in as ``default`` on SIGHUP, and a connection that has not yet
    sent its AUTH is one of them (a client retries, as the workers do)."""
    try:
        return site.stack.cache_redis.acl_users()
    except redis.ConnectionError:
        return []


def test_requests_survive_a_dead_cache_and_the_tier_comes_back(site):
    _place(site, "outage.cbf", "cbf/thau_3_2_0001.cbf")
    job = {"esaf": site.esaf, "type": "jpeg", "fn": "outage.cbf"}
    port = site.stack.cache_redis_port
    # the worker gets its cache credential while Redis is up (alone, this test starts one)
    assert ask(site.endpoint, job | {"pid": site.session(), "xsize": 200})[0] == b""
    site.stack.cache_redis_proc.stop()
    site.stack.procs.remove(site.stack.cache_redis_proc)
    for xsize in (201, 202):  # new stage-1 keys, Redis being down: served, and tier 2 is skipped
        reply = ask(site.endpoint, job | {"pid": site.session(), "xsize": xsize})
        assert reply[0] == b"" and len(reply) == 4
    # the worker shares a reduction once it is quiet (worker/afterreply.py): that write fails
    logs.wait_for(site.logs / "procmgr.log", "cache tier unavailable", 30.0)
    site.stack.start_cache_redis(port)
    site.stack.procmgr.signal(signal.SIGHUP)  # re-create the ESAF users now, not in 5 s
    deadline = time.monotonic() + 30
    while f"pyis-e{site.esaf}" not in _acl_users(site):
        assert time.monotonic() < deadline, "ACL users were not re-created"
        ask(site.endpoint, {"pid": "monitor", "type": "status"})  # a loop turn, not a sleep
    before = _stage1_keys(site)
    ask(site.endpoint, job | {"pid": site.session(), "xsize": 203})
    deadline = time.monotonic() + 30
    while _stage1_keys(site) <= before:  # the worker shares its reduction after its reply
        assert time.monotonic() < deadline, "the reduction never reached tier 2"
        ask(site.endpoint, {"pid": "monitor", "type": "status"})  # a loop turn, not a sleep
    other = ask(site.endpoint, job | {"pid": site.session(user=site.other_user), "xsize": 203})
    assert other[0] == b""
    _status(site)  # a loop turn: the line of a worker's answer is written after its reply
    assert "tier=redis" in [ln for ln in site.log_text().splitlines() if "type=jpeg" in ln][-1]


def test_a_file_still_being_written_is_not_cached(tmp_path, monkeypatch):
    """In process: the file grows while stage 1 reads it, as a detector writing a frame."""
    from worker import formats, jobs

    path = tmp_path / "growing.cbf"
    shutil.copyfile(TESTDATA / "cbf/thau_3_2_0001.cbf", path)
    real_read = formats.read_frame

    def read_while_written(p, frame=1):
        result = real_read(p, frame)
        with open(path, "ab") as fh:  # the writer appends after we started reading
            fh.write(b"\0" * 4096)
        return result

    monkeypatch.setattr(formats, "read_frame", read_while_written)
    pipeline = jobs.Pipeline(home=str(tmp_path))
    job = {"type": "jpeg", "fn": "growing.cbf", "xsize": 128}
    pipeline.run(job)
    assert pipeline.counters()["entries"] == 0  # not cached: its identity changed meanwhile
    monkeypatch.setattr(formats, "read_frame", real_read)
    pipeline.run(job)
    pipeline.run(job)
    assert pipeline.counters()["stage1_computed"] == 2  # the settled file is cached once
    assert pipeline.counters()["hits"] == 1
