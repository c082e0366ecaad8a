"""Fixtures that run the real thing: redis-server, is-proxy, is-procmgr, zygote and workers.

As root (CI runs as root) the stack runs in production mode against throwaway users and groups,
so every request goes through a real setuid/setgid. Without root only the tests that need no
privilege run; in CI (``CI`` set) a missing root is an error, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyisdev.stack import Stack
from tests.support import accounts, required
from tests.support.accounts import Accounts

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("PYIS_TESTDATA", REPO.parent / "shared" / "testdata"))
IS_ROOT = os.geteuid() == 0
CBF = "cbf/thau_3_2_0001.cbf"


def need_root() -> None:
    if not IS_ROOT:
        required.missing("needs root: privilege separation is tested with real setuid/setgid")


@pytest.fixture(scope="session", autouse=True)
def no_account_left_behind() -> Iterator[None]:
    """Torn down last: the run fails if any throwaway user or group outlives it."""
    yield
    left = accounts.leftovers()
    assert not left, f"the test run left these accounts behind: {', '.join(left)}"


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not (TESTDATA / CBF).is_file():
        pytest.fail(f"test data not found at {TESTDATA} (set PYIS_TESTDATA)")
    return TESTDATA


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of its own for is-cli (the CLI tests), so a real ~/.config/pyis/cli.toml on this
    machine cannot interfere."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@dataclass
class Site:
    """The image host as the tests see it: accounts, ESAF homes and the running stack."""

    stack: Stack
    accounts: Accounts
    user: str
    other_user: str
    esaf: int
    other_esaf: int
    home: Path
    other_home: Path
    logs: Path

    @property
    def endpoint(self) -> str:
        return self.stack.endpoint

    def session(self, esafs: list[int] | None = None, user: str | None = None) -> str:
        return self.stack.sign_session(user or self.user, esafs or [self.esaf])

    def log_text(self, name: str = "procmgr") -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def _place(src: Path, home: Path, name: str, group: str, mode: int = 0o640) -> Path:
    dst = home / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    shutil.chown(dst, "root", group)
    os.chmod(dst, mode)
    return dst


@pytest.fixture(scope="session")
def site(testdata: Path) -> Iterator[Site]:
    need_root()
    base = Path(tempfile.mkdtemp(prefix="pyis-site-", dir="/tmp"))
    os.chmod(base, 0o755)
    acc = Accounts.create(base / "homes")
    tag = acc.tag
    esaf, other_esaf = 900000 + int(tag) % 50000, 950000 + int(tag) % 50000
    try:
        egroup, home = acc.esaf(esaf)
        ogroup, other_home = acc.esaf(other_esaf)
        user = acc.user(f"pyisu{tag}")
        other_user = acc.user(f"pyisv{tag}")
        acc.group(f"pyiso{tag}")
        _place(testdata / CBF, home, "thau_0001.cbf", egroup)
        _place(testdata / CBF, home, "secret/other_group.cbf", f"pyiso{tag}")
        os.chmod(home / "secret", 0o755)
        _place(testdata / CBF, other_home, "thau_0001.cbf", ogroup)
        (home / "escape.cbf").symlink_to(other_home / "thau_0001.cbf")
        (home / "results").mkdir()  # the admin's: where processing jobs write (worker/results.py)
        shutil.chown(home / "results", "root", egroup)
        os.chmod(home / "results", 0o2770)
        logs = base / "logs"
        logs.mkdir()
        indexer = base / "fake_indexer.py"
        shutil.copyfile(REPO / "tests" / "fake_indexer.py", indexer)
        os.chmod(indexer, 0o755)
        config = base / "procmgr.toml"
        config.write_text(
            f'[procmgr]\nindex_command = ["/usr/bin/python3", "{indexer}"]\n'
            'require_esaf = true\nesaf_group = "e{esaf}"\nrequest_timeout_s = 30.0\n'
        )
        stack = Stack(base, ["--config", str(config)], stderr_dir=logs).start()
        yield Site(stack, acc, user, other_user, esaf, other_esaf, home, other_home, logs)
        stack.stop()
    finally:
        acc.remove()
        shutil.rmtree(base, ignore_errors=True)
