"""Configuration: every key declared once, read from TOML, then environment, then flags.

Each key says why it has its default, its range, its flag, what a reload does with it and
whether workers get it (pyis_common/settings.py); docs/config.md is generated from these
declarations (``python -m pyis_common.configdoc``). A file that names an unknown key or a value
of the wrong type or out of range is refused at start with a message naming the key.
"""

from __future__ import annotations

import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyis_common.protocol import LEVEL_RULES
from pyis_common.settings import NEW_WORKERS, RELOAD, ConfigError, build, setting, settings_of

__all__ = ["Config", "ConfigError", "ProcmgrConfig", "ProxyConfig", "WebConfig", "load"]

ENV_PREFIX = "PYIS_"
MiB, GiB = 1 << 20, 1 << 30


@dataclass(frozen=True)
class ProxyConfig:
    frontend: str = setting("tcp://127.0.0.1:60202", "clients (is.js, is-cli) connect here")
    backend: str = setting("tcp://127.0.0.1:60203", "procmgrs connect here")
    control: str = setting(
        "",
        "pause/resume/terminate/statistics; only ipc:// in a 0700 directory of ours (any local "
        'user reaches a tcp port), e.g. "ipc:///run/is-proxy/control"; "" -> off',
    )
    max_message_bytes: int = setting(
        1 << 20, "per frame (MAXMSGSIZE): over it libzmq drops the peer", low=1024
    )
    max_request_frames: int = setting(
        4, "[''][JSON] from a REQ, with room for two relaying hops", low=2, high=16
    )
    max_request_bytes: int = setting(
        1 << 16, "in all frames of one request; the procmgr's cap", low=1024
    )
    hwm: int = setting(1000, "per-peer queue bound: memory stays bounded under a flood", low=1)
    curve_secret: str = setting("", 'the proxy\'s CURVE certificate (.key_secret); "" -> plaintext')
    curve_clients: str = setting("", "directory of the procmgrs' public certificates allowed in")
    metrics_address: str = setting(
        "",
        'host:port of the Prometheus endpoint: per image host credit, heartbeat age, in flight; "" '
        "-> none",
        flag="--metrics",
    )


@dataclass(frozen=True)
class ProcmgrConfig:
    proxies: tuple[str, ...] = setting(
        ("tcp://127.0.0.1:60203",), "the proxies' backends we connect to", flag="--proxy"
    )
    curve_secret: str = setting("", "our CURVE certificate (.key_secret) for the proxy link")
    proxy_curve_public: str = setting(
        "", 'the proxy\'s public certificate, pinned; "" -> plaintext'
    )
    auth_redis: str = setting(
        "redis://127.0.0.1:6379/0", "the web host's Redis holding <pid> session hashes"
    )
    compat_enabled: bool = setting(
        True, "accept the C server's isAuth/isAuthSig (RSA) objects when compat_pubkey is set"
    )
    compat_pubkey: str = setting("", 'the PEM that verifies isAuthSig; "" -> no isAuth objects')
    compat_max_age_s: float = setting(
        86400.0, "an isAuth without exp: this long after iat; 0 -> forever", reload=RELOAD, low=0
    )
    trust_root: str = setting("", 'the offline CA\'s root certificate; "" -> no JWT access objects')
    trust_certs: str = setting("/etc/pyis/signing", "auth servers' signing certificates (PEM)")
    trust_crl: str = setting("/etc/pyis/crl.pem", 'the root\'s CRL; "" -> no revocation checks')
    audience: str = setting(
        "pyis", "JWT aud: the image-host group these servers belong to", reload=RELOAD
    )
    clock_leeway_s: float = setting(
        30.0, "tolerated clock skew for exp/nbf", reload=RELOAD, low=0, high=600
    )
    min_uid: int = setting(
        1000, "users below this (root, system accounts) are never served", reload=RELOAD, low=1
    )
    require_esaf: bool = setting(
        True, "esaf missing or 0 -> forbidden (the C HEAD ran root workers)", reload=RELOAD
    )
    esaf_group: str = setting(
        "e{esaf}", "the ESAF's Unix group (and passwd account for its home)", reload=RELOAD
    )
    esaf_home: str = setting(
        "", '"" -> home of the passwd account named like the group', reload=RELOAD
    )
    dev_user: str = setting("", "--dev only: serve every access object as this local user")
    session_timeout_s: float = setting(
        0.5, "a whole session lookup (connect, reply); >1 ms is trouble", low=0.01, high=10
    )
    session_max_field_bytes: int = setting(
        32 << 10, "an access object is < 2 KiB; larger is refused unread", low=4096
    )
    session_memo_s: float = setting(
        2.0,
        "reuse a session hash read this recently, only while the session Redis's keyspace "
        "notifications are watched (notify-keyspace-events Kghxe): a change to the hash drops "
        "it at once; this bounds a lost notification (0: read it for every request)",
        reload=RELOAD,
        low=0,
        high=60,
    )
    request_timeout_s: float = setting(
        20.0,
        "longer than a cold Eiger 16M read, shorter than patience",
        reload=RELOAD,
        low=1,
        high=600,
    )
    max_in_flight: int = setting(
        256, "beyond it answer busy: rather than queue without bound", reload=RELOAD, low=1
    )
    session_max_in_flight: int = setting(
        32,
        "per (user, ESAF) worker: 8x its threads keeps a browser's prefetch queue full, and one "
        "session holds at most 1/8 of max_in_flight; beyond it that session alone gets busy:",
        reload=RELOAD,
        low=1,
    )
    session_max_index: int = setting(
        2, "index jobs run for minutes; they count apart from the above", reload=RELOAD, low=0
    )
    max_message_bytes: int = setting(
        1 << 16,
        "requests are tiny; bigger frames are refused, and one over the start value drops the "
        "proxy's connection (MAXMSGSIZE is set at start): the proxy never sends one",
        reload=RELOAD,
        low=64,
    )
    worker_threads: int = setting(
        4,
        "per (user, ESAF) worker: concurrency without an army of threads",
        reload=NEW_WORKERS,
        workers=True,
        low=1,
        high=32,
    )
    worker_spares: int = setting(
        1, "workers forked ahead, awaiting a session: it skips the fork; 0 -> fork on demand",
        low=0, high=8,
    )  # fmt: skip
    worker_start_timeout_s: float = setting(
        10.0, "fork + privilege drop takes milliseconds", reload=RELOAD, low=0.1
    )
    worker_backoff_s: float = setting(
        5.0, "after a worker failed to start, refuse quickly this long", reload=RELOAD, low=0
    )
    worker_idle_s: float = setting(
        900.0, "stop a worker nobody used for this long", reload=RELOAD, low=1
    )
    worker_memory_bytes: int = setting(
        0, "RLIMIT_AS per worker; 0 -> a quarter of RAM, >= 2 GiB", reload=NEW_WORKERS, low=0
    )
    max_workers: int = setting(
        256,
        "workers (user, ESAF) at once; beyond it a new session gets busy:",
        reload=RELOAD,
        low=1,
    )
    worker_max_crashes: int = setting(
        3, "more crashes than this within a minute -> back off", reload=RELOAD, low=0
    )
    worker_max_message_bytes: int = setting(
        128 * MiB, "one reply: a 10000 x 10000 JPEG fits", reload=NEW_WORKERS, low=MiB
    )
    worker_message_timeout_s: float = setting(
        5.0, "a message is sent in ms; half of one held longer", reload=RELOAD, low=0.1
    )
    cache_redis: str = setting(
        "", 'the image host\'s Redis for tier 2 (no credentials); "" -> LRU only'
    )
    cache_redis_user: str = setting(
        "pyis-admin", 'our admin user there; never "default" (we turn it off)'
    )
    cache_redis_password_file: str = setting(
        "/etc/pyis/cache-redis.pass", "its password; mode 0600, ours"
    )
    cache_ttl_s: int = setting(
        600,
        "a beamtime's images are looked at within minutes of being taken",
        reload=RELOAD,
        workers=True,
        low=1,
    )
    worker_cache_bytes: int = setting(
        0,
        "stage-1 LRU per worker; 0 -> 1/32 of RAM, at most 1 GiB",
        reload=NEW_WORKERS,
        workers=True,
        low=0,
    )
    worker_headroom_bytes: int = setting(
        64 << 20,
        "free heap a worker faults in while idle (worker/headroom.py): a next frame read into"
        " fresh pages took 3-4x as long; 0 -> none (and no big frame made ahead); < 128 MiB",
        reload=NEW_WORKERS,
        workers=True,
        low=0,
        high=96 << 20,
    )
    index_command: tuple[str, ...] = setting(
        (), "the indexer's argv (never a shell); () -> no index", reload=RELOAD, workers=True
    )
    index_timeout_s: float = setting(
        900.0,
        "indexing takes minutes; jpeg requests keep their deadline",
        reload=RELOAD,
        workers=True,
        low=1,
    )
    metrics_address: str = setting(
        "", 'host:port of the Prometheus endpoint; "" -> none', flag="--metrics"
    )
    jpeg_quality: int = setting(
        90,
        "libjpeg-turbo at 90 is visually lossless for diffraction frames",
        reload=RELOAD,
        workers=True,
        low=1,
        high=100,
    )
    levels: str = setting(
        "auto",
        'automatic levels: "auto" (spots dark, README) or "c" (mean +- stddev)',
        reload=RELOAD,
        workers=True,
        choices=LEVEL_RULES,
    )


@dataclass(frozen=True)
class WebConfig:
    listen: str = setting("127.0.0.1:8080", "host:port; TLS terminates in front (nginx, caddy)")
    endpoint: str = setting("tcp://127.0.0.1:60202", "the is-proxy frontend, as is.js uses it")
    login_redis: str = setting(
        "", 'where the auth server leaves one-time login codes; "" -> no /login'
    )
    secure_cookie: bool = setting(
        True,
        "the session cookie only over TLS; is-dev (plain loopback) turns it off",
        flag="--insecure-cookie",
    )
    cookie_name: str = setting("pyis_session", "the session cookie's name")
    request_timeout_s: float = setting(
        25.0, "longer than the procmgr's own deadline (20 s)", low=1, high=600
    )
    max_in_flight: int = setting(
        64, "requests waiting on the image server; beyond it answer busy", low=1
    )
    session_rate: float = setting(
        100.0, "requests per second per session (bursts of 2 s allowed)", low=1
    )
    max_query_bytes: int = setting(
        6000, "a query is a file name and a few numbers (fn <= 4096)", low=4200
    )
    follow_streams_per_session: int = setting(8, "/api/follow streams (tabs) of one session", low=1)
    follow_max_streams: int = setting(
        256, "/api/follow streams overall (each feed: one long-poll)", low=1
    )


@dataclass(frozen=True)
class Config:
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    procmgr: ProcmgrConfig = field(default_factory=ProcmgrConfig)
    web: WebConfig = field(default_factory=WebConfig)


SECTIONS: dict[str, type] = {"proxy": ProxyConfig, "procmgr": ProcmgrConfig, "web": WebConfig}


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
        for s in settings_of(cls, sec):
            if s.env in environ:
                data[sec][s.name] = environ[s.env]
    for sec, values in (overrides or {}).items():
        data[sec].update({k: v for k, v in values.items() if v is not None})
    return Config(**{sec: build(cls, sec, data[sec]) for sec, cls in SECTIONS.items()})
