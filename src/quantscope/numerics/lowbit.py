"""Codebook-coded weights, and ternary / binary weights (pure NumPy).

A :class:`CodedTensor` is a weight stored as small integer codes plus a float codebook,
one codebook for the whole tensor or one per output channel. Clustering
(:mod:`quantscope.numerics.kmeans`), ternary and binary weights are all written this way.

* Ternary (TWN, Li & Liu 2016), per output channel: ``Δ = threshold · mean|w|``,
  ``α = mean(|w| where |w| > Δ)``, ``w_t = α · sign(w)`` where ``|w| > Δ`` and 0 elsewhere.
  Codes 0, 1, 2 stand for ``-α, 0, +α`` (2 bits).
* Binary (XNOR-Net, Rastegari et al. 2016), per output channel: ``α = mean|w|``,
  ``w_b = α · sign(w)`` with ``sign(0) := +1``. Codes 0, 1 stand for ``-α, +α`` (1 bit).

Both formulas are the closed-form least-squares scalings of the cited papers for a fixed
sign pattern; without retraining the network around them, most models lose most of their
accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.chunks import row_slices
from quantscope.numerics.packing import check_bits

__all__ = ["CodedTensor", "binarize", "reconstruction_error", "ternarize"]


@dataclass(frozen=True, eq=False)
class CodedTensor:
    """``codes`` (uint8, the weight's shape) index ``codebook``.

    ``codebook`` is float32 ``[K]`` when ``axis`` is None, else ``[C, K]`` with
    ``C = codes.shape[axis]`` (one codebook per output channel). ``bits`` is the storage
    width of one code (``K <= 2**bits``).

    A per-channel codebook that is a scale per channel times shared levels (ternary:
    ``α_c · [-1, 0, 1]``) also carries ``scale`` ``[C]`` and ``levels`` ``[K]`` (see
    :meth:`scaled`), so that only ``C + K`` floats need storing.
    """

    codes: np.ndarray
    codebook: np.ndarray
    axis: int | None
    bits: int
    scale: np.ndarray | None = None
    levels: np.ndarray | None = None

    @classmethod
    def scaled(
        cls, codes: np.ndarray, scale: np.ndarray, levels: np.ndarray, axis: int, bits: int
    ) -> CodedTensor:
        """Per-channel codebook ``scale[:, None] * levels[None, :]`` (computed in float32)."""
        s = np.asarray(scale, dtype=np.float32).reshape(-1)
        lv = np.asarray(levels, dtype=np.float32).reshape(-1)
        return cls(
            codes=codes, codebook=s[:, None] * lv[None, :], axis=axis, bits=bits, scale=s, levels=lv
        )

    @property
    def stored_codebook_bytes(self) -> int:
        """Bytes of float32 the codebook takes when stored (scale + levels when factored)."""
        if self.scale is not None and self.levels is not None:
            return int(self.scale.nbytes + self.levels.nbytes)
        return int(self.codebook.nbytes)

    def __post_init__(self) -> None:
        check_bits(self.bits)
        codes = np.asarray(self.codes)
        book = np.asarray(self.codebook, dtype=np.float32)
        if codes.dtype != np.uint8:
            raise ConfigError(f"codes must be uint8, got {codes.dtype}")
        if self.axis is None:
            if book.ndim != 1:
                raise ConfigError(f"a per-tensor codebook is 1-D, got shape {book.shape}")
        else:
            if not 0 <= self.axis < codes.ndim:
                raise ConfigError(
                    f"axis {self.axis} is out of range for codes of rank {codes.ndim}"
                )
            if book.ndim != 2 or book.shape[0] != codes.shape[self.axis]:
                raise ConfigError(
                    f"a per-channel codebook is [channels, K] = [{codes.shape[self.axis]}, K], got {book.shape}"
                )
        k = book.shape[-1]
        if k > (1 << self.bits) or k < 1:
            raise ConfigError(f"{k} codebook entries do not fit {self.bits}-bit codes")
        if codes.size and int(codes.max()) >= k:
            raise ConfigError(f"code {int(codes.max())} is outside a codebook of {k} entries")
        if (self.scale is None) != (self.levels is None):
            raise ConfigError("a factored codebook needs both scale and levels")
        if self.scale is not None and self.levels is not None:
            s = np.asarray(self.scale, dtype=np.float32)
            lv = np.asarray(self.levels, dtype=np.float32)
            if self.axis is None or not np.array_equal(s[:, None] * lv[None, :], book):
                raise ConfigError(
                    "a factored codebook must be per channel and equal scale[:, None] * levels"
                )
            object.__setattr__(self, "scale", s)
            object.__setattr__(self, "levels", lv)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "codebook", book)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    def decode(self) -> np.ndarray:
        """The float32 weight the codes stand for."""
        if self.axis is None:
            return self.codebook[self.codes]
        moved = np.moveaxis(self.codes, self.axis, 0)
        channels = moved.shape[0]
        flat = moved.reshape(channels, -1)
        rows = np.arange(channels)[:, None]
        values = self.codebook[rows, flat].reshape(moved.shape)
        return np.ascontiguousarray(np.moveaxis(values, 0, self.axis))


def reconstruction_error(w: np.ndarray, approx: np.ndarray) -> dict[str, float | None]:
    """Relative Frobenius error ``||w - approx|| / ||w||`` and SQNR in dB (None when exact)."""
    flat_w, flat_a = np.asarray(w).reshape(-1), np.asarray(approx).reshape(-1)
    # a chunk at a time: no float64 copies of the tensor
    return _error((flat_w[part], flat_a[part]) for part in row_slices(flat_w.size, 8))


def coded_error(w: np.ndarray, coded: CodedTensor) -> dict[str, float | None]:
    """:func:`reconstruction_error` of ``w`` against ``coded.decode()``, decoding a chunk at a time."""
    w = np.asarray(w)
    if coded.axis is None:
        flat_w, flat_c = w.reshape(-1), coded.codes.reshape(-1)
        return _error((flat_w[part], coded.codebook[flat_c[part]]) for part in row_slices(flat_w.size, 8))
    moved_w, moved_c = np.moveaxis(w, coded.axis, 0), np.moveaxis(coded.codes, coded.axis, 0)
    return _error((moved_w[c], coded.codebook[c][moved_c[c]]) for c in range(moved_w.shape[0]))


def _error(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float | None]:
    err2 = norm2 = 0.0
    for w_part, a_part in pairs:
        w64 = np.asarray(w_part, dtype=np.float64).reshape(-1)
        diff = w64 - np.asarray(a_part, dtype=np.float64).reshape(-1)
        err2 += float(diff.dot(diff))
        norm2 += float(w64.dot(w64))
    err, norm = math.sqrt(err2), math.sqrt(norm2)
    rel = err / norm if norm > 0 else (0.0 if err == 0 else math.inf)
    sqnr = None if err == 0 or norm == 0 else 20.0 * math.log10(norm / err)
    return {"rel_error": rel, "sqnr_db": sqnr}


def _channels_first(w: np.ndarray, axis: int) -> np.ndarray:
    w = np.asarray(w)
    if w.ndim == 0 or not -w.ndim <= axis < w.ndim:
        raise ConfigError(f"axis {axis} is out of range for a weight of shape {w.shape}")
    moved = np.moveaxis(w, axis, 0)
    return moved.reshape(moved.shape[0], -1).astype(np.float64)


def ternarize(w: np.ndarray, axis: int, threshold: float = 0.7) -> CodedTensor:
    """Ternary weights per channel along ``axis`` (TWN); codes 0/1/2 = -α/0/+α, 2 bits."""
    if not 0 < threshold < 2:
        raise ConfigError(f"threshold={threshold!r} must lie in (0, 2)")
    w = np.asarray(w, dtype=np.float32)
    axis = axis % w.ndim if w.ndim else axis
    rows = _channels_first(w, axis)
    mag = np.abs(rows)
    delta = threshold * mag.mean(axis=1, keepdims=True)
    keep = mag > delta
    count = keep.sum(axis=1)
    alpha = np.where(count > 0, (mag * keep).sum(axis=1) / np.maximum(count, 1), 0.0)
    codes = np.ones(rows.shape, dtype=np.uint8)
    codes[keep & (rows > 0)] = 2
    codes[keep & (rows < 0)] = 0
    moved_shape = np.moveaxis(w, axis, 0).shape
    codes = np.moveaxis(codes.reshape(moved_shape), 0, axis)
    return CodedTensor.scaled(
        np.ascontiguousarray(codes), alpha, np.array([-1.0, 0.0, 1.0]), axis, bits=2
    )


def binarize(w: np.ndarray, axis: int) -> CodedTensor:
    """Binary weights per channel along ``axis`` (XNOR-Net): α = mean|w|, codes 0/1 = -α/+α, 1 bit."""
    w = np.asarray(w, dtype=np.float32)
    axis = axis % w.ndim if w.ndim else axis
    rows = _channels_first(w, axis)
    alpha = np.abs(rows).mean(axis=1)
    codes = (rows >= 0).astype(np.uint8)  # sign(0) := +1
    moved_shape = np.moveaxis(w, axis, 0).shape
    codes = np.moveaxis(codes.reshape(moved_shape), 0, axis)
    return CodedTensor.scaled(
        np.ascontiguousarray(codes), alpha, np.array([-1.0, 1.0]), axis, bits=1
    )
