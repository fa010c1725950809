"""Where a model breaks: quality under shifted data, per slice, and against the calibration data.

:func:`robustness` evaluates the float model and every quantized variant on the evaluation data
shifted by each shift of a modality (:mod:`quantscope.analysis.shifts`) at each severity, finds
the severity at which each variant falls below a threshold, measures every class and metadata
slice, and (given calibration data) how static-int8 depends on the distribution and the size of
its calibration set. :mod:`quantscope.analysis.limitations` turns the numbers into sentences.

The evaluation data is read into memory once (shifts such as the covariate ones look at the
whole set); one ONNX Runtime session per variant serves every shift and severity.
"""

from quantscope.analysis.quality import MetricFn
from quantscope.analysis.robustness.calibration import (
    DEFAULT_CALIBRATION_SHIFTS,
    DEFAULT_CALIBRATION_SIZES,
    calibration_effect,
    calibration_size,
)
from quantscope.analysis.robustness.data import REFERENCE, ModelLike, as_model
from quantscope.analysis.robustness.shifting import ShiftsArg
from quantscope.analysis.robustness.slices import MAX_CATEGORIES
from quantscope.analysis.robustness.study import DEFAULT_SEVERITIES, robustness, robustness_for

__all__ = [
    "DEFAULT_CALIBRATION_SHIFTS",
    "DEFAULT_CALIBRATION_SIZES",
    "DEFAULT_SEVERITIES",
    "MAX_CATEGORIES",
    "REFERENCE",
    "MetricFn",
    "ModelLike",
    "ShiftsArg",
    "as_model",
    "calibration_effect",
    "calibration_size",
    "robustness",
    "robustness_for",
]
