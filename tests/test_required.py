"""A test that lacks root, node or chromium skips on a developer's machine and fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
from tests.support.required import missing

def test_needs_something_absent():
    missing("the thing is not installed")
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_dependency_fails_under_ci(tmp_path):
    run = run_probe(tmp_path, "true")
    assert run.returncode == 1, run.stdout
    assert "1 failed" in run.stdout and "the thing is not installed" in run.stdout


def test_a_missing_dependency_skips_elsewhere(tmp_path):
    run = run_probe(tmp_path, None)
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout


def test_ci_run_sets_ci_before_the_test_command():
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    script = (REPO / ".ci" / "run").read_text()
    # run .ci/run's own lines with its two commands replaced by a probe of the environment
    probe = script.replace("bash .ci/install && .venv/bin/python -m pytest -q", 'echo "CI=$CI"')
    assert probe != script, ".ci/run no longer runs the README's test command as written"
    done = subprocess.run(
        ["bash", "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == "CI=true", done.stdout + done.stderr
