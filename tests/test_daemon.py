"""--daemon (python-daemon) for hosts without systemd: detach, pid file, log file, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyisdev import procs
from tests.support.client import ask
from tests.support.proctree import alive

READY_S = 60.0


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + READY_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a file another process writes; the condition is the check


def ready_fields(log: Path) -> dict[str, str]:
    wait_for(lambda: log.exists() and "READY" in log.read_text(), f"READY in {log}")
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("READY"))
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


def test_proxy_and_procmgr_run_as_daemons_and_stop_on_sigterm(tmp_path, testdata):
    tmp_path.chmod(0o755)
    redis_proc, port = procs.redis_server(tmp_path)
    pids: list[int] = []
    try:
        proxy_log, proxy_pid = tmp_path / "proxy.log", tmp_path / "proxy.pid"
        any_port = "tcp://127.0.0.1:*"
        launcher = subprocess.run(
            [
                sys.executable,
                "-m",
                "is_proxy",
                "--daemon",
                "--pidfile",
                str(proxy_pid),
                "--log-file",
                str(proxy_log),
                "--frontend",
                any_port,
                "--backend",
                any_port,
            ],
            timeout=60,
        )
        assert launcher.returncode == 0  # the launcher returns; the daemon lives on
        eps = ready_fields(proxy_log)
        wait_for(proxy_pid.exists, "the proxy pid file")
        pids.append(int(proxy_pid.read_text()))
        assert os.getsid(pids[0]) != os.getsid(0)  # a session of its own: detached from ours
        pm_log, pm_pid = tmp_path / "procmgr.log", tmp_path / "procmgr.pid"
        key = tmp_path / "pub.pem"
        from authsign import compat

        key.write_bytes(compat.public_pem(compat.generate_key()))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "procmgr",
                "--daemon",
                "--pidfile",
                str(pm_pid),
                "--log-file",
                str(pm_log),
                "--proxy",
                eps["backend"],
                "--auth-redis",
                f"redis://127.0.0.1:{port}/0",
                "--compat-pubkey",
                str(key),
                "--dev",
                str(testdata),
            ],
            timeout=60,
            check=True,
        )
        ready_fields(pm_log)
        wait_for(pm_pid.exists, "the procmgr pid file")
        pids.append(int(pm_pid.read_text()))
        reply = ask(eps["frontend"], {"pid": "monitor", "type": "status"})
        assert reply[0] == b""
        for pid, pidfile in zip(pids, (proxy_pid, pm_pid), strict=True):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda p=pid: not alive(p), f"pid {pid} to exit")
            wait_for(lambda f=pidfile: not f.exists(), f"{pidfile} to be removed")
        assert "shutting down" in proxy_log.read_text() and "bye" in pm_log.read_text()
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        redis_proc.stop()
