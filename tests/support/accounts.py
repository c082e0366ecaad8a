"""Throwaway Unix users and groups for the privilege-separation tests (root only).

Created with the system's own ``useradd``/``groupadd`` and removed afterwards, so the tests
exercise the real setuid/setgid path against real passwd/group entries. Removal is checked:
``groupdel`` refuses a group that shares GID 0 with root's primary group unless forced, and an
ignored failure once left such a group in ``/etc/group`` after every run. :func:`leftovers`
names every account this process made that still exists (the suite fails on any at its end).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_made: set[tuple[str, str]] = set()  # ("user" | "group", name): everything this process added


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _exists(kind: str, name: str) -> bool:
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        return False
    return True


def leftovers() -> list[str]:
    """Accounts and groups this process created that are still in passwd/group."""
    return sorted(f"{kind} {name}" for kind, name in _made if _exists(kind, name))


@dataclass
class Accounts:
    base: Path
    tag: str
    users: list[str]
    groups: list[str]
    shared_gid: set[str] = field(default_factory=set)  # made with -o: another group owns the GID

    @classmethod
    def create(cls, base: Path) -> Accounts:
        tag = f"{os.getpid() % 100000:05d}"
        acc = cls(base=base, tag=tag, users=[], groups=[])
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        return acc

    def group(self, name: str, gid: int | None = None) -> str:
        extra = ["-o", "-g", str(gid)] if gid is not None else []
        _made.add(("group", name))
        _run("groupadd", *extra, name)
        self.groups.append(name)
        if gid is not None:
            self.shared_gid.add(name)
        return name

    def user(self, name: str, group: str | None = None, home: Path | None = None) -> str:
        argv = ["useradd", "-M", "-s", "/usr/sbin/nologin"]
        argv += ["-g", group] if group else ["-U"]
        argv += ["-d", str(home or self.base / name)]
        _made.add(("user", name))
        if not group:
            _made.add(("group", name))  # useradd -U makes a group of the same name
        _run(*argv, name)
        self.users.append(name)
        if not group:
            self.groups.append(name)
        return name

    def esaf(self, esaf: int) -> tuple[str, Path]:
        """Group and account ``e<esaf>`` with a home ``root:e<esaf> 0750``."""
        name = f"e{esaf}"
        self.group(name)
        home = self.base / name
        home.mkdir()
        shutil.chown(home, "root", name)
        os.chmod(home, 0o750)
        self.user(name, group=name, home=home)
        return name, home

    def remove(self) -> None:
        """Delete every account and group made here; raise naming any that is still there."""
        for name in reversed(self.users):
            subprocess.run(["userdel", name], capture_output=True)
        for name in reversed(self.groups):
            # -f: a group sharing GID 0 is "the primary group of root" to groupdel; the GID's
            # own group (root) is untouched, only this name's entry goes
            force = ["-f"] if name in self.shared_gid else []
            subprocess.run(["groupdel", *force, name], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        left = [f"user {n}" for n in self.users if _exists("user", n)]
        left += [f"group {n}" for n in self.groups if _exists("group", n)]
        if left:
            raise RuntimeError(f"throwaway accounts not removed: {', '.join(left)}")
