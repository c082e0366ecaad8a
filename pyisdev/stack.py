"""The whole stack as real processes on loopback: what ``is-dev``, the tests and the benches run.

A private ``redis-server`` (standing in for the web host's session Redis), an RSA key pair and a
throwaway CA for signing sessions, CURVE keys for the proxy link, a cache Redis, ``is-proxy``
and ``is-procmgr`` on ephemeral loopback ports, and ``is-web`` on request.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import urllib.request
from pathlib import Path

import redis

from authsign import compat, tokens
from certs import ca
from isweb import login
from pyis_common import curve, keyfiles
from pyis_common.jobtypes import DEFAULT_SCOPE
from pyisdev import procs

CACHE_REDIS_ARGS = ["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"]
SESSION_REDIS_ARGS = ["--notify-keyspace-events", "Kghxe"]
CACHE_ADMIN = "pyis-admin"  # the procmgr's own user on the cache Redis (the config default)
CACHE_ADMIN_RULES = ("~*", "&*", "+@all")


class Stack:
    """redis-server + is-proxy + is-procmgr, each a real process; tests use it too."""

    def __init__(
        self,
        workdir: Path,
        procmgr_args: list[str],
        stderr_dir: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.procmgr_args = procmgr_args
        self.stderr_dir = stderr_dir
        self.key = compat.generate_key()
        self.pubkey = workdir / "isauth-pubkey.pem"
        self.pubkey.write_bytes(compat.public_pem(self.key))
        # a throwaway offline CA certifying one auth-server signing key, for JWT objects
        self.ca_dir, self.signing_dir = workdir / "ca", workdir / "signing"
        ca.init_root(self.ca_dir)
        self.kid = "dev-1"
        key_path, _ = ca.issue_signing(self.ca_dir, self.kid, self.signing_dir)
        self.signing_key = keyfiles.load_private(key_path)
        key_path.unlink()  # the procmgr reads this directory: only certificates belong in it
        self.crl = ca.write_crl(self.ca_dir, workdir / "crl.pem")
        # CURVE on the proxy <-> procmgr link: the proxy admits only the procmgr's key
        curve_dir = workdir / "curve"
        _, self.proxy_secret = curve.make_certificates(curve_dir / "proxy", "proxy")
        self.proxy_public = curve_dir / "proxy" / "proxy.key"
        self.procmgr_public, self.procmgr_secret = curve.make_certificates(
            curve_dir / "procmgr", "procmgr"
        )
        self.curve_clients = curve_dir / "clients"
        self.curve_clients.mkdir()
        shutil.copy(self.procmgr_public, self.curve_clients)
        # the cache Redis admin: the password only in a 0600 file, its SHA-256 on redis's argv
        self.cache_password = secrets.token_urlsafe(32)
        self.cache_password_file = workdir / "cache-redis.pass"
        fd = os.open(self.cache_password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.cache_password + "\n")
        self.cache_admin_rules = CACHE_ADMIN_RULES  # a test may take rights away
        self.procs: list[procs.Proc] = []

    def _stderr(self, name: str):
        if self.stderr_dir is None:
            return None
        return open(self.stderr_dir / f"{name}.log", "ab")  # noqa: SIM115 (child owns it)

    def start(self) -> Stack:
        """Start everything, or nothing: a part that fails to start stops the others."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Stack:
        # the web host's Redis as deployed for the session memo: keyspace notifications on
        self.redis_proc, self.redis_port = procs.redis_server(self.workdir, SESSION_REDIS_ARGS)
        self.procs.append(self.redis_proc)
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis = redis.Redis.from_url(self.redis_url)
        self.start_cache_redis()
        any_port = "tcp://127.0.0.1:*"
        self.proxy = self._run(
            "proxy",
            [
                *procs.pyis_command("is_proxy"),
                "--frontend",
                any_port,
                "--backend",
                any_port,
                "--control",
                f"ipc://{self.workdir / 'proxy-run' / 'control'}",  # made 0700 by the proxy
                "--metrics",
                "127.0.0.1:0",  # Prometheus: per-host credit, heartbeat age, in flight
                *self.proxy_curve_args(),
            ],
        )
        fields = self.proxy.fields()
        self.endpoint, self.backend, self.control = (
            fields["frontend"],
            fields["backend"],
            fields["control"],
        )
        self.start_procmgr()
        return self

    def start_cache_redis(self, port: int | None = None, wrap: tuple[str, ...] = ()) -> None:
        """The image host's Redis (tier 2), separate from the web host's session Redis: a
        stock configuration (``default`` on, no password, as a distribution ships it) plus our
        admin user; the procmgr turns ``default`` off itself."""
        digest = hashlib.sha256(self.cache_password.encode()).hexdigest()
        admin = ["--user", CACHE_ADMIN, "on", f"#{digest}", *self.cache_admin_rules]
        self.cache_redis_proc, self.cache_redis_port = procs.redis_server(
            self.workdir, [*CACHE_REDIS_ARGS, *admin], port, wrap
        )
        self.procs.append(self.cache_redis_proc)
        self.cache_redis_url = f"redis://127.0.0.1:{self.cache_redis_port}/0"
        self.cache_redis = redis.Redis.from_url(
            self.cache_redis_url, username=CACHE_ADMIN, password=self.cache_password
        )

    def proxy_curve_args(self) -> list[str]:
        """What a proxy on this stack's backend needs to admit its procmgr (and no other)."""
        return [
            "--curve-secret",
            str(self.proxy_secret),
            "--curve-clients",
            str(self.curve_clients),
        ]

    def start_procmgr(self, wrap: tuple[str, ...] = (), name: str = "procmgr") -> procs.Proc:
        """``wrap`` runs it inside, e.g. ``ip netns exec NAME``; ``name`` names its log."""
        self.procmgr = self._run(
            name,
            [
                *wrap,
                *procs.pyis_command("procmgr"),
                "--proxy",
                self.backend,
                "--auth-redis",
                self.redis_url,
                "--compat-pubkey",
                str(self.pubkey),
                "--cache-redis",
                self.cache_redis_url,
                "--cache-redis-password-file",
                str(self.cache_password_file),
                "--curve-secret",
                str(self.procmgr_secret),
                "--proxy-curve-public",
                str(self.proxy_public),
                "--trust-root",
                str(self.ca_dir / ca.ROOT_CERT),
                "--trust-certs",
                str(self.signing_dir),
                "--trust-crl",
                str(self.crl),
                "--metrics",
                "127.0.0.1:0",  # the loopback status page (per-worker detail); args may override
                *self.procmgr_args,
            ],
        )
        return self.procmgr

    def status_detail(self) -> dict:
        """Each worker's uid, ESAF and pid: from the procmgr's loopback status page (the
        ``status`` request through the proxy answers counts only)."""
        address = self.procmgr.fields()["metrics"]
        with urllib.request.urlopen(f"http://{address}/status", timeout=10) as resp:
            return json.loads(resp.read())

    def start_web(self, *args: str) -> str:
        """is-web on a free loopback port in front of this stack's proxy; its base URL."""
        self.web = self._run(
            "web",
            [
                *procs.pyis_command("isweb"),
                "--listen",
                "127.0.0.1:0",
                "--endpoint",
                self.endpoint,
                "--login-redis",
                self.redis_url,
                "--insecure-cookie",
                *args,
            ],
        )
        self.web_url = self.web.fields()["url"]
        return self.web_url

    def login_url(self, pid: str) -> str:
        """A one-time link that gives a browser the cookie of session ``pid``."""
        return f"{self.web_url}/login?code={login.store_code(self.redis, pid)}"

    def _run(self, name: str, argv: list[str]) -> procs.Proc:
        proc = procs.Proc(argv, lambda line: line.startswith("READY"), stderr=self._stderr(name))
        self.procs.append(proc)
        proc.wait_ready()
        return proc

    def sign_session(
        self, user: str, esafs: list[int], pid: str | None = None, lifetime_s: int | None = 3600
    ) -> str:
        """What the auth server does at login: store a signed isAuth under a new session id."""
        pid = pid or secrets.token_hex(16)
        isauth = compat.make_isauth(pid, user, esafs, lifetime_s)
        self.redis.hset(pid, mapping={"isAuth": isauth, "isAuthSig": compat.sign(self.key, isauth)})
        return pid

    def token(
        self,
        user: str,
        esafs: list[int],
        pid: str | None = None,
        scope: str = DEFAULT_SCOPE,
        lifetime_s: int = 600,
        in_hash: bool = False,
        paths: list[str] | None = None,
    ) -> tuple[str, str]:
        """(pid, JWT) as the auth server issues them; the session hash always exists (it is
        what logout deletes), and holds the token too when ``in_hash``; ``paths`` binds it."""
        pid = pid or secrets.token_hex(16)
        token = tokens.issue(
            self.signing_key,
            self.kid,
            pid=pid,
            uid=user,
            esafs=esafs,
            aud="pyis",
            scope=scope,
            lifetime_s=lifetime_s,
            paths=paths,
        )
        self.redis.hset(pid, mapping={"isToken": token} if in_hash else {"session": "1"})
        return pid, token

    def stop(self) -> dict[str, int]:
        """Stop in reverse order; the exit code of each."""
        codes = {}
        for proc in reversed(self.procs):
            codes[proc.argv[2] if len(proc.argv) > 2 else proc.argv[0]] = proc.stop()
        self.procs.clear()
        return codes
