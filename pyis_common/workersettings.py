"""The settings a worker gets: the keys declared ``workers=True`` in pyis_common/config.py.

The procmgr sends them (in the zygote's spawn order and again in each config message); the
worker checks them as the procmgr checks its file, and every key it was not sent keeps its
declared default, so the two sides can never disagree on one (they did: index timeout 600 in
the worker, 900 in the procmgr).
"""

from __future__ import annotations

from typing import Any

from pyis_common.config import ProcmgrConfig
from pyis_common.settings import ConfigError, build, settings_of

WORKER_KEYS = tuple(s.name for s in settings_of(ProcmgrConfig, "procmgr") if s.spec.workers)


def for_workers(cfg: ProcmgrConfig) -> dict[str, Any]:
    """What the procmgr sends: each worker key's value."""
    return {
        name: list(v) if isinstance(v := getattr(cfg, name), tuple) else v for name in WORKER_KEYS
    }


def worker_settings(values: Any) -> ProcmgrConfig:
    """The worker's settings object, from what the procmgr sent (ConfigError if it is wrong)."""
    if not isinstance(values, dict):
        raise ConfigError("the worker settings are not a table")
    extra = set(values) - set(WORKER_KEYS)
    if extra:
        raise ConfigError(f"procmgr.{sorted(extra)[0]} is not a worker setting")
    return build(ProcmgrConfig, "procmgr", values)
