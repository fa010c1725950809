"""The base of every method config, the registry of methods, and the tagged, versioned dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from quantscope.config.fields import check_choices
from quantscope.config.selector import NodeSelector
from quantscope.errors import ConfigError

SCHEMA_VERSION = 1

_CONFIG_TYPES: dict[str, type[MethodConfig]] = {}


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of every method config: a registered ``method`` tag and node exclusion.

    Subclasses declare their fields with :func:`quantscope.config.fields.setting` (help,
    choices, command-line name); the base checks every declared choice on construction.
    """

    method: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    exclude: NodeSelector = dataclasses.field(default_factory=NodeSelector, metadata={"help": "Nodes to leave in float."})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.method:
            _CONFIG_TYPES[cls.method] = cls

    def __post_init__(self) -> None:
        if isinstance(self.exclude, Mapping):
            object.__setattr__(self, "exclude", NodeSelector.from_dict(self.exclude))
        if not isinstance(self.exclude, NodeSelector):
            raise ConfigError("exclude must be a NodeSelector")
        check_choices(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, NodeSelector) else value
        return out


def _unknown_method(method: object) -> ConfigError:
    return ConfigError(f"unknown method {method!r}; choose one of: {', '.join(sorted(_CONFIG_TYPES))}")


def config_from_dict(d: Mapping[str, Any]) -> MethodConfig:
    """Rebuild a config from :meth:`MethodConfig.to_dict` output (or a CLI config file)."""
    d = dict(d)
    method = d.pop("method", None)
    version = d.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(f"config schema version {version} is not supported (this quantscope reads {SCHEMA_VERSION})")
    cls = _CONFIG_TYPES.get(str(method))
    if cls is None:
        raise _unknown_method(method)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown option(s) for {method}: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
    return cls(**d)


def method_names() -> list[str]:
    """Every registered method, sorted."""
    return sorted(_CONFIG_TYPES)


def config_classes() -> dict[str, type[MethodConfig]]:
    """Every registered method and its config class, in registration order."""
    return dict(_CONFIG_TYPES)


def config_class(method: str) -> type[MethodConfig]:
    """The config class of ``method``; :class:`ConfigError` naming the choices if unknown."""
    try:
        return _CONFIG_TYPES[method]
    except KeyError:
        raise _unknown_method(method) from None
