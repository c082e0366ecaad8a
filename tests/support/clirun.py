"""Running ``is-cli`` as a subprocess for the CLI tests: its environment, HOME and polling."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import REPO

CLI = [sys.executable, "-m", "iscli"]
FN = "thau_0001.cbf"
RUN_TIMEOUT_S = 60.0  # a whole CLI run: a cold worker start on a loaded CI box, with margin
WAIT_S = 20.0  # for a condition we caused to become observable


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYIS_")}
    env.pop("XDG_CONFIG_HOME", None)
    return env | {"HOME": str(home)} | (extra or {})


def cli(
    args: list[str], home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        env=cli_env(home, env),
        cwd=REPO,
        timeout=RUN_TIMEOUT_S,
    )


def on(site: Any, pid: str | None = None) -> list[str]:
    """Endpoint, session and ESAF as flags."""
    pid = pid or site.session()
    return ["--endpoint", site.endpoint, "--pid", pid, "--esaf", str(site.esaf)]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition the test caused, with a deadline (never a sleep standing in for it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
