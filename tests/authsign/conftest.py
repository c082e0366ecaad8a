"""Fixtures of the is-authsign command tests: a real redis-server, a throwaway CA, a session id,
and the runner that checks every output for key material, tracebacks and the secret."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pyisdev import procs
from tests.conftest import REPO
from tests.support.authsigncli import Pki, Run, make_pki


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = procs.redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def pid() -> str:
    return "sess-" + secrets.token_hex(8)


@pytest.fixture
def cli(tmp_path: Path, pki: Pki) -> Run:
    """Run ``is-authsign ARGS``; check the output for key material, tracebacks and ``secret``."""

    def run(*args: object, stdin: str | None = None, secret: str | None = None):
        argv = [sys.executable, "-m", "authsign", *map(str, args)]
        res = subprocess.run(
            argv, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        out = res.stdout + res.stderr
        assert "PRIVATE KEY" not in out and "Traceback" not in res.stderr, out
        for key_file in [*tmp_path.rglob("*key.pem"), *pki.dir.rglob("*key.pem")]:
            body = [line for line in key_file.read_text().splitlines() if "-----" not in line]
            assert not any(line in out for line in body if len(line) >= 16), key_file
        assert secret is None or secret not in out
        return res

    return run
