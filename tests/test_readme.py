"""The README's commands, run as it writes them: ``is-dev --demo`` renders a JPEG and exits."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import CBF, need_root

IS_DEV = Path(sys.executable).with_name("is-dev")  # the console script .ci/install made
REPO = Path(__file__).resolve().parents[1]


def is_dev(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IS_DEV), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )


def test_is_dev_demo_renders_the_readme_jpeg_and_stops_everything(testdata, tmp_path):
    out = tmp_path / "thau.jpg"
    run = is_dev("--data", str(testdata), "--demo", CBF, "-o", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    image = Image.open(io.BytesIO(out.read_bytes()))
    assert image.format == "JPEG" and image.width == 512  # is-dev's default --xsize
    assert image.height == round(512 * 2527 / 2463)


def test_is_dev_refuses_data_the_worker_user_cannot_read(tmp_path):
    need_root()  # only root's workers run as another user (nobody)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    run = is_dev("--data", str(private), "--demo", "x.cbf", "-o", str(tmp_path / "x.jpg"))
    assert run.returncode == 2
    assert "cannot read" in run.stderr and str(private) in run.stderr
    assert not (tmp_path / "x.jpg").exists()
    assert os.listdir(private) == []
