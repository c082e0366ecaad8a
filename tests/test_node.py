"""The node.js front-end's view: the npm ``zeromq`` v6 ``Request`` socket against the real stack.

``tests/node/is_client.js`` does what a beamline web front-end's ``is.js`` does: one JSON frame
out, the reply frames back. It proves the wire is what JavaScript sees (four frames, an empty
first one, JSON that ``JSON.parse`` reads, JPEG bytes intact), not just what pyzmq sees.
``.ci/install`` installs node and the package; in CI a missing one is an error, not a skip.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support import required

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "is_client.js"
REPLY_TIMEOUT_MS = 30000  # as tests/support/client.py: a cold worker start on a loaded CI box
FN = "thau_0001.cbf"


def _missing(why: str) -> None:
    required.missing(f"{why}; run `bash .ci/install` (it installs nodejs, npm and tests/node)")


@pytest.fixture(scope="session")  # session: checked before the (session) stack is started
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        _missing("node is not installed")
    probe = subprocess.run(
        [exe, "-e", "require('zeromq')"], cwd=NODE_DIR, capture_output=True, timeout=60
    )
    if probe.returncode != 0:
        _missing("the npm package zeromq is not installed in tests/node")
    return exe


def run_node(node: str, endpoint: str, job: dict[str, Any], jpeg_out: Path | None = None) -> dict:
    argv = [
        node,
        str(SCRIPT),
        endpoint,
        json.dumps(job),
        str(jpeg_out or ""),
        str(REPLY_TIMEOUT_MS),
    ]
    done = subprocess.run(argv, cwd=NODE_DIR, capture_output=True, timeout=REPLY_TIMEOUT_MS / 500)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_jpeg_reply_as_node_sees_it(node, site, tmp_path):
    out = tmp_path / "node.jpg"
    job = {"pid": site.session(), "esaf": site.esaf, "type": "jpeg", "fn": FN, "xsize": 300}
    summary = run_node(node, site.endpoint, {**job, "tag": "node-1"}, out)
    assert summary["error"] is None
    assert summary["frames"] == 4 and summary["first_frame_length"] == 0
    echoed, meta = summary["job"], summary["meta"]
    assert echoed["tag"] == "node-1" and echoed["fn"] == FN and echoed["xsize"] == 300
    assert isinstance(echoed["wval_used"], int | float)
    assert echoed["bval_used"] >= echoed["wval_used"] + 1
    assert (meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]) == (2463, 2527)
    assert summary["jpeg_head"].startswith("ffd8")
    data = out.read_bytes()
    assert len(data) == summary["jpeg_length"]
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.width == 300


def test_error_reply_is_one_frame_of_text(node, site):
    job = {"pid": site.session(), "esaf": site.esaf, "type": "jpeg", "fn": "nope.cbf"}
    summary = run_node(node, site.endpoint, job)
    assert summary["frames"] == 1
    assert summary["error"].startswith("not_found: ")
    assert summary["job"] is None and summary["jpeg_length"] is None
