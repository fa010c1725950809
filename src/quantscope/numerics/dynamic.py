"""Dynamic (run-time) quantization arithmetic in NumPy: ``DynamicQuantizeLinear`` and the
integer matrix product it feeds.

These mirror the ONNX definitions ONNX Runtime implements, so a dynamic-int8 model can be
checked against a NumPy simulation of itself, and the error of a weight against the float
product can be predicted without building a graph.

* ``DynamicQuantizeLinear``: the range is ``[min(0, min x), max(0, max x)]`` (0 is always
  exact), ``scale = (hi - lo) / 255``, ``zero_point = round_half_even(saturate(-lo / scale))``
  in uint8, then ``QuantizeLinear`` with those parameters. An all-zero tensor gets scale 1.
* ``MatMulInteger`` products are exact in int32; the float result is
  ``float32(int32) * (x_scale * w_scale)``.

On x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in int16
(``vpmaddubsw``) and saturate: ``255 * 127 * 2`` does not fit. :data:`U8S8_SAFE_MAGNITUDE`
(64) is the largest weight magnitude for which ``255 * m * 2 <= 32767``; weights limited to
``[-64, 64]`` are exact there (what ``onnxruntime.quantization`` calls ``reduce_range``).
"""

from __future__ import annotations

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.affine import MIN_SCALE, QParams, abs_max, quantize, weight_qparams

__all__ = [
    "U8S8_SAFE_MAGNITUDE",
    "dynamic_matmul",
    "dynamic_qparams",
    "dynamic_quantize",
    "u8s8_safe_weight_qparams",
]

U8S8_SAFE_MAGNITUDE = 32767 // (2 * 255)  # 64


def u8s8_safe_weight_qparams(w: np.ndarray, axis: int | None) -> QParams:
    """Symmetric int8 parameters with ``|q| <= 64``: no int16 saturation in u8 x s8 pair sums.

    Same validation and conventions as :func:`quantscope.numerics.affine.weight_qparams`
    (zero point 0, one scale per index along ``axis``, scale 1.0 for an all-zero channel).
    """
    full = weight_qparams(w, axis, bits=8)  # validates; its scale is absmax / 127
    absmax = abs_max(np.asarray(w), full.axis)
    scale = np.where(absmax == 0.0, 1.0, np.maximum(absmax / U8S8_SAFE_MAGNITUDE, MIN_SCALE))
    return QParams(scale=scale.astype(np.float32), zero_point=full.zero_point, dtype=full.dtype, axis=full.axis)


def dynamic_qparams(x: np.ndarray) -> QParams:
    """The uint8 parameters ``DynamicQuantizeLinear`` computes for ``x`` at run time."""
    xf = np.asarray(x, dtype=np.float32)
    if xf.size and not np.all(np.isfinite(xf)):
        raise ConfigError("DynamicQuantizeLinear input holds NaN or infinity")
    lo = np.float32(min(0.0, float(xf.min()))) if xf.size else np.float32(0.0)
    hi = np.float32(max(0.0, float(xf.max()))) if xf.size else np.float32(0.0)
    scale = np.float32((hi - lo) / np.float32(255.0))
    if scale == 0.0:
        return QParams(scale=np.float32(1.0), zero_point=np.uint8(0), dtype=np.uint8)
    zp = np.rint(np.clip(np.float32(0.0) - lo / scale, 0.0, 255.0))
    return QParams(scale=scale, zero_point=np.uint8(zp), dtype=np.uint8)


def dynamic_quantize(x: np.ndarray) -> tuple[np.ndarray, QParams]:
    """``DynamicQuantizeLinear``: uint8 values of ``x`` and the parameters used."""
    qp = dynamic_qparams(x)
    return quantize(x, qp), qp


def dynamic_matmul(x: np.ndarray, w_q: np.ndarray, w_scale: np.ndarray | float) -> np.ndarray:
    """``x @ w`` as the dynamic-int8 graph computes it, with ``w ≈ w_q * w_scale``.

    ``w_q`` is the int8 weight laid out ``[K, N]`` (zero point 0); ``w_scale`` is a scalar or
    one scale per column ``N``. The integer product is exact (int64 here, int32 in the kernel).
    """
    wq = np.asarray(w_q)
    if wq.dtype != np.int8 or wq.ndim != 2:
        raise ConfigError(f"w_q must be a 2-D int8 array, got {wq.dtype} with shape {wq.shape}")
    xq, qp = dynamic_quantize(x)
    acc = (xq.astype(np.int64) - np.int64(qp.zero_point)) @ wq.astype(np.int64)
    scale = (np.float32(qp.scale) * np.asarray(w_scale, dtype=np.float32)).astype(np.float32)
    return (acc.astype(np.float32) * scale).astype(np.float32)
