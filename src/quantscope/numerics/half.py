"""float32 → float16 conversion of constant tensors, with the out-of-range values counted (pure NumPy).

float16 holds magnitudes up to 65504 and down to 2**-24 (the smallest subnormal). A plain
``astype`` turns larger magnitudes into ±inf (an attention mask built from
``finfo(float32).min`` becomes ``-inf``, and ``0 * -inf`` is NaN) and smaller non-zero ones
into 0 (an ε of 1e-12 vanishes, and ``sqrt(var + ε)`` may divide by zero). :func:`to_float16`
clamps both to the nearest representable non-zero magnitude instead and reports how many values
it moved. NaN and ±inf stay what they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantscope.numerics.chunks import row_slices

__all__ = ["FLOAT16_MAX", "FLOAT16_TINY", "HalfConversion", "to_float16"]

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
FLOAT16_TINY = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24 ≈ 5.96e-8


@dataclass(frozen=True)
class HalfConversion:
    """A float16 copy of an array and how many values had to be moved into float16's range."""

    array: np.ndarray
    clamped_large: int  # finite |x| > 65504, clamped to ±65504
    raised_tiny: int  # non-zero |x| < 2**-24, raised to ±2**-24 so it stays non-zero
    max_abs_error: float  # largest |float16 - float32| over finite values (after clamping)


def to_float16(array: np.ndarray) -> HalfConversion:
    """Round ``array`` (float32) to float16, clamping out-of-range finite values (a new array).

    A large array is converted a chunk at a time (:mod:`quantscope.numerics.chunks`).
    """
    source = np.asarray(array)
    half = np.empty(source.shape, dtype=np.float16)
    flat_in, flat_out = source.reshape(-1), half.reshape(-1)
    large = tiny = 0
    error = 0.0
    for part in row_slices(flat_in.size, source.dtype.itemsize):
        piece = _half(flat_in[part])
        flat_out[part] = piece.array
        large, tiny = large + piece.clamped_large, tiny + piece.raised_tiny
        error = max(error, piece.max_abs_error)
    return HalfConversion(array=half, clamped_large=large, raised_tiny=tiny, max_abs_error=error)


def _half(array: np.ndarray) -> HalfConversion:
    x = np.asarray(array, dtype=np.float32)
    finite = np.isfinite(x)
    mag = np.abs(x)
    large = finite & (mag > FLOAT16_MAX)
    tiny = finite & (mag > 0) & (mag < FLOAT16_TINY)
    clipped = np.where(large, np.sign(x) * FLOAT16_MAX, x)
    clipped = np.where(tiny, np.sign(x) * FLOAT16_TINY, clipped)
    half = clipped.astype(np.float16)
    keep = finite & ~large
    err = np.abs(half.astype(np.float32)[keep] - x[keep])
    return HalfConversion(
        array=half,
        clamped_large=int(large.sum()),
        raised_tiny=int(tiny.sum()),
        max_abs_error=float(err.max()) if err.size else 0.0,
    )
