"""The production install of the README: a wheel with the runtime only, into /opt/pyis."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/opt/pyis/.venv/bin/"  # README "Installing on the hosts"; the units' ExecStart


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def names(requirements: str) -> set[str]:
    return {re.split(r"[\[<>=~!; ]", line.strip(), maxsplit=1)[0].lower()
            for line in requirements.splitlines() if line.strip()}  # fmt: skip


def test_the_runtime_requirements_hold_no_test_tooling():
    cfg = setup_cfg()
    runtime = names(cfg["options"]["install_requires"])
    test_only = names(cfg["options.extras_require"]["test"])
    assert {"pytest", "ruff", "mypy", "playwright"} <= test_only
    assert not runtime & test_only, runtime & test_only


def test_the_units_run_the_console_scripts_from_the_documented_prefix():
    scripts = {
        line.split("=", 1)[0].strip()
        for line in setup_cfg()["options.entry_points"]["console_scripts"].splitlines()
        if line.strip()
    }
    for unit in (REPO / "systemd").glob("*.service"):
        (start,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        command = start.removeprefix("ExecStart=").split()[0]
        assert command.startswith(PREFIX) and command.removeprefix(PREFIX) in scripts, unit.name
    assert f"python3 -m venv {PREFIX.removesuffix('/bin/')}" in (REPO / "README.md").read_text()


def test_the_wheel_carries_the_packages_and_the_viewers_files_and_no_tests(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("pyis-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in files}
    packages = setup_cfg()["options.packages.find"]["include"].split()
    assert {p.rstrip("*") for p in packages} <= tops
    assert not tops & {"tests", "bench"}
    assert "isweb/vendor/leaflet/leaflet-src.esm.js" in files, "run bash .ci/install first"
    assert "isweb/static/index.html" in files
