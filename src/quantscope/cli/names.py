"""One naming of methods on every command: ``-m`` takes a method (``static-int8``) or a variant
as ``sweep`` and ``tune`` print it (``static-int8/minmax``, ``cluster-4``).

A variant name is a method with settings (the calibrator after the slash, the bits after
``cluster-``): ``quantize -m static-int8/entropy`` is ``-m static-int8 --calibration entropy``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from quantscope.config import MethodConfig, config_class, method_names
from quantscope.errors import ConfigError

IGNORED_FIELDS = frozenset({"seed"})


def variant_configs(seed: int = 0) -> dict[str, MethodConfig]:
    """Every variant name sweep uses, with its config."""
    from quantscope.analysis.sweep import sweep_configs

    return sweep_configs(None, seed=seed)


def _unknown(name: str) -> ConfigError:
    variants = [n for n in variant_configs() if n not in method_names()]
    return ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(method_names()))}, or a "
                       f"variant as sweep and tune name them: {', '.join(variants)}")


def configs_for(names: Sequence[str], seed: int = 0) -> list[str] | dict[str, MethodConfig] | None:
    """``-m`` values of sweep and tune as their ``methods=`` argument: the names when all are
    methods, else the named configs (a method stands for all its variants)."""
    if not names:
        return None
    if all(n in method_names() for n in names):
        return list(names)
    from quantscope.analysis.sweep import sweep_configs

    every = variant_configs(seed)
    out: dict[str, MethodConfig] = {}
    for name in names:
        if name in every:
            out[name] = every[name]
        elif name in method_names():
            out.update(sweep_configs([name], seed=seed))
        else:
            raise _unknown(name)
    return out


def split_method(method: str | None, opts: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``quantize -m``: a variant name as its method plus the options it implies.

    An option given on the command line that contradicts the name is refused (exit 3).
    """
    if method is None or method in method_names():
        return method, dict(opts)
    every = variant_configs()
    if method not in every:
        raise _unknown(method)
    config = every[method]
    base = config_class(config.method)()
    out = dict(opts)
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in IGNORED_FIELDS or value == getattr(base, field.name):
            continue
        dest = f"opt_{field.name}"
        given = out.get(dest)
        if given is not None and given != value:
            raise ConfigError(f"-m {method} means {field.name} {value!r}, and the command line also gives {given!r}; "
                              f"give one of them")
        out[dest] = value
    return config.method, out
