"""A method config composed from a config file, command-line options and ``KEY=VALUE`` settings.

The rule, shared by every front end: the config file is the base; options and settings
override its fields; a method named on the command line must agree with the file's
``method`` (they select different config classes, so a disagreement is an error, never a
silent choice); an option and a setting must not set the same field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from quantscope.config.base import MethodConfig, config_class, config_from_dict
from quantscope.config.fields import CliSetting, overrides
from quantscope.config.toml import config_to_toml, read_config_text
from quantscope.errors import ConfigError

DEFAULT_METHOD = "static-int8"

__all__ = [
    "DEFAULT_METHOD",
    "choose_method",
    "compose_config",
    "config_from_options",
    "config_to_toml",
    "parse_settings",
    "read_config_file",
]


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config in ``path``: TOML for a ``.toml`` file, else JSON (the schema of a sidecar's
    ``"config"``), checked for encoding, size and nesting but not for fields.

    Raises ConfigError, naming the file and the problem: unreadable, not UTF-8, not valid
    TOML/JSON, nested too deeply, or not a table/object.
    """
    return read_config_text(path)


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``["min_size=0", "format=qdq"]`` → ``{"min_size": 0, "format": "qdq"}`` (values as JSON, else text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def choose_method(flag: str | None, file: Mapping[str, Any] | None, file_name: str = "the config file") -> str:
    """The method to use: the flag's, the file's, or the default; an error when flag and file disagree."""
    in_file = None if file is None else file.get("method")
    if flag is not None and in_file is not None and flag != in_file:
        raise ConfigError(
            f"--method {flag} disagrees with {file_name}, which says method {in_file!r}: "
            f"drop --method to use the file's method, or change the file"
        )
    method = flag or in_file or DEFAULT_METHOD
    config_class(str(method))  # an unknown method fails here, naming the choices
    return str(method)


def compose_config(
    method: str,
    file: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    option_names: Mapping[str, str] | None = None,
) -> MethodConfig:
    """The config of ``method``: ``file`` overridden by ``options`` (nested dicts) and ``settings``.

    ``option_names`` maps a top-level field to the option that set it, for the message when a
    setting sets the same field.
    """
    cfg: dict[str, Any] = {k: v for k, v in (file or {}).items()}
    cfg["method"] = method
    options = dict(options or {})
    settings = dict(settings or {})
    both = sorted(set(options) & set(settings))
    if both:
        names = option_names or {}
        raise ConfigError(
            "set twice: " + ", ".join(f"{names.get(k, k)} and --set {k}" for k in both) + "; keep one"
        )
    for key, value in options.items():
        base = cfg.get(key)
        if isinstance(value, dict) and isinstance(base, Mapping):
            cfg[key] = {**base, **value}
        else:
            cfg[key] = value
    cfg.update(settings)
    return config_from_dict(cfg)


def config_from_options(
    method: str | None,
    file: Mapping[str, Any] | None,
    cli: Iterable[CliSetting],
    parsed: Mapping[str, Any],
    set_items: Iterable[str] = (),
    *,
    file_name: str = "the config file",
) -> MethodConfig:
    """The config a command line asks for: ``--method``, the config file, the parsed method options, ``--set``."""
    chosen = choose_method(method, file, file_name)
    cli = list(cli)
    names = {s.targets[chosen][0]: s.cli.split("/")[0] for s in cli if chosen in s.targets}
    return compose_config(chosen, file, overrides(cli, chosen, parsed), parse_settings(set_items), option_names=names)
