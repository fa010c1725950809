"""Frozen, keyword-only method configurations, calibration values and node selectors.

Every config validates on construction (a bad value fails at the line that made it) and
round-trips through a tagged, versioned dict shared by the Python API and the CLI. Each field
carries its help, choices and command-line name as metadata (:mod:`quantscope.config.fields`),
from which the ``quantize`` command builds its method options.

Modules: :mod:`~quantscope.config.base` (the base class, the method registry, the dict form),
:mod:`~quantscope.config.methods` (one config per built-in method),
:mod:`~quantscope.config.selector` (node selectors), :mod:`~quantscope.config.calibration`
(calibrators and :class:`Calibration`), :mod:`~quantscope.config.compose` (a config from a
file plus overrides, as the command line composes it).
"""

from __future__ import annotations

from typing import Any

from quantscope.config.base import (
    SCHEMA_VERSION,
    MethodConfig,
    config_class,
    config_classes,
    config_from_dict,
    method_names,
)
from quantscope.config.calibration import (
    MSE,
    Calibration,
    Calibrator,
    Entropy,
    MinMax,
    Percentile,
    StatisticsRequest,
    calibrator,
    calibrator_names,
)
from quantscope.config.methods import (
    ACTIVATION_DTYPES,
    FLOAT16_BLOCK_OPS,
    WEIGHT_OP_TYPES,
    Binary,
    Cluster,
    DynamicInt8,
    Float16,
    StaticInt8,
    Ternary,
    WeightInt4,
    WeightInt8,
)
from quantscope.config.methods import _WeightOnly as _WeightOnly
from quantscope.config.selector import NodeSelector

__all__ = [
    "ACTIVATION_DTYPES",
    "FLOAT16_BLOCK_OPS",
    "MSE",
    "SCHEMA_VERSION",
    "WEIGHT_OP_TYPES",
    "Binary",
    "Calibration",
    "Calibrator",
    "Cluster",
    "DynamicInt8",
    "Entropy",
    "Float16",
    "MethodConfig",
    "MinMax",
    "NodeSelector",
    "Percentile",
    "StaticInt8",
    "StatisticsRequest",
    "Ternary",
    "WeightInt4",
    "WeightInt8",
    "calibrator",
    "calibrator_names",
    "config_class",
    "config_classes",
    "config_from_dict",
    "method_names",
]


def __getattr__(name: str) -> Any:
    # CALIBRATION_METHODS was a hand-kept list; it is now read from the calibrator registry
    # (kept for the importers of the old name: use calibrator_names()).
    if name == "CALIBRATION_METHODS":
        return calibrator_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
