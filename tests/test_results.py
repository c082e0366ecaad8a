"""Derived results: an index job writes into ``results/index/<stem>-<time>/`` in the same ESAF
home, as the user with the ESAF's group, readable by the ESAF's members and nobody else, and a
path-bound token's index job reads only inputs inside its prefixes."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyis_common.errors import Forbidden
from tests.support.client import ask, error_code, meta_of
from worker import results

FOLDER = re.compile(r"^results/index/thau_0001-\d{8}T\d{6}Z(-\d+)?$")


def _index(site, pid_token: tuple[str, str] | None = None, **job) -> list[bytes]:
    pid, token = pid_token or (site.session(), None)
    body = {"pid": pid, "esaf": site.esaf, "type": "index", "fn": "thau_0001.cbf", **job}
    return ask(site.endpoint, body | ({"auth": token} if token else {}))


def _reads(user: str, group: str, path: Path) -> bool:
    """Whether ``user`` running with only ``group`` can read ``path`` (a real setuid)."""
    argv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", "cat", str(path)]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def test_index_results_are_written_in_the_esaf_home_with_the_esaf_rules(site):
    _, meta = meta_of(_index(site))
    assert FOLDER.match(meta["results_folder"]), meta["results_folder"]
    assert meta["results_files"] == ["fake_indexer.log", "index.json"]
    folder = site.home / meta["results_folder"]
    uid, gid = pwd.getpwnam(site.user).pw_uid, grp.getgrnam(f"e{site.esaf}").gr_gid
    st = folder.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o2750)
    for name in meta["results_files"]:
        st = (folder / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o640), name
    saved = json.loads((folder / "index.json").read_text())
    assert saved == {k: v for k, v in meta.items() if not k.startswith("results_")}
    assert meta["umask"] == 0o027


def test_results_are_readable_by_the_esaf_and_not_by_another_esaf(site):
    _, meta = meta_of(_index(site))
    written = site.home / meta["results_folder"] / "index.json"
    assert _reads(site.other_user, f"e{site.esaf}", written)
    assert not _reads(site.other_user, f"e{site.other_esaf}", written)


def test_two_runs_of_one_input_get_two_folders(site):
    first = meta_of(_index(site))[1]["results_folder"]
    second = meta_of(_index(site))[1]["results_folder"]
    assert first != second and FOLDER.match(second)


def test_a_path_bound_index_reads_only_inputs_inside_its_prefixes(site):
    run7 = site.home / "run7i"
    run7.mkdir()
    try:
        shutil.copyfile(site.home / "thau_0001.cbf", run7 / "thau_0001.cbf")
        os.chmod(run7, 0o755)
        token = site.stack.token(site.user, [site.esaf], paths=["run7i/"])
        before = sorted((site.home / "results" / "index").iterdir())
        _, meta = meta_of(_index(site, token, fn="run7i/thau_0001.cbf"))
        assert meta["files"] == [str(run7 / "thau_0001.cbf")] and FOLDER.match(
            meta["results_folder"]
        )
        refused = _index(site, token, fn="run7i/thau_0001.cbf", fn2="thau_0001.cbf")
        assert error_code(refused) == "forbidden" and "bound" in refused[0].decode()
        assert error_code(_index(site, token, fn="run7i/../thau_0001.cbf")) == "forbidden"
        after = sorted((site.home / "results" / "index").iterdir())
        assert len(after) == len(before) + 1  # the refused runs wrote nothing
    finally:
        shutil.rmtree(run7)


def test_a_planted_results_symlink_is_never_followed(tmp_path: Path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "results").symlink_to(elsewhere)
    with pytest.raises(Forbidden, match="not a directory"):
        results.make(str(home), "index", "x")
    assert not list(elsewhere.iterdir())


@pytest.mark.parametrize(
    ("name", "stem"),
    [("thau_0001.cbf", "thau_0001"), ("a;rm -rf ~.cbf", "a_rm_-rf"), ("..cbf", "input")],
)
def test_folder_names_from_file_names_are_safe(name, stem):
    assert results.stem_of(name) == stem
