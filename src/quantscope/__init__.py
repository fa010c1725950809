"""quantscope: post-training quantization and analysis of trained models, run by ONNX Runtime.

The public names load on first use (PEP 562), so ``import quantscope`` and the command line
start fast, and a Ctrl-C while they start reaches the command line's handler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "quantscope.analysis.compare": ("analyze",),
    "quantscope.analysis.robustness": ("robustness",),
    "quantscope.analysis.sweep": ("sweep",),
    "quantscope.analysis.tune": ("TuneResult", "tune"),
    "quantscope.config": (
        "Binary", "Cluster", "DynamicInt8", "Float16", "MethodConfig", "NodeSelector", "StaticInt8",
        "Ternary", "WeightInt4", "WeightInt8", "config_from_dict",
    ),
    "quantscope.config.calibration": ("MSE", "Auto", "Calibration", "Entropy", "MinMax", "Percentile"),
    "quantscope.data": ("Batch", "Dataset", "ImagePreprocess", "as_dataset"),
    "quantscope.errors": (
        "ConfigError", "ConversionError", "DataError", "DataMismatchError", "EmptyDatasetError",
        "ModelError", "NonFiniteDataError", "OutputError", "QualityGateError", "QuantscopeError",
        "RuntimeCrashError", "RuntimeFailure", "SelectorError", "UnsupportedModelError",
    ),
    "quantscope.importers": ("to_onnx",),
    "quantscope.model_io": ("Model", "load", "save"),
    "quantscope.plan": ("NodeDecision", "QuantPlan"),
    "quantscope.quantization": ("QuantizedModel", "quantize"),
    "quantscope.specs": ("TensorSpec",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
_RENAMED = {"report": ("quantscope.reporting", "render")}  # qs.report(results, dir) is the renderer

if TYPE_CHECKING:
    from quantscope.analysis.compare import analyze
    from quantscope.analysis.robustness import robustness
    from quantscope.analysis.sweep import sweep
    from quantscope.analysis.tune import TuneResult, tune
    from quantscope.config import (
        Binary,
        Cluster,
        DynamicInt8,
        Float16,
        MethodConfig,
        NodeSelector,
        StaticInt8,
        Ternary,
        WeightInt4,
        WeightInt8,
        config_from_dict,
    )
    from quantscope.config.calibration import MSE, Auto, Calibration, Entropy, MinMax, Percentile
    from quantscope.data import Batch, Dataset, ImagePreprocess, as_dataset
    from quantscope.errors import (
        ConfigError,
        ConversionError,
        DataError,
        DataMismatchError,
        EmptyDatasetError,
        ModelError,
        NonFiniteDataError,
        OutputError,
        QualityGateError,
        QuantscopeError,
        RuntimeCrashError,
        RuntimeFailure,
        SelectorError,
        UnsupportedModelError,
    )
    from quantscope.importers import to_onnx
    from quantscope.model_io import Model, load, save
    from quantscope.plan import NodeDecision, QuantPlan
    from quantscope.quantization import QuantizedModel, quantize
    from quantscope.reporting import render as report
    from quantscope.specs import TensorSpec


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        module, attr = _RENAMED[name]
    elif name in _WHERE:
        module, attr = _WHERE[name], name
    else:
        raise AttributeError(f"module 'quantscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "MSE",
    "Auto",
    "Batch",
    "Binary",
    "Calibration",
    "Cluster",
    "ConfigError",
    "ConversionError",
    "DataError",
    "DataMismatchError",
    "Dataset",
    "DynamicInt8",
    "EmptyDatasetError",
    "Entropy",
    "Float16",
    "ImagePreprocess",
    "MethodConfig",
    "MinMax",
    "Model",
    "ModelError",
    "NodeDecision",
    "NodeSelector",
    "NonFiniteDataError",
    "OutputError",
    "Percentile",
    "QualityGateError",
    "QuantPlan",
    "QuantizedModel",
    "QuantscopeError",
    "RuntimeCrashError",
    "RuntimeFailure",
    "SelectorError",
    "StaticInt8",
    "TensorSpec",
    "Ternary",
    "TuneResult",
    "UnsupportedModelError",
    "WeightInt4",
    "WeightInt8",
    "__version__",
    "analyze",
    "as_dataset",
    "config_from_dict",
    "load",
    "quantize",
    "report",
    "robustness",
    "save",
    "sweep",
    "to_onnx",
    "tune",
]
