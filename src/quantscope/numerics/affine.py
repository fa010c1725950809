"""Affine (scale, zero point) quantization parameters and the exact ONNX QDQ arithmetic.

Everything here mirrors what ONNX Runtime computes for ``QuantizeLinear`` and
``DequantizeLinear`` so that a simulated result in NumPy is bit-identical to the
one the QDQ model produces:

* quantize: ``q = saturate(round_half_to_even(float32(x) / scale) + zero_point)``, the
  division done in float32;
* dequantize: ``x = float32(q - zero_point) * scale`` in float32.

Scale floor: every scale produced here is at least :data:`MIN_SCALE` (``2**-60``, about
``8.7e-19``), a normal float32 whose square is still a normal float32 (``2**-120 > 2**-126``).
So a bias scale ``input_scale * weight_scale`` never becomes denormal or zero and
``1 / scale`` stays finite. A range that is exactly zero (only 0.0 was seen, or an all-zero
weight channel) gets scale 1.0 instead, like ``onnxruntime.quantization`` does: any scale
represents 0.0 exactly, and 1.0 keeps the graph free of odd constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.chunks import CHUNK_BYTES, all_finite, row_slices

__all__ = [
    "MIN_SCALE",
    "QParams",
    "abs_max",
    "activation_qparams",
    "dequantize",
    "quantize",
    "quantize_bias",
    "weight_qparams",
]

MIN_SCALE: float = 2.0**-60
"""Smallest scale ever produced; see the module docstring for why this value."""

_QUANT_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32))
_ACTIVATION_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16))
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class QParams:
    """Quantization parameters of one tensor, as stored next to a QDQ node pair.

    ``scale`` is float32 with shape ``()`` (per tensor, ``axis`` is None) or ``(C,)`` (per
    channel along ``axis``); ``zero_point`` has the same shape and the quantized ``dtype``
    (uint8, int8, uint16, int16, or int32 for biases). The constructor normalises the
    arrays' dtypes and rejects inconsistent shapes or non-positive scales with
    :class:`ConfigError`.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: np.dtype
    axis: int | None = None

    def __post_init__(self) -> None:
        dtype = np.dtype(self.dtype)
        if dtype not in _QUANT_DTYPES:
            raise ConfigError(
                f"unsupported quantized dtype {dtype}; use one of "
                + ", ".join(d.name for d in _QUANT_DTYPES)
            )
        scale = np.asarray(self.scale, dtype=np.float32)
        zp_raw = np.asarray(self.zero_point)
        info = np.iinfo(dtype)
        if zp_raw.size and (
            not np.all(np.isfinite(zp_raw))
            or np.any(zp_raw != np.round(zp_raw))
            or np.any(zp_raw < info.min)
            or np.any(zp_raw > info.max)
        ):
            raise ConfigError(
                f"zero point must hold integers in [{info.min}, {info.max}] for {dtype}"
            )
        zero_point = zp_raw.astype(dtype)
        if scale.shape != zero_point.shape:
            raise ConfigError(
                f"scale shape {scale.shape} and zero point shape {zero_point.shape} differ"
            )
        if self.axis is None:
            if scale.ndim != 0:
                raise ConfigError(
                    f"per-tensor parameters need scalar scale, got shape {scale.shape}; "
                    "give an axis for per-channel parameters"
                )
        else:
            if isinstance(self.axis, bool) or not isinstance(self.axis, int | np.integer):
                raise ConfigError(f"axis must be an int or None, got {self.axis!r}")
            if scale.ndim != 1:
                raise ConfigError(
                    f"per-channel parameters need a 1-D scale, got shape {scale.shape}"
                )
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ConfigError("scale must be finite and > 0")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)
        object.__setattr__(self, "dtype", dtype)
        if self.axis is not None:
            object.__setattr__(self, "axis", int(self.axis))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.axis == other.axis
            and self.scale.shape == other.scale.shape
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.dtype.str,
                self.axis,
                self.scale.shape,
                self.scale.tobytes(),
                self.zero_point.tobytes(),
            )
        )

    @property
    def qmin(self) -> int:
        """Smallest integer of ``dtype``; QuantizeLinear saturates to it."""
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        """Largest integer of ``dtype``; QuantizeLinear saturates to it."""
        return int(np.iinfo(self.dtype).max)

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per index along ``axis``."""
        return self.axis is not None

    def float_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The float values of ``qmin`` and ``qmax`` (per channel when per-channel)."""
        zp = self.zero_point.astype(np.int64)
        lo = ((self.qmin - zp).astype(np.float32) * self.scale).astype(np.float32)
        hi = ((self.qmax - zp).astype(np.float32) * self.scale).astype(np.float32)
        return lo, hi


def _finite_float(value: float, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a real number, got {value!r}") from exc
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {out}")
    return out


def _checked_scale(raw: float) -> np.float32:
    """Clamp a positive scale to MIN_SCALE and make sure it fits float32."""
    if raw > _F32_MAX:
        raise ConfigError(f"range too wide for a float32 scale ({raw:.3g} per step)")
    return np.float32(max(raw, MIN_SCALE))


def activation_qparams(
    lo: float, hi: float, dtype: np.dtype | type = np.uint8, symmetric: bool = False
) -> QParams:
    """Per-tensor parameters covering the activation range ``[lo, hi]``.

    The range is first widened to contain 0 so that 0.0 (padding, ReLU output) is exactly
    representable: it quantizes to the zero point and back to 0.0.

    Asymmetric (default): ``scale = (hi - lo) / (qmax - qmin)``,
    ``zero_point = round_half_even(qmin - lo / scale)`` clipped into ``[qmin, qmax]``.

    Symmetric: the zero point is the middle of the type (128 for uint8, 0 for int8,
    32768 / 0 for the 16-bit types) and ``scale = 2 * max(|lo|, |hi|) / (qmax - qmin)``,
    i.e. ``absmax / 127.5`` for 8 bits. This is the choice of
    ``onnxruntime.quantization``; ``+absmax`` lands half a step outside the top level and
    saturates to it, an error of exactly ``scale / 2`` like any rounding error.

    ``lo == hi == 0`` gives scale 1.0; any other scale below :data:`MIN_SCALE` is raised to
    it. Non-finite bounds, ``lo > hi`` and unsupported dtypes raise :class:`ConfigError`.
    """
    lo_f = _finite_float(lo, "lo")
    hi_f = _finite_float(hi, "hi")
    if lo_f > hi_f:
        raise ConfigError(f"range lower bound {lo_f} is above upper bound {hi_f}")
    qdtype = np.dtype(dtype)
    if qdtype not in _ACTIVATION_DTYPES:
        raise ConfigError(
            f"unsupported activation dtype {qdtype}; use one of "
            + ", ".join(d.name for d in _ACTIVATION_DTYPES)
        )
    info = np.iinfo(qdtype)
    qmin, qmax = int(info.min), int(info.max)
    lo_f, hi_f = min(lo_f, 0.0), max(hi_f, 0.0)

    if symmetric:
        absmax = max(-lo_f, hi_f)
        zp = int(np.rint((qmin + qmax) / 2.0))
        scale = np.float32(1.0) if absmax == 0.0 else _checked_scale(2.0 * absmax / (qmax - qmin))
    else:
        if hi_f - lo_f == 0.0:
            scale, zp = np.float32(1.0), int(np.clip(0, qmin, qmax))
        else:
            scale = _checked_scale((hi_f - lo_f) / (qmax - qmin))
            zp = int(np.clip(np.rint(qmin - lo_f / float(scale)), qmin, qmax))
    return QParams(
        scale=np.asarray(scale, dtype=np.float32),
        zero_point=np.asarray(zp, dtype=qdtype),
        dtype=qdtype,
        axis=None,
    )


def _normalize_axis(axis: int, ndim: int, what: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise ConfigError(f"axis must be an int or None, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ConfigError(f"axis {axis} is out of range for a {ndim}-D {what}")
    return int(axis) % ndim


def weight_qparams(
    w: np.ndarray, axis: int | None, *, bits: int = 8, reduce_range: bool = False
) -> QParams:
    """Symmetric signed parameters for a weight tensor, zero point 0.

    The range is the restricted one ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``
    (``[-127, 127]`` for 8 bits) so that ``-absmax`` and ``+absmax`` are both exact and the
    most negative integer is never used (symmetric products, no overflow in int8 GEMM
    kernels). ``reduce_range`` drops one more bit of magnitude (``[-63, 63]`` for 8 bits),
    for CPUs whose u8s8 kernels can saturate. ``axis`` None gives one scale; an int gives
    one scale per index along that axis (max ``|w|`` over all other axes). An all-zero
    tensor or channel gets scale 1.0. The dtype is int8 for ``bits <= 8`` and int16 for
    ``bits <= 16``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise ConfigError(f"bits must be an int, got {bits!r}")
    min_bits = 3 if reduce_range else 2
    if not min_bits <= bits <= 16:
        raise ConfigError(f"bits must be in [{min_bits}, 16], got {bits}")
    arr = np.asarray(w)
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"weights must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not all_finite(arr):
        raise ConfigError("weights hold NaN or infinity; they cannot be quantized")
    qmax = 2 ** (bits - 2 if reduce_range else bits - 1) - 1
    qdtype = np.dtype(np.int8 if bits <= 8 else np.int16)
    if axis is not None and arr.ndim == 0:
        raise ConfigError("per-channel quantization needs at least a 1-D weight")
    norm_axis = None if axis is None else _normalize_axis(axis, arr.ndim, "weight")
    absmax = abs_max(arr, norm_axis)
    raw = absmax / qmax
    if np.any(raw > _F32_MAX):
        raise ConfigError("weights too large for a float32 scale")
    scale = np.where(absmax == 0.0, 1.0, np.maximum(raw, MIN_SCALE)).astype(np.float32)
    return QParams(
        scale=scale,
        zero_point=np.zeros(scale.shape, dtype=qdtype),
        dtype=qdtype,
        axis=norm_axis,
    )


def abs_max(w: np.ndarray, axis: int | None) -> np.ndarray:
    """``max |w|`` (float64) over the whole array (``axis`` None) or over every axis but ``axis``
    (one value per index along it), taken a chunk of rows at a time; 0 for an empty reduction."""
    arr = np.asarray(w)
    if arr.ndim == 0:
        return np.asarray(abs(float(arr)))
    others = tuple(i for i in range(arr.ndim) if i != axis)
    row_bytes = arr.itemsize * (arr.size // arr.shape[0] if arr.shape[0] else 0)
    if axis == 0:
        out = np.zeros(arr.shape[0], dtype=np.float64)
        for rows in row_slices(arr.shape[0], row_bytes):
            out[rows] = np.max(np.abs(arr[rows].astype(np.float64)), axis=others, initial=0.0)
        return out
    out = np.zeros(() if axis is None else arr.shape[axis], dtype=np.float64)
    for rows in row_slices(arr.shape[0], row_bytes):
        out = np.maximum(out, np.max(np.abs(arr[rows].astype(np.float64)), axis=others, initial=0.0))
    return np.asarray(out)


def _broadcast(qp: QParams, ndim: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point shaped to broadcast against an array of ``shape``."""
    if qp.axis is None:
        return qp.scale, qp.zero_point
    if ndim == 0:
        raise ConfigError("per-channel parameters cannot apply to a scalar")
    axis = _normalize_axis(qp.axis, ndim, "tensor")
    if shape[axis] != qp.scale.shape[0]:
        raise ConfigError(
            f"tensor has {shape[axis]} channels along axis {qp.axis} but the parameters "
            f"have {qp.scale.shape[0]}"
        )
    view = [1] * ndim
    view[axis] = -1
    return qp.scale.reshape(view), qp.zero_point.reshape(view)


def quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
    """``QuantizeLinear``: float to ``qp.dtype``, exactly as ONNX Runtime computes it.

    ``x`` is cast to float32 first. For 8/16-bit types the division and the round-half-to-
    even run in float32 like ONNX Runtime; for int32 (biases, which ONNX Runtime never
    quantizes at run time) float64 is used so large values keep their precision. +-inf
    saturates; NaN maps to ``qmin``, as ONNX Runtime's CPU kernels do (the ONNX
    specification leaves it undefined).
    """
    xf = np.asarray(x)
    scale, zp = _broadcast(qp, xf.ndim, xf.shape)
    if xf.ndim == 0 or xf.nbytes <= CHUNK_BYTES:
        return _quantize(xf, scale, zp, qp)
    out = np.empty(xf.shape, dtype=qp.dtype)  # a chunk of rows at a time: no float temporaries of its size
    per_row = scale.ndim == xf.ndim and scale.shape[0] != 1
    for rows in row_slices(xf.shape[0], xf.nbytes // xf.shape[0]):
        out[rows] = _quantize(xf[rows], scale[rows] if per_row else scale, zp[rows] if per_row else zp, qp)
    return out


def _quantize(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, qp: QParams) -> np.ndarray:
    xf = np.asarray(x, dtype=np.float32)
    work = np.float64 if qp.dtype == np.int32 else np.float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.rint(xf.astype(work) / scale.astype(work)) + zp.astype(work)
        q = np.where(np.isnan(q), work(qp.qmin), q)
    q = np.clip(q, qp.qmin, qp.qmax)
    return q.astype(qp.dtype)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """``DequantizeLinear``: ``float32(q - zero_point) * scale``, computed in float32."""
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise ConfigError(f"quantized values must be integers, got dtype {qa.dtype}")
    scale, zp = _broadcast(qp, qa.ndim, qa.shape)
    diff = (qa.astype(np.int64) - zp.astype(np.int64)).astype(np.float32)
    return (diff * scale).astype(np.float32)


def quantize_bias(
    b: np.ndarray, input_scale: float | np.ndarray, weight_scale: np.ndarray
) -> tuple[np.ndarray, QParams]:
    """Quantize a Conv/Gemm bias to int32 with ``scale = input_scale * weight_scale``.

    That scale (product taken in float32, as the runtime does) is what integer kernels
    assume, so the bias adds straight into the int32 accumulator. A 1-D ``weight_scale``
    means per-channel along axis 0 and must have one entry per bias element; a scalar
    means per-tensor. Values beyond int32 saturate. Returns ``(q, qparams)``.
    """
    bias = np.asarray(b)
    if bias.dtype.kind not in "fiu":
        raise ConfigError(f"bias must be a real numeric array, got dtype {bias.dtype}")
    if bias.dtype.kind == "f" and not np.all(np.isfinite(bias)):
        raise ConfigError("bias holds NaN or infinity; it cannot be quantized")
    in_scale = np.asarray(input_scale, dtype=np.float32)
    if in_scale.size != 1:
        raise ConfigError(f"input_scale must be a single value, got shape {in_scale.shape}")
    in_scale = in_scale.reshape(())
    w_scale = np.asarray(weight_scale, dtype=np.float32)
    if w_scale.ndim > 1:
        raise ConfigError(f"weight_scale must be a scalar or 1-D, got shape {w_scale.shape}")
    for name, s in (("input_scale", in_scale), ("weight_scale", w_scale)):
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ConfigError(f"{name} must be finite and > 0")
    scale = (in_scale * w_scale).astype(np.float32)
    if np.any(scale < np.finfo(np.float32).tiny):
        raise ConfigError(
            "input_scale * weight_scale underflows float32; the bias scale would be denormal"
        )
    if w_scale.ndim == 1:
        if bias.shape != w_scale.shape:
            raise ConfigError(
                f"per-channel bias needs shape {w_scale.shape} to match weight_scale, "
                f"got {bias.shape}"
            )
        axis: int | None = 0
    else:
        axis = None
    qp = QParams(scale=scale, zero_point=np.zeros(scale.shape, np.int32), dtype=np.int32, axis=axis)
    info = np.iinfo(np.int32)
    with np.errstate(over="ignore"):
        q = np.rint(bias.astype(np.float64) / scale.astype(np.float64))
    q = np.clip(q, info.min, info.max).astype(np.int32)
    return q, qp
