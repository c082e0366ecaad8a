"""The throwaway accounts really go: a leftover group with GID 0 is a root group on the host."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from tests.conftest import need_root
from tests.support import accounts
from tests.support.accounts import Accounts


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def acc(tmp_path: Path) -> Accounts:
    need_root()
    return Accounts.create(tmp_path / "homes")


def test_a_group_sharing_gid_0_is_removed(acc):
    name = f"pyisz{os.getpid() % 100000:05d}"
    acc.group(name, gid=0)
    assert grp.getgrnam(name).gr_gid == 0
    acc.remove()
    assert not _group_exists(name)
    assert f"group {name}" not in accounts.leftovers()


def test_leftovers_names_an_account_that_is_still_there(acc):
    name = acc.user(f"pyisy{os.getpid() % 100000:05d}")
    assert f"user {name}" in accounts.leftovers() and f"group {name}" in accounts.leftovers()
    acc.remove()
    assert not [entry for entry in accounts.leftovers() if entry.endswith(name)]
