"""Configuration: one typed declaration, read from TOML, then environment, then flags.

Every limit has a name and a comment saying why it has the value it has. A file that names an
unknown key or a value of the wrong type is refused at start with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyis_common.protocol import LEVEL_RULES

ENV_PREFIX = "PYIS_"


@dataclass(frozen=True)
class ProxyConfig:
    frontend: str = "tcp://127.0.0.1:60202"  # clients (is.js, is-cli) connect here
    backend: str = "tcp://127.0.0.1:60203"  # procmgrs connect here
    # pause/resume/terminate/statistics; "" -> off; only ipc:// in a 0700 directory of ours
    # (any local user reaches a tcp port), e.g. "ipc:///run/is-proxy/control" under systemd
    control: str = ""
    max_message_bytes: int = 1 << 20  # per frame (MAXMSGSIZE): over it libzmq drops the peer
    max_request_frames: int = 4  # [""][JSON] from a REQ, with room for two relaying hops
    max_request_bytes: int = 1 << 16  # in all frames of one request; the procmgr's cap
    hwm: int = 1000  # per-peer queue bound: memory stays bounded under a flood
    curve_secret: str = ""  # the proxy's CURVE certificate (.key_secret); "" -> plaintext
    curve_clients: str = ""  # directory of the procmgrs' public certificates allowed in


@dataclass(frozen=True)
class ProcmgrConfig:
    proxies: tuple[str, ...] = ("tcp://127.0.0.1:60203",)
    curve_secret: str = ""  # our CURVE certificate (.key_secret) for the proxy link
    proxy_curve_public: str = ""  # the proxy's public certificate, pinned; "" -> plaintext
    auth_redis: str = "redis://127.0.0.1:6379/0"  # the web host's Redis holding <pid> hashes
    compat_enabled: bool = True  # accept the C server's isAuth/isAuthSig (RSA) objects
    compat_pubkey: str = "/etc/pyis/isauth-pubkey.pem"  # verifies isAuthSig
    compat_max_age_s: float = 86400.0  # an isAuth without exp: this long after iat; 0 -> forever
    trust_root: str = ""  # the offline CA's root certificate; "" -> no JWT access objects
    trust_certs: str = "/etc/pyis/signing"  # auth servers' signing certificates (PEM files)
    trust_crl: str = "/etc/pyis/crl.pem"  # the root's CRL; "" -> no revocation checks
    audience: str = "pyis"  # JWT aud: the image-host group these servers belong to
    clock_leeway_s: float = 30.0  # tolerated clock skew for exp/nbf
    min_uid: int = 1000  # users below this (root, system accounts) are never served
    require_esaf: bool = True  # esaf missing or 0 -> forbidden (the C HEAD ran root workers)
    esaf_group: str = "e{esaf}"  # the ESAF's Unix group (and passwd account for its home)
    esaf_home: str = ""  # "" -> home of the passwd account named like the group
    dev_user: str = ""  # --dev only: serve every access object as this local user
    session_timeout_s: float = 0.5  # a whole session lookup (connect, reply); >1 ms is trouble
    session_max_field_bytes: int = 32 << 10  # an access object is < 2 KiB; larger is refused unread
    # reuse a session hash read this recently (0: read it for every request); a logout or a
    # revocation then takes up to this long to be seen (procmgr/sessionmemo.py)
    session_memo_s: float = 0.0
    request_timeout_s: float = 20.0  # longer than a cold Eiger 16M read, shorter than patience
    max_in_flight: int = 256  # beyond it answer busy: rather than queue without bound
    # per (user, ESAF) worker: 8x its threads keeps a browser's prefetch queue full, and one
    # session holds at most 1/8 of max_in_flight; beyond it that session alone gets busy:
    session_max_in_flight: int = 32
    session_max_index: int = 2  # index jobs run for minutes; they count apart from the above
    max_message_bytes: int = 1 << 16  # requests are tiny; bigger frames are refused, and one
    # over it drops the proxy's connection (MAXMSGSIZE, set at start): the proxy never sends one
    worker_threads: int = 4  # per (user, ESAF) worker: concurrency without an army of threads
    worker_start_timeout_s: float = 10.0  # fork + privilege drop takes milliseconds
    worker_backoff_s: float = 5.0  # after a worker failed to start, refuse quickly this long
    worker_idle_s: float = 900.0  # stop a worker nobody used for this long
    worker_memory_bytes: int = 0  # RLIMIT_AS per worker; 0 -> a quarter of RAM, >= 2 GiB
    max_workers: int = 256  # workers (user, ESAF) at once; beyond it a new session gets busy:
    worker_max_crashes: int = 3  # more crashes than this within a minute -> back off
    worker_max_message_bytes: int = 128 << 20  # one reply: a 10000 x 10000 JPEG fits
    worker_message_timeout_s: float = 5.0  # a message is sent in ms; half of one held longer
    cache_redis: str = ""  # the image host's Redis for tier 2 (no credentials); "" -> LRU only
    cache_redis_user: str = "pyis-admin"  # our admin user there; never "default" (we turn it off)
    cache_redis_password_file: str = "/etc/pyis/cache-redis.pass"  # its password; mode 0600, ours
    cache_ttl_s: int = 600  # a beamtime's images are looked at within minutes of being taken
    worker_cache_bytes: int = 0  # stage-1 LRU per worker; 0 -> 1/32 of RAM, at most 1 GiB
    index_command: tuple[str, ...] = ()  # the indexer's argv (never a shell); () -> no index
    index_timeout_s: float = 900.0  # indexing takes minutes; jpeg requests keep their deadline
    metrics_address: str = ""  # host:port of the Prometheus endpoint; "" -> none
    jpeg_quality: int = 90  # libjpeg-turbo at 90 is visually lossless for diffraction frames
    levels: str = "auto"  # automatic levels: "auto" (spots dark, README) or "c" (mean +- stddev)


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:8080"  # host:port; TLS terminates in front of it (nginx, caddy)
    endpoint: str = "tcp://127.0.0.1:60202"  # the is-proxy frontend, as is.js connects to it
    login_redis: str = ""  # where the auth server leaves one-time login codes; "" -> no /login
    secure_cookie: bool = True  # the session cookie only over TLS; is-dev (plain loopback) off
    cookie_name: str = "pyis_session"
    request_timeout_s: float = 25.0  # longer than the procmgr's own deadline (20 s)
    max_in_flight: int = 64  # requests waiting on the image server; beyond it answer busy
    session_rate: float = 100.0  # requests per second per session (bursts of 2 s allowed)
    max_query_bytes: int = 6000  # a query is a file name and a few numbers (fn <= 4096)
    follow_streams_per_session: int = 8  # /api/follow streams (tabs) of one session
    follow_max_streams: int = 256  # /api/follow streams overall (each feed: one long-poll)


@dataclass(frozen=True)
class Config:
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    procmgr: ProcmgrConfig = field(default_factory=ProcmgrConfig)
    web: WebConfig = field(default_factory=WebConfig)


SECTIONS: dict[str, type] = {"proxy": ProxyConfig, "procmgr": ProcmgrConfig, "web": WebConfig}


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


def _coerce(section: str, name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    want = origin or hint
    if want is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{section}.{name} must be a list of strings")
        return tuple(value)
    if isinstance(value, str) and want is not str:
        try:
            value = {"true": True, "false": False}[value.lower()] if want is bool else want(value)
        except (KeyError, ValueError):
            raise ConfigError(f"{section}.{name} must be a {want.__name__}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ConfigError(f"{section}.{name} must be a {want.__name__}")
    return value


def _section(cls: type, section: str, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown key {section}.{sorted(unknown)[0]}")
    return cls(**{k: _coerce(section, k, hints[k], v) for k, v in values.items()})


def load(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: typing.Mapping[str, str] = os.environ,
) -> Config:
    """File, then ``PYIS_<SECTION>_<KEY>`` environment variables, then ``overrides`` (flags)."""
    data: dict[str, dict[str, Any]] = {"proxy": {}, "procmgr": {}, "web": {}}
    if path:
        try:
            with Path(path).open("rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        for key, value in raw.items():
            if key not in data or not isinstance(value, dict):
                raise ConfigError(f"unknown section [{key}]")
            data[key].update(value)
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            env = f"{ENV_PREFIX}{sec}_{f.name}".upper()
            if env in environ:
                data[sec][f.name] = environ[env]
    for sec, values in (overrides or {}).items():
        data[sec].update({k: v for k, v in values.items() if v is not None})
    config = Config(**{sec: _section(cls, sec, data[sec]) for sec, cls in SECTIONS.items()})
    if config.procmgr.levels not in LEVEL_RULES:
        raise ConfigError(f"procmgr.levels must be one of {', '.join(LEVEL_RULES)}")
    return config
