"""A --dev stack with is-web in front, serving a data folder made for the viewer's tests: two
frames of a CBF series, an Eiger data file, a MarCCD file, a file and a folder the worker's
user may not read, and a file whose name is markup."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from procmgr.__main__ import dev_user
from pyisdev.stack import Stack

HOSTILE = "<img src=x onerror=alert(1)>.cbf"
SECRET = "secret_0001.cbf"
FILES = {  # name in the data folder -> test data file
    "series/thau_0001.cbf": "cbf/thau_3_2_0001.cbf",
    "series/thau_0002.cbf": "cbf/thau_3_2_0002.cbf",
    "eiger/eiger2_data_000001.h5": "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5",
    "marccd/somedata_0001.mccd": "marccd/somedata_0001.mccd",
    f"odd/{HOSTILE}": "cbf/l-cyst_01_00001.cbf",
    f"odd/{SECRET}": "cbf/l-cyst_01_00002.cbf",
}


@dataclass
class WebSite:
    stack: Stack
    data: Path
    url: str
    pid: str  # the dev session the browser logs in to

    def login_url(self) -> str:
        return self.stack.login_url(self.pid)


@contextmanager
def web_site(testdata: Path) -> Iterator[WebSite]:
    base = Path(tempfile.mkdtemp(prefix="pyis-web-", dir="/tmp"))
    os.chmod(base, 0o755)  # the worker (nobody) must reach the data through it
    data = base / "data"
    for name, source in FILES.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(testdata / source, data / name)
    for folder in (data, *{(data / n).parent for n in FILES}):
        os.chmod(folder, 0o755)
    for name in FILES:
        os.chmod(data / name, 0o644)
    os.chmod(data / "odd" / SECRET, 0o600 if os.geteuid() == 0 else 0o000)
    (data / "locked").mkdir(mode=0o700 if os.geteuid() == 0 else 0o000)
    stack = Stack(base, ["--dev", str(data)], stderr_dir=base).start()
    try:
        url = stack.start_web()
        yield WebSite(stack, data, url, stack.sign_session(dev_user(), [0]))
    finally:
        stack.stop()
        os.chmod(data / "locked", 0o700)
        shutil.rmtree(base, ignore_errors=True)
