"""A --dev stack serving one copy of a test image: for tests that need a stack of their own
(a short deadline, metrics, a config to reload, one to kill) beside the shared ``site``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from procmgr.__main__ import dev_user
from pyisdev.stack import Stack
from tests.support.client import ask
from tests.support.proctree import worker_of

CBF = "cbf/thau_3_2_0001.cbf"


@contextmanager
def dev_stack(
    testdata: Path,
    config: str = "",
    args: tuple[str, ...] = (),
    name: str = "a.cbf",
    before_start: Callable[[Stack], list[str]] | None = None,
    cache_admin_rules: tuple[str, ...] | None = None,
    files: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """``config`` is the body of a ``[procmgr]`` section; logs go to ``stack.workdir``;
    ``before_start`` sees the stack's keys before it runs and returns more procmgr flags;
    ``cache_admin_rules`` replace the cache Redis admin user's ACL rules; ``files`` (paths
    under testdata) are served under the same relative paths."""
    base = Path(tempfile.mkdtemp(prefix="pyis-dev-", dir="/tmp"))
    os.chmod(base, 0o755)  # the worker (nobody) must reach the data through it
    data = base / "data"
    data.mkdir()
    shutil.copyfile(testdata / CBF, data / name)
    os.chmod(data / name, 0o644)
    (data / "results").mkdir()  # where index jobs write (worker/results.py), as the dev user
    os.chmod(data / "results", 0o777)
    for rel in files:
        (data / rel).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copyfile(testdata / rel, data / rel)
        os.chmod(data / rel, 0o644)
    argv = ["--dev", str(data), *args]
    if config:
        (base / "procmgr.toml").write_text(f"[procmgr]\n{config}\n")
        argv += ["--config", str(base / "procmgr.toml")]
    stack = Stack(base, argv, stderr_dir=base)
    if before_start is not None:
        stack.procmgr_args += before_start(stack)
    if cache_admin_rules is not None:
        stack.cache_admin_rules = cache_admin_rules
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


def jpeg_job(stack: Stack, esaf: int) -> dict:
    """A request for the served image in a fresh session of the dev user for ``esaf``."""
    return {
        "type": "jpeg",
        "pid": stack.sign_session(dev_user(), [esaf]),
        "esaf": esaf,
        "fn": "a.cbf",
    }


def started_worker(stack: Stack, esaf: int) -> int:
    """The pid of the worker that one served request for ``esaf`` started (a spare or a
    fork: the zygote's children include its spares, so the procmgr says which it is)."""
    assert ask(stack.endpoint, jpeg_job(stack, esaf))[0] == b""
    return worker_of(stack, esaf)
