"""Quantization methods, one module each, found through one registry keyed by config type.

Adding a method is one config class (in :mod:`quantscope.config`) plus one module (or folder)
here whose :class:`~quantscope.methods.base.Method` subclass calls :func:`register`;
:func:`quantscope.quantize` never grows an ``elif``. The shared pipeline lives in
:mod:`quantscope.methods.base`.
"""

from __future__ import annotations

from collections.abc import Callable

from quantscope.config import MethodConfig
from quantscope.errors import ConfigError
from quantscope.methods.base import Method

_REGISTRY: dict[type[MethodConfig], Method] = {}


def register(config_type: type[MethodConfig]) -> Callable[[type[Method]], type[Method]]:
    def decorator(cls: type[Method]) -> type[Method]:
        _REGISTRY[config_type] = cls()
        return cls

    return decorator


def method_for(config: MethodConfig) -> Method:
    _load_builtin_methods()
    method = _REGISTRY.get(type(config))
    if method is None:
        raise ConfigError(f"no quantization method is registered for {type(config).__name__}")
    return method


def registered_configs() -> tuple[type[MethodConfig], ...]:
    """The config type of every registered method, in registration order."""
    _load_builtin_methods()
    return tuple(_REGISTRY)


def _load_builtin_methods() -> None:
    """Import every method module of this package once; each registers itself."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Method", "method_for", "register", "registered_configs"]
