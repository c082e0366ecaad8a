"""The cache Redis belongs to the procmgr: local users without credentials are refused, a
worker's credential reaches its ESAF's prefix only and runs no Lua but the lock release."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.lock import Lock

from procmgr.cacheacl import CacheAcl
from pyisdev import procs
from pyisdev.procs import StartError
from tests.support import logs
from tests.support.attacker import run_as
from tests.support.client import ask
from tests.support.devsite import dev_stack
from tests.support.hostile_redis import HostileRedis

RELEASE_SHA = hashlib.sha1(Lock.LUA_RELEASE_SCRIPT.encode()).hexdigest()
ANONYMOUS = """
c = redis.Redis.from_url(url, protocol=2)  # RESP2: each command reaches Redis (no HELLO)
run(c, "PING")
run(c, "KEYS", "*")
run(c, "FLUSHALL")
run(c, "CONFIG", "SET", "maxmemory", "1")
run(c, "ACL", "SETUSER", "mallory", "on", "nopass", "+@all", "~*")
run(c, "AUTH", "default", "")
"""


def _admin_acl(stack) -> CacheAcl:
    """A second administrator in this process, on the real cache Redis (the procmgr's code)."""
    return CacheAcl(stack.cache_redis_url, 600, "pyis-admin", str(stack.cache_password_file))


def test_a_local_user_without_credentials_is_refused(site):
    results = run_as(site.other_user, site.stack.cache_redis_url, ANONYMOUS)
    assert [r[0] for r in results[:5]] == ["NOAUTH"] * 5, results
    assert results[5][0] != "ok", results  # default is off: not even AUTH default works
    assert site.stack.cache_redis.acl_getuser("default")["enabled"] is False


def test_a_workers_credential_reaches_only_its_esaf_and_runs_no_lua(site):
    esaf_a, esaf_b = 470000 + int(site.accounts.tag) % 9999, 480000 + int(site.accounts.tag) % 9999
    acl = _admin_acl(site.stack)
    acl.start()
    credential = acl.credential(esaf_a)
    assert credential is not None
    a, b = credential["prefix"], acl.prefix(esaf_b)
    site.stack.cache_redis.set(f"{b}s1:x", b"B's image")
    body = f"""
c = redis.Redis.from_url(url, protocol=2)
run(c, "SET", "{a}s1:x", "A's image")
run(c, "GET", "{a}s1:x")
run(c, "GET", "{b}s1:x")
run(c, "SET", "{b}s1:x", "forged")
run(c, "EVAL", "while true do end", "0")
run(c, "SCRIPT", "LOAD", "while true do end")
run(c, "FUNCTION", "LOAD", "#!lua name=x\\nredis.register_function('f', function() end)")
run(c, "EVALSHA", "{"0" * 40}", "0")
run(c, "EVALSHA", "{RELEASE_SHA}", "1", "{a}s1:x:lock", "token")
run(c, "EVALSHA", "{RELEASE_SHA}", "1", "{b}s1:x:lock", "token")
run(c, "FLUSHALL")
run(c, "CONFIG", "SET", "maxmemory", "1")
run(c, "ACL", "SETUSER", "{acl.user(esaf_b)}", "on", "nopass", "~*")
"""
    results = run_as(site.user, credential["url"], body)
    words = [r[0] for r in results]
    assert words[:2] == ["ok", "ok"] and "A's image" in results[1][1], results
    assert words[2:7] == ["NOPERM"] * 5, results  # B's keys, EVAL, SCRIPT LOAD, FUNCTION
    assert words[7] == "NOSCRIPT", results  # only what the procmgr loaded exists
    assert results[8] == ["ok", "0"], results  # the lock release script: preloaded, allowed
    assert words[9:] == ["NOPERM"] * 4, results
    assert site.stack.cache_redis.get(f"{b}s1:x") == b"B's image"


def test_the_procmgr_refuses_an_open_cache_redis(testdata):
    """An admin user that may not run ACL cannot turn ``default`` off: the cache would stay
    open to every local user, so the procmgr says so and does not start."""
    with pytest.raises(StartError) as err:
        with dev_stack(testdata, cache_admin_rules=("~*", "&*", "+@all", "-@admin")):
            pytest.fail("the procmgr started on an open cache Redis")
    assert "cannot start: the cache Redis answers an unauthenticated PING" in str(err.value)


def test_default_connections_from_before_are_dropped_and_default_stays_off(testdata):
    """After a cache Redis restart (``default`` on again, as a stock config has it) a local
    user who connected meanwhile is cut off at the next ensure, and anonymous access ends."""
    with dev_stack(testdata) as stack:
        port = stack.cache_redis_port
        ask(stack.endpoint, {"pid": "monitor", "type": "status"})  # the loop (and SIGHUP) is up
        stack.procmgr.signal(signal.SIGSTOP)  # no ensure before the early bird is in
        try:
            stack.cache_redis_proc.stop()
            stack.procs.remove(stack.cache_redis_proc)
            stack.start_cache_redis(port)
            early = redis.Redis.from_url(stack.cache_redis_url, single_connection_client=True)
            assert early.ping() is True  # open, as a stock redis.conf is
        finally:
            stack.procmgr.signal(signal.SIGCONT)
        stack.procmgr.signal(signal.SIGHUP)  # ensure now
        deadline = time.monotonic() + 30
        while stack.cache_redis.acl_getuser("default")["enabled"]:
            assert time.monotonic() < deadline, "default was not turned off again"
            ask(stack.endpoint, {"pid": "monitor", "type": "status"})  # a loop turn
        while True:  # its connection is killed next (``off`` alone would have spared it)
            try:
                early.ping()
            except redis.exceptions.ConnectionError:
                break
            assert time.monotonic() < deadline, "the early connection was not dropped"
            ask(stack.endpoint, {"pid": "monitor", "type": "status"})  # the admin thread's turn
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(stack.cache_redis_url).ping()
        assert (
            "turned the cache Redis user 'default' off"
            in (stack.workdir / "procmgr.log").read_text()
        )


def test_a_unix_socket_cache_redis_serves_the_admin_and_workers(site):
    """The deployment that no local user can impersonate: a socket path only Redis can create,
    that anyone may connect to (and then gets NOAUTH)."""
    base = Path(tempfile.mkdtemp(prefix="pyis-unix-", dir="/tmp"))
    os.chmod(base, 0o755)
    sock = base / "redis.sock"
    password = secrets.token_urlsafe(32)
    pass_file = base / "admin.pass"
    pass_file.write_text(password)
    os.chmod(pass_file, 0o600)
    digest = hashlib.sha256(password.encode()).hexdigest()
    unix = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "777"]
    admin = ["--user", "pyis-admin", "on", f"#{digest}", "~*", "&*", "+@all"]
    exe = shutil.which("redis-server")
    assert exe is not None
    argv = [exe, "--save", "", "--dir", str(base), *unix, *admin]
    proc = procs.Proc(argv, lambda line: "ready to accept connections at" in line)
    try:
        proc.wait_ready(20.0)
        acl = CacheAcl(f"unix://{sock}?db=0", 600, "pyis-admin", str(pass_file))
        acl.start()
        credential = acl.credential(460000 + int(site.accounts.tag) % 9999)
        assert credential is not None and credential["url"].startswith("unix://pyis-e")
        own, other = credential["prefix"], acl.prefix(1)
        body = f"""
c = redis.Redis.from_url(url, protocol=2)
run(c, "SET", "{own}s1:x", "mine")
run(c, "GET", "{other}s1:x")
"""
        assert [r[0] for r in run_as(site.user, credential["url"], body)] == ["ok", "NOPERM"]
        anonymous = run_as(site.other_user, f"unix://{sock}", ANONYMOUS)
        assert [r[0] for r in anonymous[:5]] == ["NOAUTH"] * 5, anonymous
    finally:
        proc.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_squatter_on_the_cache_redis_port_cannot_stall_the_loop(testdata):
    """While the cache Redis is down a local user may listen on its port and trickle replies
    to the procmgr's admin calls, one byte every 0.2 s: each call gives up within its budget
    and the loop goes on (redis-py's per-recv timeout alone would wait for hours)."""
    with dev_stack(testdata) as stack:
        assert ask(stack.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
        port = stack.cache_redis_port
        stack.cache_redis_proc.stop()
        stack.procs.remove(stack.cache_redis_proc)
        squatter = HostileRedis({}, port=port)
        try:
            stack.procmgr.signal(signal.SIGHUP)  # ensure now: admin calls reach the squatter
            assert squatter.attacking.acquire(timeout=10), "the procmgr never called"
            for _ in range(5):
                reply = ask(stack.endpoint, {"pid": "monitor", "type": "status"}, timeout_ms=10000)
                assert reply[0] == b""
            # on the admin thread, which gives up within its budget while the loop answers
            logs.wait_for(stack.workdir / "procmgr.log", "ACL setup: TimeoutError", 10.0)
            assert squatter.sent < 100  # it hung up, the trickle would take 5.5 hours
        finally:
            squatter.close()
        log = (stack.workdir / "procmgr.log").read_text()
        assert "cache Redis unavailable for ACL setup: TimeoutError" in log
        assert "unprivileged port" in log


def test_a_new_esaf_is_served_while_its_cache_user_cannot_be_made_and_gets_it_later(site):
    """A new ESAF's cache user is made on the admin thread while its first worker starts, and
    that worker is sent its config and job when the setup ends: with the cache Redis hung
    (SIGSTOP) the setup gives up, the job is answered without the tier (one reply), the loop
    stays up; once Redis is back the ESAF's next worker gets the tier."""
    esaf = 440000 + int(site.accounts.tag) % 9999
    group, home = site.accounts.esaf(esaf)
    first_user, next_user = (site.accounts.user(f"pyis{c}{site.accounts.tag}") for c in "km")
    shutil.copyfile(site.home / "thau_0001.cbf", home / "a.cbf")
    shutil.chown(home / "a.cbf", "root", group)
    os.chmod(home / "a.cbf", 0o640)
    job = {"esaf": esaf, "type": "jpeg", "fn": "a.cbf", "xsize": 200}
    prefix = f"pyis:e{esaf}:"
    redis_pid = site.stack.cache_redis_proc.proc.pid
    gave_up = logs.count(site.logs / "procmgr.log", "ACL setup: TimeoutError") + 1
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        first = ask(site.endpoint, job | {"pid": site.session([esaf], user=first_user)})
        assert ask(site.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert first[0] == b"" and first[3][:2] == b"\xff\xd8", first[:3]
    logs.wait_for(site.logs / "procmgr.log", "ACL setup: TimeoutError", 10.0, gave_up)
    assert not site.stack.cache_redis.keys(f"{prefix}*")  # that worker had no credential
    second = ask(site.endpoint, job | {"pid": site.session([esaf], user=next_user)})
    assert second[0] == b"" and second[3] == first[3]
    deadline = time.monotonic() + 10
    while not site.stack.cache_redis.keys(f"{prefix}s1:*"):  # written after the reply
        assert time.monotonic() < deadline, "the next worker of the ESAF had no cache tier"
        ask(site.endpoint, {"pid": "monitor", "type": "status"})
