"""The client side of the wire: settings, a Lazy Pirate request, the progress feed of long jobs.

Settings (:func:`resolve`): flags > ``PYIS_*`` environment > a TOML file > defaults, so a
staff member's ``~/.config/pyis/cli.toml`` holds the usual endpoint and a script overrides
one thing with a flag or a variable.

Why a Lazy Pirate (zguide ``lpclient.py``): a REQ socket whose request or reply was lost (the
proxy restarted, a procmgr vanished) waits forever and refuses a second send. So each try uses a
fresh socket, polls with a timeout, and on silence closes it with LINGER 0 (nothing queued may
keep the process alive) before resending on a new one; after the last try we give up with a
sentence that says where and how long we waited.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq

from pyis_common.protocol import MAX_REPLY_BYTES

DEFAULT_ENDPOINT = "tcp://127.0.0.1:60202"
DEFAULT_TIMEOUT_S = 5.0  # per try: a cold worker start plus a cold read fit in well under this
DEFAULT_RETRIES = 3
ENV = {
    "endpoint": "PYIS_ENDPOINT",
    "pid": "PYIS_PID",
    "auth": "PYIS_AUTH",
    "esaf": "PYIS_ESAF",
    "redis": "PYIS_REDIS",
}
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "endpoint": (str,),
    "pid": (str,),
    "auth": (str,),
    "esaf": (int,),
    "timeout": (int, float),
    "retries": (int,),
    "redis": (str,),
}
PROGRESS_POLL_S = 0.2  # how often the progress thread looks at its stop flag (and ticks)
DONE_GRACE_S = 0.5  # the procmgr publishes "done" just before it replies: let it arrive
REDIS_TIMEOUT_S = 2.0  # progress is a nicety: a slow or absent Redis must not delay the job


class ConfigError(Exception):
    """A bad environment value or config file; the sentence names it (never its secret)."""


class NoReply(Exception):
    """Every try stayed silent; ``str()`` names the endpoint, the tries and the timeout."""


class ProgressUnavailable(Exception):
    """The progress Redis could not be reached or the URL is wrong; the job goes on without."""


@dataclass(frozen=True)
class Settings:
    """Where to send and as whom, after flags > environment > file > defaults."""

    endpoint: str = DEFAULT_ENDPOINT
    pid: str | None = None
    auth: str | None = field(default=None, repr=False)
    esaf: int | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    redis: str | None = None


def config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/pyis/cli.toml``, i.e. ``~/.config/pyis/cli.toml`` by default."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pyis" / "cli.toml"


def load_config(path: Path, explicit: bool) -> dict[str, Any]:
    """The file's keys, type-checked; a missing default file is fine, a missing --config not."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} not found") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    for key, value in data.items():
        types = CONFIG_TYPES.get(key)
        if types is None:
            raise ConfigError(f"{path}: unknown key '{key}' (known: {', '.join(CONFIG_TYPES)})")
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{path}: '{key}' must be {' or '.join(t.__name__ for t in types)}")
    if "auth" in data and os.stat(path).st_mode & 0o077:
        print(f"is-cli: warning: {path} holds a token and others may read it", file=sys.stderr)
    return data


def resolve(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file: Mapping[str, Any],
    timeout_floor: float = 0.0,
) -> Settings:
    """Merge the sources; ``flags`` holds only what was given. ``timeout_floor`` raises a
    timeout that came from the file or the default (not a flag): a long job's own minimum."""
    merged: dict[str, Any] = dict(file)
    for key, var in ENV.items():
        if env.get(var):
            merged[key] = _env_value(key, var, env[var])
    merged.update({k: v for k, v in flags.items() if k in CONFIG_TYPES and v is not None})
    if "timeout" not in flags:
        merged["timeout"] = max(float(merged.get("timeout", DEFAULT_TIMEOUT_S)), timeout_floor)
    settings = Settings(**merged)
    if not settings.timeout > 0 or not math.isfinite(settings.timeout):
        raise ConfigError("the timeout must be a positive number of seconds")
    if settings.retries < 1:
        raise ConfigError("retries must be at least 1")
    return settings


def _env_value(key: str, var: str, value: str) -> str | int:
    if key != "esaf":
        return value
    if not value.isdigit():
        raise ConfigError(f"{var} must be an integer, not {value!r}")
    return int(value)


def request(
    endpoint: str,
    job: dict[str, Any],
    timeout_s: float = 5.0,
    retries: int = 3,
    on_retry: Callable[[int, int], None] | None = None,
) -> list[bytes]:
    """Send ``job`` up to ``retries`` times; the reply frames, or raise :class:`NoReply`.

    ``on_retry(try_number, tries)`` is called before each resend so a user sees why it waits.
    A resend carries the same job (and tag): a server that already answered once just answers
    again, which is harmless for these read-only jobs.
    """
    ctx: zmq.Context = zmq.Context.instance()
    body = json.dumps(job).encode()
    tries = max(1, retries)
    for attempt in range(1, tries + 1):
        reply = _try_once(ctx, endpoint, body, timeout_s)
        if reply is not None:
            return reply
        if attempt < tries and on_retry is not None:
            on_retry(attempt, tries)
    raise NoReply(
        f"no reply from {endpoint} after {tries} {'try' if tries == 1 else 'tries'} "
        f"of {timeout_s:g} s each"
    )


def _try_once(ctx: zmq.Context, endpoint: str, body: bytes, timeout_s: float) -> list[bytes] | None:
    """One try on a fresh REQ socket; None on silence. Raises zmq.ZMQError on a bad endpoint."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
    try:
        sock.connect(endpoint)
        timeout_ms = max(1, int(timeout_s * 1000))
        if not sock.poll(timeout_ms, zmq.POLLOUT):
            return None
        sock.send(body, zmq.NOBLOCK)
        if sock.poll(timeout_ms, zmq.POLLIN):
            return sock.recv_multipart()
        return None
    finally:
        sock.close(linger=0)


class ProgressFeed:
    """Progress messages of one job, delivered to ``show`` on a thread.

    Subscribed (in :meth:`start`) before the request is sent, so no early line is lost; read on
    a thread so the Lazy Pirate loop stays the one place that waits for the reply. ``show``
    gets each message as a dict, or None every ``PROGRESS_POLL_S`` as a clock tick.
    Best-effort: a Redis failure after the start ends the feed quietly, never the job.
    """

    def __init__(self, url: str, channel: str, show: Callable[[dict[str, Any] | None], None]):
        self.url, self.channel, self.show = url, channel, show
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect and subscribe, or raise :class:`ProgressUnavailable`."""
        import redis  # only index jobs with a progress Redis need it

        try:
            # held on self: a collected client closes its pool, the subscription's connection too
            self._redis = redis.Redis.from_url(
                self.url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
            )
            self._pubsub = self._redis.pubsub()
            self._pubsub.subscribe(self.channel)
            self._await_subscribed()
        except (redis.exceptions.RedisError, ValueError) as exc:  # ValueError: a bad URL
            raise ProgressUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def _await_subscribed(self) -> None:
        """Until Redis confirms: SUBSCRIBE is only sent, and a publish that Redis handles before
        it would be lost (the job's first lines come quickly)."""
        deadline = time.monotonic() + REDIS_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message and message["type"] == "subscribe":
                return
        raise ProgressUnavailable(f"Redis did not confirm the subscription in {REDIS_TIMEOUT_S} s")

    def _run(self) -> None:
        import redis

        try:
            while not self._stop.is_set():
                message = self._pubsub.get_message(timeout=PROGRESS_POLL_S)
                is_data = message is not None and message["type"] == "message"
                data = _decode(message["data"]) if is_data else None
                self.show(data)
                if data is not None and data.get("done") is True:
                    return
        except (redis.exceptions.RedisError, OSError) as exc:
            self.show({"progress": f"(no more progress: {type(exc).__name__})", "done": True})

    def stop(self) -> None:
        """Stop the thread and drop the subscription; safe to call more than once.

        The last lines and "done" were published before the reply was sent, but may still be
        on their way: the thread gets ``DONE_GRACE_S`` to show them before it is stopped."""
        if self._thread is not None:
            self._thread.join(DONE_GRACE_S)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(REDIS_TIMEOUT_S + PROGRESS_POLL_S)
            self._thread = None
            self._pubsub.close()  # disconnects; redis-py ignores a connection already broken
            self._redis.close()


def url_password(url: str | None) -> str:
    """The password in a Redis URL, so that messages can hide it ('' if none)."""
    return (urlsplit(url).password or "") if url else ""


def _decode(data: Any) -> dict[str, Any] | None:
    """A published message as a dict; anything else on the channel is ignored."""
    try:
        value = json.loads(data)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
