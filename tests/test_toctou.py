"""The path is resolved once, without following a symlink out of the home, and every reader
reads that open file: a directory swapped for a symlink mid-request leads nowhere outside.

Before, the name was checked and then opened again by name by each reader; a process swapping
a directory of the home for a symlink to a folder outside it made some replies carry the image
outside the home (and the caches kept it under the inside file's identity).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyis_common.errors import BadRequest, Forbidden, NotFound
from tests.support.client import ask, error_code
from worker import paths

REQUESTS = 150
SWAPPER = """
import os, sys
race, outside = sys.argv[1], sys.argv[2]
d, held = os.path.join(race, "d"), os.path.join(race, "d_held")
while True:  # swap the directory for a symlink to a folder outside the home, and back
    os.rename(d, held)
    os.symlink(outside, d)
    os.unlink(d)
    os.rename(held, d)
"""


@pytest.fixture
def race(site, testdata):
    """``race/d/img.cbf`` inside the home; a different image as ``outside/img.cbf``, readable
    by everyone, outside it."""
    group = f"e{site.esaf}"
    race = site.home / "race"
    (race / "d").mkdir(parents=True)
    shutil.copyfile(testdata / "cbf/thau_3_2_0001.cbf", race / "d/img.cbf")
    for p in (race, race / "d", race / "d/img.cbf"):
        shutil.chown(p, "root", group)
    outside = site.stack.workdir / "outside"
    outside.mkdir(mode=0o755)
    shutil.copyfile(testdata / "cbf/l-cyst_01_00001.cbf", outside / "img.cbf")  # a 2M, not 6M
    os.chmod(outside / "img.cbf", 0o644)
    yield race, outside
    shutil.rmtree(race, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


def _which(reply: list[bytes]) -> tuple[str, int]:
    """Detector and width of the image a reply was made from (the two files differ in both)."""
    meta = json.loads(reply[2])
    return meta.get("detector"), meta.get("x_pixels_in_detector")


def test_a_directory_swapped_for_a_symlink_never_serves_a_file_outside_the_home(site, race):
    race_dir, outside = race
    pid = site.session()
    job = {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "race/d/img.cbf"}
    inside = _which(ask(site.endpoint, {**job, "xsize": 64}))
    assert inside[1] == 2463
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(race_dir), str(outside)])
    served, outcomes = [], set()
    try:
        for n in range(REQUESTS):
            reply = ask(site.endpoint, {**job, "xsize": 65 + n})  # a new cache key each time
            outcomes.add(error_code(reply) if reply[0] else "ok")
            if reply[0] == b"":
                served.append(_which(reply))
    finally:
        swapper.kill()
        swapper.wait()
    assert served, outcomes  # the race did not simply refuse everything
    assert set(served) == {inside}, f"{served.count(inside)} of {len(served)} from inside"
    assert outcomes <= {"ok", "not_found", "forbidden"}, outcomes  # never a mixed-up read


# -- the walk itself (no stack needed) ---------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "run/sub").mkdir(parents=True)
    (home / "run/sub/a.cbf").write_bytes(b"inside")
    (home / "latest").symlink_to("run/sub")  # relative, inside
    (home / "abs").symlink_to(home / "run/sub/a.cbf")  # absolute, inside
    (tmp_path / "secret.cbf").write_bytes(b"outside")
    (home / "out").symlink_to(tmp_path / "secret.cbf")
    (home / "up").symlink_to("../secret.cbf")
    return home


@pytest.mark.parametrize("fn", ["run/sub/a.cbf", "latest/a.cbf", "abs", "run/../run/sub/a.cbf"])
def test_names_inside_the_home_open_the_file_they_resolve_to(home, fn):
    with paths.resolve(str(home), fn) as src:
        assert os.pread(src.fd, 16, 0) == b"inside"
        assert src.name == "run/sub/a.cbf"  # the cache key's path: the resolved one
        assert src.stat().st_ino == (home / "run/sub/a.cbf").stat().st_ino


@pytest.mark.parametrize("fn", ["out", "up", "../secret.cbf", "run/../../secret.cbf"])
def test_names_leading_out_of_the_home_are_forbidden(home, fn):
    with pytest.raises(Forbidden):
        paths.resolve(str(home), fn)


def test_absolute_names_must_lie_in_the_home(home):
    with paths.resolve(str(home), str(home / "latest/a.cbf")) as src:
        assert src.name == "run/sub/a.cbf"
    with pytest.raises(Forbidden):
        paths.resolve(str(home), str(home.parent / "secret.cbf"))


def test_missing_names_and_directories(home):
    with pytest.raises(NotFound):
        paths.resolve(str(home), "run/nope.cbf")
    with pytest.raises(NotFound):
        paths.resolve(str(home), "run/sub/a.cbf/x")  # a file used as a directory
    with pytest.raises(BadRequest):
        paths.resolve(str(home), "run/sub")


def test_eiger_data_files_are_found_from_the_folder_the_master_was_opened_in(tmp_path):
    """Swapping the series' folder after the master was opened changes nothing read."""
    from worker.formats import read_frame, samples

    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    frames = np.arange(2 * 6 * 8, dtype=np.uint16).reshape(2, 6, 8)
    samples.write_eiger(str(home / "run"), "s", frames, 1)
    (home / "decoy").mkdir()
    samples.write_eiger(str(home / "decoy"), "s", frames + 1000, 1)
    with paths.resolve(str(home), "run/s_master.h5") as src:
        os.rename(home / "run", home / "run_old")
        os.rename(home / "decoy", home / "run")
        assert np.array_equal(read_frame(src, 2).data, frames[1])
