"""Path-bound tokens through the real stack: the worker's own resolution decides, so ``..``
and symlinks cannot widen the prefixes, a client cannot set them, and each refusal leaves one
audit line naming the token (kid, jti, prefixes) but never its bytes."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import ask, error_code
from worker.listing import MAX_LIMIT, MAX_LINK_WALKS

FILE = "run7/a_0001.cbf"


@pytest.fixture(scope="module")
def runs(site) -> Iterator[Path]:
    """run7/ and run8/ in the ESAF home, and symlinks in run7/ that lead into run8/."""
    group = f"e{site.esaf}"
    for run in ("run7", "run8"):
        (site.home / run).mkdir()
        shutil.chown(site.home / run, "root", group)
        os.chmod(site.home / run, 0o750)
        shutil.copyfile(site.home / "thau_0001.cbf", site.home / run / "a_0001.cbf")
        shutil.chown(site.home / run / "a_0001.cbf", "root", group)
        os.chmod(site.home / run / "a_0001.cbf", 0o640)
    (site.home / "run7" / "rel.cbf").symlink_to("../run8/a_0001.cbf")
    (site.home / "run7" / "abs.cbf").symlink_to(site.home / "run8" / "a_0001.cbf")
    (site.home / "run7" / "up").symlink_to("..")
    yield site.home
    for run in ("run7", "run8"):
        shutil.rmtree(site.home / run)


def _ask(site, token_pid: tuple[str, str], fn: str, **extra) -> list[bytes]:
    pid, token = token_pid
    job = {
        "pid": pid,
        "esaf": site.esaf,
        "type": "jpeg",
        "fn": fn,
        "xsize": 64,
        "auth": token,
        **extra,
    }
    return ask(site.endpoint, job)


def _bound(site, paths=("run7/",)) -> tuple[str, str]:
    return site.stack.token(site.user, [site.esaf], paths=list(paths))


def test_a_bound_token_reads_inside_its_prefix(site, runs):
    token = _bound(site)
    assert _ask(site, token, FILE)[0] == b""
    assert _ask(site, token, str(runs / FILE))[0] == b""  # absolute, inside the home
    assert _ask(site, token, "run8/../run7/a_0001.cbf")[0] == b""  # resolves inside


@pytest.mark.parametrize(
    "fn",
    [
        "run8/a_0001.cbf",
        "run7/../run8/a_0001.cbf",
        "run7/rel.cbf",  # a relative symlink in run7/ that leads to run8/
        "run7/abs.cbf",  # an absolute one
        "run7/up/run8/a_0001.cbf",  # a symlinked folder
        "thau_0001.cbf",  # the ESAF root
    ],
)
@pytest.mark.parametrize("job_type", ["jpeg", "spots", "meta"])
def test_a_bound_token_is_refused_outside_after_resolution(site, runs, fn, job_type):
    reply = _ask(site, _bound(site), fn, type=job_type)
    assert error_code(reply) == "forbidden" and "bound" in reply[0].decode()


def test_the_same_files_are_served_to_an_unbound_token(site, runs):
    token = site.stack.token(site.user, [site.esaf])
    for fn in ("run8/a_0001.cbf", "run7/rel.cbf", "run7/abs.cbf"):
        assert _ask(site, token, fn)[0] == b""


def test_a_client_cannot_widen_the_binding(site, runs):
    token = _bound(site)
    for smuggled in ({"paths": ["run8/"]}, {"paths": None}, {"job": {"paths": ["run8/"]}}):
        reply = _ask(site, token, "run8/a_0001.cbf", **smuggled)
        assert error_code(reply) == "forbidden"


def test_a_series_prefix_covers_its_frames_only(site, runs):
    token = _bound(site, ["run7/a_"])
    assert _ask(site, token, FILE)[0] == b""
    assert error_code(_ask(site, token, "run7/rel.cbf")) == "forbidden"


def test_each_refusal_is_one_audit_line_naming_kid_jti_and_prefixes(site, runs):
    pid, token = _bound(site, ["run7/", "run9/"])
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert error_code(_ask(site, (pid, token), "run8/a_0001.cbf")) == "forbidden"
    log = site.log_text()
    lines = [line for line in log.splitlines() if f'jti="{claims["jti"]}"' in line]
    assert len(lines) == 1, lines
    assert f'kid="{site.stack.kid}"' in lines[0] and '["run7/", "run9/"]' in lines[0]
    assert '"run8/a_0001.cbf"' in lines[0]
    assert token not in log and token.split(".")[2] not in log


def _listed(reply: list[bytes]) -> list[str]:
    assert reply[0] == b"", reply[0][:200]
    return sorted(e["name"] for e in json.loads(reply[2])["entries"])


@pytest.mark.parametrize("job_type", ["tile", "pixels", "counts"])
def test_the_viewer_job_types_serve_a_bound_token_inside_its_prefix(site, runs, job_type):
    assert _ask(site, _bound(site), FILE, type=job_type)[0] == b""
    for fn in ("run8/a_0001.cbf", "run7/rel.cbf", "run7/up/run8/a_0001.cbf"):
        reply = _ask(site, _bound(site), fn, type=job_type)
        assert error_code(reply) == "forbidden" and "bound" in reply[0].decode()


def test_a_summed_tile_is_checked_like_one_frame(site, runs):
    reply = _ask(site, _bound(site), "run8/a_0001.cbf", type="tile", sum=2)
    assert error_code(reply) == "forbidden" and "bound" in reply[0].decode()


def test_a_bound_token_lists_its_folder_and_nothing_above(site, runs):
    token = _bound(site)
    listed = _listed(_ask(site, token, "run7/", type="list"))
    assert listed == ["a_0001.cbf", "abs.cbf", "rel.cbf", "up"]
    for fn in ("run8", "run7/..", "run7/up", str(runs)):  # up -> .. resolves to the root
        reply = _ask(site, token, fn, type="list")
        assert error_code(reply) == "forbidden" and "bound" in reply[0].decode()


def test_a_series_prefix_lists_only_its_own_names(site, runs):
    token = _bound(site, ["run7/a_"])
    assert _listed(_ask(site, token, "run7", type="list")) == ["a_0001.cbf"]
    assert error_code(_ask(site, token, "run8", type="list")) == "forbidden"


def test_list_walks_the_home_without_following_out(site, runs):
    token = site.stack.token(site.user, [site.esaf])
    reply = _ask(site, token, "run7/up", type="list")  # a symlink below the home: walked
    assert reply[0] == b"" and json.loads(reply[2])["dir"] == ""
    (site.home / "out").symlink_to("/etc")
    try:
        assert error_code(_ask(site, token, "out", type="list")) == "forbidden"
    finally:
        (site.home / "out").unlink()


def _entries(reply: list[bytes]) -> dict[str, dict]:
    assert reply[0] == b"", reply[0][:200]
    return {e["name"]: e for e in json.loads(reply[2])["entries"]}


def test_a_listed_symlink_is_what_a_request_for_it_opens(site, runs):
    """Inside the home a link shows its target's size; out of the home, or out of a bound
    token's prefixes, it is ``other`` with no size or time (a stat that followed it showed
    those of whatever it named, /etc/passwd included)."""
    token = site.stack.token(site.user, [site.esaf])
    size = (runs / "run8" / "a_0001.cbf").stat().st_size
    (runs / "run7" / "pw").symlink_to("/etc/passwd")
    (runs / "run7" / "etc").symlink_to("/etc")
    try:
        whole = _entries(_ask(site, token, "run7", type="list"))
        bound_to_run7 = _entries(_ask(site, _bound(site), "run7", type="list"))
    finally:
        (runs / "run7" / "pw").unlink()
        (runs / "run7" / "etc").unlink()
    assert whole["rel.cbf"] == whole["abs.cbf"] | {"name": "rel.cbf"}
    assert whole["rel.cbf"]["kind"] == "file" and whole["rel.cbf"]["bytes"] == size
    assert whole["up"]["kind"] == "dir"
    for listed in (whole, bound_to_run7):
        assert listed["pw"] == {"kind": "other", "name": "pw"}
        assert listed["etc"] == {"kind": "other", "name": "etc"}
    for name in ("rel.cbf", "abs.cbf", "up"):  # lead out of run7/: the bound token's prefix
        assert bound_to_run7[name] == {"kind": "other", "name": name}
    assert bound_to_run7["a_0001.cbf"]["bytes"] == (runs / FILE).stat().st_size


def test_a_folder_of_links_walks_at_most_max_link_walks_of_them(site, runs):
    """Each listed link costs a walk of its path: past MAX_LINK_WALKS per request the rest are
    ``other`` (no size, no time), so a folder of many links cannot make one listing slow."""
    folder = runs / "run8" / "links"
    folder.mkdir()
    try:
        for n in range(MAX_LINK_WALKS + 3):  # no extension: single files, not a series
            (folder / f"link{n}").symlink_to("../a_0001.cbf")
        token = site.stack.token(site.user, [site.esaf])
        kinds: list[str] = []
        for offset in range(0, MAX_LINK_WALKS + 3, MAX_LIMIT):
            reply = _ask(site, token, "run8/links", type="list", offset=offset, limit=MAX_LIMIT)
            kinds += [e["kind"] for e in _entries(reply).values()]
    finally:
        shutil.rmtree(folder)
    assert len(kinds) == MAX_LINK_WALKS + 3
    assert kinds.count("file") == MAX_LINK_WALKS and kinds.count("other") == 3


def test_a_bound_token_cannot_list_the_esaf_root(site, runs):
    reply = _ask(site, _bound(site), ".", type="list")
    assert error_code(reply) == "forbidden"
