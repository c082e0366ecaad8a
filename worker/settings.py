"""The worker's settings: built from the procmgr's declaration, applied where they are used.

The spawn order carries the worker keys (pyis_common/workersettings.py) for what is fixed at
start (threads, the LRU's size); each config message carries them again with the cache
credential, and those a reload may change (quality, levels, the indexer, the cache TTL) are
applied to the running pipeline at once.
"""

from __future__ import annotations

import logging
from typing import Any

from pyis_common.config import ProcmgrConfig
from pyis_common.settings import ConfigError
from pyis_common.workersettings import worker_settings
from worker import jobs
from worker.index import IndexSettings
from worker.tier2 import RedisTier

log = logging.getLogger("worker")


def at_start(spec: dict[str, Any]) -> ProcmgrConfig:
    """The settings in the spawn order; ConfigError if the procmgr sent a bad one."""
    return worker_settings(spec.get("settings", {}))


class Settings:
    """Applies each config message to ``pipeline`` (one per worker, on its channel thread)."""

    def __init__(self, pipeline: jobs.Pipeline, current: ProcmgrConfig) -> None:
        self.pipeline = pipeline
        self.current = current
        self.credential: dict[str, Any] | None = None

    def apply(self, message: dict[str, Any]) -> None:
        try:
            current = worker_settings(message.get("settings", {}))
        except ConfigError as exc:  # the procmgr's bug: keep what we have, say why
            log.error("config message refused: %s", exc)
            return
        self.current = current
        self.pipeline.quality = current.jpeg_quality
        self.pipeline.level_rule = current.levels
        self.pipeline.index_settings = IndexSettings(
            command=current.index_command, timeout_s=current.index_timeout_s
        )
        self._cache(message.get("cache"), current.cache_ttl_s)

    def _cache(self, credential: Any, ttl_s: int) -> None:
        """The shared cache tier, if the procmgr gave us a credential for it; the same one
        again keeps its connections and takes the new TTL."""
        if not isinstance(credential, dict) or not isinstance(credential.get("url"), str):
            return
        tier = self.pipeline.tier2
        if tier is not None and credential == self.credential:
            tier.ttl_s = ttl_s
            return
        self.pipeline.tier2 = RedisTier(credential["url"], str(credential.get("prefix", "")), ttl_s)
        self.credential = credential
