"""mypy over every package setup.cfg installs, with the settings in pyproject.toml: zero errors.

The packages come from setup.cfg's ``[options.packages.find] include``, so a new package is
checked from the commit that adds it. mypy is a test dependency (``.[test]``): if it is missing
this fails, it never skips.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def installed_packages() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.packages.find"]["include"].split()
    return sorted(p.rstrip("*") for p in patterns)


def test_the_packages_are_found():
    packages = installed_packages()
    assert "pyis_common" in packages and "worker" in packages
    for name in packages:
        assert (ROOT / name / "__init__.py").is_file(), f"setup.cfg names {name}, not a package"


def test_mypy_finds_no_errors():
    args = [arg for name in installed_packages() for arg in ("-p", name)]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"mypy:\n{run.stdout}{run.stderr}"
    assert run.stdout == "", run.stdout
