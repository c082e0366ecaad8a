"""One declaration per setting, gunicorn's ``Setting`` as the model.

A key is a field of a config dataclass (pyis_common/config.py) declared with :func:`setting`:
its type is the annotation; the declaration gives its default, its one-line doc, its range or
choices, its flag, what a reload (SIGHUP) does with it, and whether workers get it. Validation,
the command-line flags (pyis_common/configflags.py), the procmgr's restart-bound keys, the
worker's settings and docs/config.md (pyis_common/configdoc.py) are all read from it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any

RESTART = "restart"  # bound at start (a socket, a key, a connection): a reload keeps it, says so
RELOAD = "reload"  # a reload applies it at once, to the procmgr and its running workers
NEW_WORKERS = "new workers"  # a reload applies it to workers started from then on
RELOAD_KINDS = (RESTART, RELOAD, NEW_WORKERS)


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class Spec:
    """What :func:`setting` declares beside the type and the default."""

    doc: str
    reload: str = RESTART
    workers: bool = False  # sent to each worker (its settings object is built from these)
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()
    flag: str = ""  # "" -> --the-key-with-dashes; a bool's flag sets the opposite of its default

    def __post_init__(self) -> None:
        if self.reload not in RELOAD_KINDS:
            raise ValueError(f"reload must be one of {RELOAD_KINDS}, not {self.reload!r}")


def setting(default: Any, doc: str, **spec: Any) -> Any:
    """A config field: ``name: type = setting(default, "why it has this value", ...)``."""
    return dataclasses.field(default=default, metadata={"spec": Spec(doc, **spec)})


@dataclass(frozen=True)
class Setting:
    """One declared key, as the flags, the checks and the reference see it."""

    section: str
    name: str
    type: Any  # the annotation: int, float, str, bool or tuple[str, ...]
    default: Any
    spec: Spec

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"PYIS_{self.section}_{self.name}".upper()

    @property
    def kind(self) -> type:
        return typing.get_origin(self.type) or self.type

    @property
    def flag(self) -> str:
        if self.spec.flag:
            return self.spec.flag
        dashed = self.name.replace("_", "-")
        if self.kind is bool:
            return f"--no-{dashed}" if self.default else f"--{dashed}"
        return f"--{dashed}"

    def check(self, value: Any) -> Any:
        """``value`` (from TOML, the environment or a flag) as this key's type, in range."""
        value = _coerce(self, value)
        spec = self.spec
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{self.key} must be one of {', '.join(spec.choices)}")
        if self.kind in (int, float):
            if spec.low is not None and value < spec.low:
                raise ConfigError(f"{self.key} must be at least {number(spec.low)}, not {value}")
            if spec.high is not None and value > spec.high:
                raise ConfigError(f"{self.key} must be at most {number(spec.high)}, not {value}")
        return value


def settings_of(cls: type, section: str) -> list[Setting]:
    """The declared keys of a config dataclass, in declaration order."""
    return list(_declared(cls, section))


@functools.cache
def _declared(cls: type, section: str) -> tuple[Setting, ...]:
    """Once per class: ``get_type_hints`` evaluates every annotation string (0.7 ms for the
    procmgr's keys), and a new worker builds its settings twice before its first job."""
    hints = typing.get_type_hints(cls)
    return tuple(
        Setting(section, f.name, hints[f.name], f.default, f.metadata["spec"])
        for f in dataclasses.fields(cls)
    )


def keys_reloaded_as(cls: type, section: str, reload: str) -> tuple[str, ...]:
    """The keys of ``cls`` whose declaration says ``reload`` (e.g. the restart-bound ones)."""
    return tuple(s.name for s in settings_of(cls, section) if s.spec.reload == reload)


def build(cls: type, section: str, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` from ``values``, each checked; an unknown key is refused."""
    declared = {s.name: s for s in settings_of(cls, section)}
    unknown = set(values) - set(declared)
    if unknown:
        raise ConfigError(f"unknown key {section}.{sorted(unknown)[0]}")
    return cls(**{k: declared[k].check(v) for k, v in values.items()})


def _coerce(s: Setting, value: Any) -> Any:
    want = s.kind
    if want is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{s.key} must be a list of strings")
        return tuple(value)
    if isinstance(value, str) and want is not str:
        try:
            value = {"true": True, "false": False}[value.lower()] if want is bool else want(value)
        except (KeyError, ValueError):
            raise ConfigError(f"{s.key} must be a {want.__name__}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{s.key} must be a finite number")
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ConfigError(f"{s.key} must be a {want.__name__}")
    return value


def number(bound: float) -> str:
    """A bound as people write it: 1024, not 1024.0."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)
