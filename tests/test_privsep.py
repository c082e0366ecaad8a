"""Privilege separation, for real: workers run as the user with the ESAF's group and no others."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from tests.support.client import ask, error_code
from tests.support.proctree import children, ready_spare, status_of


def workers_of(site) -> list[dict[str, str]]:
    """Workers are the zygote's children; the zygote is the procmgr's child."""
    found = []
    for zygote in children(site.stack.procmgr.pid):
        found += [status_of(pid) for pid in children(zygote)]
    return found


def test_worker_runs_as_user_with_esaf_group_and_no_supplementary_groups(site):
    pid = site.session()
    reply = ask(
        site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "thau_0001.cbf"}
    )
    assert reply[0] == b""
    uid = pwd.getpwnam(site.user).pw_uid
    gid = grp.getgrnam(f"e{site.esaf}").gr_gid
    mine = [s for s in workers_of(site) if s["Uid"].split() == [str(uid)] * 4]
    assert len(mine) == 1, workers_of(site)
    assert mine[0]["Gid"].split() == [str(gid)] * 4
    assert mine[0]["Groups"] == ""
    assert mine[0]["CapEff"] == "0000000000000000"


def test_a_spare_becomes_a_new_users_worker_with_only_the_esaf_group(site):
    """The zygote's spare, forked and rehearsed as root before any identity existed, is the
    new user's worker: the user's UID, the ESAF's GID, no other group (not even the user's
    own), no capability."""
    user = site.accounts.user(f"pyisw{site.accounts.tag}")
    (zygote,) = children(site.stack.procmgr.pid)
    spare = ready_spare(zygote)
    assert status_of(spare)["Uid"].split() == ["0"] * 4
    job = {"type": "jpeg", "pid": site.session(user=user), "esaf": site.esaf, "fn": "thau_0001.cbf"}
    assert ask(site.endpoint, job)[0] == b""
    status = status_of(spare)
    assert status["Uid"].split() == [str(pwd.getpwnam(user).pw_uid)] * 4
    assert status["Gid"].split() == [str(grp.getgrnam(f"e{site.esaf}").gr_gid)] * 4
    assert status["Groups"] == ""
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"


def test_file_of_another_group_is_forbidden(site):
    pid = site.session()
    reply = ask(
        site.endpoint,
        {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "secret/other_group.cbf"},
    )
    assert error_code(reply) == "forbidden"


def test_dotdot_out_of_the_esaf_home_is_refused(site):
    pid = site.session()
    fn = f"../e{site.other_esaf}/thau_0001.cbf"
    assert (
        error_code(ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": fn}))
        == "forbidden"
    )


def test_absolute_path_outside_the_home_is_refused(site):
    pid = site.session()
    fn = str(site.other_home / "thau_0001.cbf")
    assert (
        error_code(ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": fn}))
        == "forbidden"
    )


def test_symlink_out_of_the_esaf_home_is_refused(site):
    pid = site.session()
    reply = ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "escape.cbf"})
    assert error_code(reply) == "forbidden"


def test_absolute_path_inside_the_home_is_served(site):
    pid = site.session()
    fn = str(site.home / "thau_0001.cbf")
    assert ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": fn})[0] == b""


def test_user_with_uid_0_is_refused(site):
    pid = site.session(user="root")
    reply = ask(
        site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "thau_0001.cbf"}
    )
    assert error_code(reply) == "forbidden"
    assert "UID 0" in reply[0].decode()


def test_esaf_group_with_gid_0_is_refused(site):
    esaf = site.esaf + 7
    site.accounts.group(f"e{esaf}", gid=0)
    pid = site.session(esafs=[esaf])
    reply = ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": esaf, "fn": "thau_0001.cbf"})
    assert error_code(reply) == "forbidden"
    assert "GID 0" in reply[0].decode()


def test_missing_esaf_is_refused_by_policy(site):
    pid = site.session()
    assert (
        error_code(ask(site.endpoint, {"type": "jpeg", "pid": pid, "fn": "thau_0001.cbf"}))
        == "forbidden"
    )


def test_worker_has_an_address_space_limit(site):
    pid = site.session()
    assert (
        ask(site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "thau_0001.cbf"})[
            0
        ]
        == b""
    )
    uid = pwd.getpwnam(site.user).pw_uid
    (worker,) = [
        w["pid"]
        for w in site.stack.status_detail()["workers"]
        if w["uid"] == uid and w["esaf"] == site.esaf
    ]
    limits = Path(f"/proc/{worker}/limits").read_text()
    (line,) = [ln for ln in limits.splitlines() if ln.startswith("Max address space")]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert line.split()[3] == str(max(2 << 30, ram // 4))  # worker_memory_bytes's default
