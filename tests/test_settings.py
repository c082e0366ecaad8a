"""Settings as one declaration: flags, ranges, the reference, the worker's settings, SIGHUP."""

from __future__ import annotations

import configparser
import importlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procmgr.__main__ import dev_user
from procmgr.manager import NEW_WORKER_KEYS, RESTART_KEYS
from pyis_common import config, configdoc
from pyis_common.settings import RELOAD, RESTART, ConfigError, settings_of
from pyis_common.version import version
from pyis_common.workersettings import WORKER_KEYS, for_workers, worker_settings
from tests.conftest import REPO
from tests.support.client import ask
from tests.support.devsite import dev_stack
from worker.index import IndexSettings

COMMANDS = {"proxy": "is_proxy", "procmgr": "procmgr", "web": "isweb"}  # section -> module


def console_scripts() -> dict[str, str]:
    """setup.cfg's commands: name -> "module:function"."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {name.strip(): target.strip() for name, target in (ln.split("=") for ln in lines)}


def test_the_reference_is_current():
    """docs/config.md is what the declarations say (regenerate it: see its first lines)."""
    assert (REPO / "docs" / "config.md").read_text() == configdoc.render()


@pytest.mark.parametrize("section", sorted(COMMANDS))
def test_every_key_has_a_flag_on_its_command(section):
    done = subprocess.run(
        [sys.executable, "-m", COMMANDS[section], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for s in settings_of(config.SECTIONS[section], section):
        assert f" {s.flag}" in done.stdout, f"{s.key} has no flag {s.flag}"


def test_a_flag_is_checked_like_the_file_and_wins_over_it(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[procmgr]\nworker_threads = 2\n")
    from procmgr.__main__ import overrides_from, parser

    args = parser().parse_args(["--worker-threads", "3", "--proxy", "tcp://a:1", "--metrics", ""])
    cfg = config.load(path, overrides_from(args)).procmgr
    assert cfg.worker_threads == 3 and cfg.proxies == ("tcp://a:1",)
    done = subprocess.run(
        [sys.executable, "-m", "procmgr", "--worker-threads", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "procmgr.worker_threads must be at least 1, not 0" in done.stderr


OUT_OF_RANGE = {  # a [procmgr] line -> what the refusal says
    "jpeg_quality = 101": "procmgr.jpeg_quality must be at most 100",
    "request_timeout_s = 0": "procmgr.request_timeout_s must be at least 1",
    'levels = "bright"': "procmgr.levels must be one of auto, c",
    'session_memo_s = "nan"': "procmgr.session_memo_s must be a finite number",
    "worker_threads = 33": "procmgr.worker_threads must be at most 32",
}


@pytest.mark.parametrize("line", sorted(OUT_OF_RANGE))
def test_a_value_out_of_range_is_refused_naming_the_key(tmp_path, line):
    path = tmp_path / "p.toml"
    path.write_text(f"[procmgr]\n{line}\n")
    with pytest.raises(ConfigError, match=OUT_OF_RANGE[line]):
        config.load(path)


def test_restart_bound_keys_come_from_the_declaration():
    restart = {
        s.name for s in settings_of(config.ProcmgrConfig, "procmgr") if s.spec.reload == RESTART
    }
    assert set(RESTART_KEYS) == restart
    assert {"curve_secret", "auth_redis", "metrics_address", "dev_user"} <= restart
    assert "cache_ttl_s" not in restart and "cache_ttl_s" not in NEW_WORKER_KEYS
    assert "worker_threads" in NEW_WORKER_KEYS


def test_the_worker_settings_and_the_procmgr_share_their_defaults():
    """The worker's index timeout was 600 while the procmgr's was 900."""
    defaults = config.ProcmgrConfig()
    sent = worker_settings({})
    assert all(getattr(sent, k) == getattr(defaults, k) for k in WORKER_KEYS)
    assert IndexSettings().timeout_s == defaults.index_timeout_s == 900.0
    changed = config.ProcmgrConfig(index_timeout_s=120.0, index_command=("/bin/true",))
    assert worker_settings(for_workers(changed)) == changed
    with pytest.raises(ConfigError, match="procmgr.auth_redis is not a worker setting"):
        worker_settings({"auth_redis": "redis://elsewhere"})
    with pytest.raises(ConfigError, match="procmgr.jpeg_quality must be at most 100"):
        worker_settings({"jpeg_quality": 1000})


def test_every_worker_key_is_applied_on_reload_or_says_when():
    for s in settings_of(config.ProcmgrConfig, "procmgr"):
        if s.spec.workers:
            assert s.spec.reload != RESTART, f"{s.key}: a worker key must be sent again"
    assert {"cache_ttl_s", "jpeg_quality", "levels", "index_timeout_s"} <= {
        s.name for s in settings_of(config.ProcmgrConfig, "procmgr") if s.spec.reload == RELOAD
    }


@pytest.mark.parametrize("command", sorted(console_scripts()))
def test_every_command_says_its_version(command, capsys):
    module, function = console_scripts()[command].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{command} {version()}"


def _tier2_ttls(stack, seen: set[bytes]) -> dict[bytes, int]:
    """Values only: a producer's lock key (TTL 10 s) lives until just after its reply."""
    keys = {k for k in stack.cache_redis.keys("pyis:e0:s1:*") if not k.endswith(b":lock")}
    keys -= seen
    return {k: stack.cache_redis.ttl(k) for k in keys}


def _render_and_wait_for_its_tier2_entry(stack, pid: str, xsize: int, seen: set[bytes]):
    """A new stage-1 key (a new xsize), its tier-2 entry as the running worker wrote it."""
    job = {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": xsize}
    assert ask(stack.endpoint, job)[0] == b""
    deadline = time.monotonic() + 30
    while not (fresh := _tier2_ttls(stack, seen)):
        assert time.monotonic() < deadline, "the worker wrote nothing to the cache Redis"
        ask(stack.endpoint, {"pid": "monitor", "type": "status"})  # a round trip, not a sleep
    seen |= set(fresh)
    return fresh


def _reload(stack, body: str) -> str:
    """Write the [procmgr] section, SIGHUP, and wait (in loop turns) for the reload: the log."""
    log = Path(stack.workdir) / "procmgr.log"
    (Path(stack.workdir) / "procmgr.toml").write_text(f"[procmgr]\n{body}\n")
    stack.procmgr.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "configuration reloaded" not in (text := log.read_text()):
        assert time.monotonic() < deadline, "no reload logged"
        ask(stack.endpoint, {"pid": "monitor", "type": "status"})
    return text


def test_sighup_gives_a_running_worker_the_new_cache_ttl(testdata):
    """cache_ttl_s logged "reloaded" and changed nothing: the worker kept its first TTL."""
    with dev_stack(testdata, "cache_ttl_s = 600") as stack:
        pid, seen = stack.sign_session(dev_user(), [0]), set()
        before = _render_and_wait_for_its_tier2_entry(stack, pid, 301, seen)
        assert all(500 < ttl <= 600 for ttl in before.values())
        worker = stack.status_detail()["workers"][0]["pid"]
        text = _reload(stack, "cache_ttl_s = 77\nworker_threads = 2")
        assert "configuration reloaded; changed: worker_threads, cache_ttl_s" in text
        assert "procmgr.worker_threads applies to workers started from now on" in text
        after = _render_and_wait_for_its_tier2_entry(stack, pid, 302, seen)
        assert all(0 < ttl <= 77 for ttl in after.values()), after
        assert stack.status_detail()["workers"][0]["pid"] == worker  # the same worker
