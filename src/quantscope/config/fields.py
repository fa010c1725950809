"""Config fields that describe themselves: help, choices and command-line name as field metadata.

A config class declares each field with :func:`setting`; the metadata it stores
(``help``, ``choices``, ``cli``, ``cli_value``) is read by the config checks
(:func:`check_choices`) and by :func:`cli_settings`, which merges the fields of every
registered config class by command-line name into :class:`CliSetting` records. The
``quantize`` command builds its method options from those records, so a new config field
with a ``cli`` name is a new option without touching the command line code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quantscope.config._checks import check_choice
from quantscope.errors import ConfigError

Choices = tuple[object, ...] | Callable[[], tuple[object, ...]]
Kind = Literal["flag", "switch", "value", "list", "multiple"]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    cli: str | None = None,
    choices: Choices | None = None,
    cli_value: Any = True,
    multiple: bool = False,
) -> Any:
    """A dataclass field whose metadata documents it.

    ``cli`` is the option name (``"--per-tensor"``, ``"--reduce-range/--full-range"``);
    ``cli_value`` is what a bare flag stores (``--per-tensor`` stores ``per_channel=False``);
    ``choices`` (a tuple, or a function returning one, such as a registry's names) is checked
    on construction and offered on the command line; ``multiple`` makes a tuple option
    repeatable instead of comma-separated.
    """
    metadata: dict[str, Any] = {"help": help, "cli_value": cli_value, "multiple": multiple}
    if cli is not None:
        metadata["cli"] = cli
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(f: dataclasses.Field[Any]) -> tuple[object, ...] | None:
    """The field's allowed values, or None if any value of its type is allowed."""
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def check_choices(config: Any) -> None:
    """Every field of ``config`` that declares choices holds one of them."""
    for f in dataclasses.fields(config):
        allowed = choices_of(f)
        if allowed is not None:
            check_choice(f.name, getattr(config, f.name), allowed)


@dataclass(frozen=True)
class CliSetting:
    """One command-line option, merged over every config class that has a field with its name.

    ``targets`` maps a method name to the field path the option sets in that method's config
    (``("per_channel",)``, or ``("exclude", "names")`` inside a nested selector).
    """

    cli: str
    dest: str
    kind: Kind
    type: type
    choices: tuple[object, ...] | None
    help: str
    cli_value: Any
    targets: Mapping[str, tuple[str, ...]]

    def value(self, raw: Any) -> Any:
        """The config value for what the command line parsed, or None if the option was not given."""
        if self.kind == "flag":
            return self.cli_value if raw else None
        if self.kind == "multiple":
            return list(raw) if raw else None
        if self.kind == "list":
            return None if raw is None else [item.strip() for item in str(raw).split(",") if item.strip()]
        return raw


def _kind(annotation: Any, multiple: bool) -> tuple[Kind, type]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        return "flag", bool
    if origin in (typing.Union, types.UnionType) and set(args) == {bool, type(None)}:
        return "switch", bool
    if origin is tuple:
        return ("multiple" if multiple else "list"), str
    if annotation in (int, float, str):
        return "value", annotation
    raise TypeError(f"no command-line form for a field of type {annotation!r}")


def _walk(cls: type, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _walk(hint, (*prefix, f.name))  # type: ignore[arg-type]
        elif "cli" in f.metadata:
            yield (*prefix, f.name), f, hint


def cli_settings(classes: Mapping[str, type]) -> list[CliSetting]:
    """The command-line options of ``classes`` (method name → config class), merged by name.

    Two fields that share a command-line name must agree on its form (flag, value type,
    choices); their help is the first one's, followed by the methods it applies to.
    """
    merged: dict[str, dict[str, Any]] = {}
    for method, cls in classes.items():
        for path, f, hint in _walk(cls):
            kind, typ = _kind(hint, f.metadata["multiple"])
            cli = f.metadata["cli"]
            spec = {"kind": kind, "type": typ, "choices": choices_of(f), "cli_value": f.metadata["cli_value"]}
            entry = merged.setdefault(cli, {**spec, "help": f.metadata["help"], "targets": {}})
            if {k: entry[k] for k in spec} != spec:
                raise TypeError(f"fields named {cli} disagree on their form: {entry} vs {spec} ({method})")
            entry["targets"][method] = path
    out = []
    for cli, entry in merged.items():
        methods = list(entry["targets"])
        some = len(methods) < len(classes)  # an option of every method needs no list
        help_text = entry.pop("help") + (f" [{', '.join(methods)}]" if some else "")
        dest = "opt_" + cli.split("/")[0].lstrip("-").replace("-", "_")
        out.append(CliSetting(cli=cli, dest=dest, help=help_text, **entry))
    return out


def overrides(settings: Iterable[CliSetting], method: str, parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields that the given options set for ``method``, as a nested dict.

    ``parsed`` maps each setting's ``dest`` to what the command line parsed; an option given
    for a method that has no such field is a :class:`ConfigError` naming the methods that have it.
    """
    out: dict[str, Any] = {}
    for s in settings:
        value = s.value(parsed.get(s.dest))
        if value is None:
            continue
        path = s.targets.get(method)
        if path is None:
            raise ConfigError(
                f"{s.cli.split('/')[0]} does not apply to {method}; it is an option of {', '.join(s.targets)}"
            )
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out
