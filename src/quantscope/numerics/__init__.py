"""Pure-NumPy numerics: affine quantization, streaming statistics, calibration, metrics."""

from __future__ import annotations

from quantscope.numerics.affine import (
    MIN_SCALE,
    QParams,
    activation_qparams,
    dequantize,
    quantize,
    quantize_bias,
    weight_qparams,
)
from quantscope.numerics.metrics import (
    cosine_similarity,
    max_abs_error,
    mean_abs_error,
    sqnr_db,
    top1_agreement,
)
from quantscope.numerics.observers import (
    CALIBRATORS,
    TensorObserver,
    compute_range,
    entropy_range,
    minmax_range,
    mse_range,
    percentile_range,
)

__all__ = [
    "CALIBRATORS",
    "MIN_SCALE",
    "QParams",
    "TensorObserver",
    "activation_qparams",
    "compute_range",
    "cosine_similarity",
    "dequantize",
    "entropy_range",
    "max_abs_error",
    "mean_abs_error",
    "minmax_range",
    "mse_range",
    "percentile_range",
    "quantize",
    "quantize_bias",
    "sqnr_db",
    "top1_agreement",
    "weight_qparams",
]
