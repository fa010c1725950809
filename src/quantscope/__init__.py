"""quantscope: post-training quantization and analysis of trained models, run by ONNX Runtime."""

from __future__ import annotations

__version__ = "0.1.0"

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
from quantscope.config.calibration import MSE, Calibration, Entropy, MinMax, Percentile
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
    RuntimeFailure,
    SelectorError,
    UnsupportedModelError,
)
from quantscope.importers import to_onnx
from quantscope.io import Model, load, save
from quantscope.plan import NodeDecision, QuantPlan
from quantscope.quantize import QuantizedModel, quantize
from quantscope.reporting import render as report
from quantscope.specs import TensorSpec

__all__ = [
    "MSE",
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
