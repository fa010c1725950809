"""Config files as text: reading JSON or TOML safely, and writing a config as TOML.

Both formats hold the schema of a sidecar's ``"config"``: ``method``, the method's fields,
an ``[exclude]`` table (``names``, ``patterns``, ``op_types``) and the calibration fields.
Reading refuses, with a :class:`ConfigError` (exit code 3), what a hostile or mistaken file
can hold: bytes that are not UTF-8, nesting deeper than any config needs, and files larger
than a config can be. :func:`config_to_toml` is a small writer for the values a config holds
(strings, numbers, booleans, lists and one level of tables); no TOML library is needed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from quantscope.config.base import MethodConfig
from quantscope.errors import ConfigError

MAX_DEPTH: Final = 16
"""Deepest nesting of tables/arrays a config file may hold (a config needs 3)."""

MAX_BYTES: Final = 1 << 20
"""Largest config file read (a config is a few hundred bytes)."""


def _depth(value: Any) -> int:
    """Nesting depth of dicts and lists, computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _decode(raw: bytes, path: str | os.PathLike[str]) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start} (line {line}); save it as UTF-8"
        ) from None


def parse_config_text(text: str, path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    """The table (TOML) or object (JSON) in ``text``, checked for shape but not for fields."""
    what = "a TOML table" if fmt == "toml" else "a JSON object"
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except RecursionError:
        data = None  # reported below as nesting too deep
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: not valid {fmt.upper()}: {exc}") from None
    if data is None or _depth(data) > MAX_DEPTH:
        raise ConfigError(
            f"config file {path} nests tables or arrays deeper than {MAX_DEPTH} levels; a config "
            "needs 3 (the config, the [exclude] table, its lists): check the file"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold {what} (like the sidecar's \"config\"), "
            f"not a {type(data).__name__}"
        )
    return data


def read_config_text(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``path`` as TOML (``.toml``) or JSON (anything else); ConfigError on any problem."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_BYTES // 1024} KiB; a config is a few "
            "hundred bytes: check the file"
        )
    fmt = "toml" if p.suffix.lower() == ".toml" else "json"
    data = parse_config_text(_decode(raw, path), path, fmt)
    if str(data.get("schema", "")).startswith("quantscope.sidecar/") and isinstance(data.get("config"), dict):
        return data["config"]  # a whole sidecar: its config reproduces the model
    return data


def _string(text: str) -> str:
    escaped = json.dumps(text, ensure_ascii=False)  # JSON escapes are TOML basic-string escapes
    return escaped.replace("\x7f", "\\u007f")


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 'inf', '-inf', '1e-05', '99.99' are TOML floats
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    raise ConfigError(f"{where}: a {type(value).__name__} has no TOML form")


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _string(key)


def dict_to_toml(data: Mapping[str, Any]) -> str:
    """TOML text for a config dict: scalars and lists first, then one ``[table]`` per dict.

    ``None`` values are left out (TOML has no null; a reader then uses the field's default).
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{_key(key)} = {_value(value, key)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{_key(name)}]")
        for key, value in table.items():
            if isinstance(value, Mapping):
                raise ConfigError(f"{name}.{key}: nested tables are not part of a config")
            if value is not None:
                lines.append(f"{_key(key)} = {_value(value, f'{name}.{key}')}")
    return "\n".join(lines) + "\n"


def config_to_toml(config: MethodConfig) -> str:
    """The TOML form of ``config`` (what ``quantize --print-config`` writes).

    Reading it back with :func:`quantscope.config.compose.read_config_file` and
    :func:`quantscope.config.config_from_dict` gives an equal config. A field set to None
    is left out, which is exact when None is its default; otherwise ConfigError.
    """
    if not isinstance(config, MethodConfig):
        raise ConfigError(f"config_to_toml takes a method config, not {type(config).__name__}")
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    data = config.to_dict()
    for key, value in data.items():
        if value is None and defaults.get(key) is not None:
            raise ConfigError(f"{config.method}: field {key!r} is None, which TOML cannot hold")
    return dict_to_toml(data)
