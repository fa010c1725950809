"""Quantization methods, one module each, found through one registry keyed by config type.

Adding a method is one config class (in :mod:`quantscope.config`) plus one module here that
calls :func:`register`; :func:`quantscope.quantize` never grows an ``elif``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig
from quantscope.errors import ConfigError
from quantscope.io import Model
from quantscope.plan import QuantPlan


class Method(Protocol):
    """What every method provides. ``model`` is always the prepared float model."""

    def prepare(self, model: Model, config: MethodConfig) -> Model: ...

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]: ...

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan: ...

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model: ...


_REGISTRY: dict[type[MethodConfig], Method] = {}


def register(config_type: type[MethodConfig]) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        _REGISTRY[config_type] = cls()
        return cls

    return decorator


def method_for(config: MethodConfig) -> Method:
    _load_builtin_methods()
    method = _REGISTRY.get(type(config))
    if method is None:
        raise ConfigError(f"no quantization method is registered for {type(config).__name__}")
    return method


def _load_builtin_methods() -> None:
    """Import every method module of this package once; each registers itself."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
