"""Throwaway Unix users and groups for the privilege-separation tests (root only).

Created with the system's own ``useradd``/``groupadd`` and removed afterwards, so the tests
exercise the real setuid/setgid path against real passwd/group entries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Accounts:
    base: Path
    tag: str
    users: list[str]
    groups: list[str]

    @classmethod
    def create(cls, base: Path) -> Accounts:
        tag = f"{os.getpid() % 100000:05d}"
        acc = cls(base=base, tag=tag, users=[], groups=[])
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        return acc

    def group(self, name: str, gid: int | None = None) -> str:
        extra = ["-o", "-g", str(gid)] if gid is not None else []
        _run("groupadd", *extra, name)
        self.groups.append(name)
        return name

    def user(self, name: str, group: str | None = None, home: Path | None = None) -> str:
        argv = ["useradd", "-M", "-s", "/usr/sbin/nologin"]
        argv += ["-g", group] if group else ["-U"]
        argv += ["-d", str(home or self.base / name)]
        _run(*argv, name)
        self.users.append(name)
        if not group:
            self.groups.append(name)  # useradd -U made a group of the same name
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
        for name in reversed(self.users):
            subprocess.run(["userdel", name], capture_output=True)
        for name in reversed(self.groups):
            subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
