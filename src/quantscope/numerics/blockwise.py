"""Block-wise weight quantization for the weight-only methods (pure NumPy, no graphs).

A 2-D weight is used as ``x @ W`` with ``W`` of shape ``[K, N]`` (MatMul orientation; a Gemm
weight with ``transB=1`` is ``W.T``). Each output column ``n`` is cut along ``K`` into
``n_blocks = K / block_size`` blocks of ``block_size`` consecutive values, and every block
gets its own float32 scale and integer zero point:

* codes are unsigned, ``q`` in ``[0, 2**bits - 1]``; ``dequantized = (q - zero_point) * scale``
  computed in float32;
* **symmetric**: ``zero_point = 2**(bits-1)`` (8 for 4 bits, 128 for 8 bits: ONNX Runtime's
  default when MatMulNBits has no zero-point input) and ``scale = m / -2**(bits-1)`` where
  ``m`` is the block's value of largest magnitude, with its sign (as ONNX Runtime's own MLAS
  quantizer does): ``m`` lands exactly on code 0 and the full 16 (or 256) levels are used, at
  the price of a scale that may be negative and values of the other sign clipped at most one
  step. Measured on MiniLM's MatMul weights (block 32, 4 bits) it beats ``max|w| / 7`` by
  about 1 dB SQNR;
* **asymmetric**: the block's range widened to include 0, ``scale = (max - min) / (2**bits-1)``,
  ``zero_point = round(-min / scale)``; the integer grid always contains 0.

An all-zero block gets scale 1 (any scale represents it exactly).

Algorithms: ``"rtn"`` rounds to nearest with the scales above; ``"hqq"`` starts there and runs
the half-quadratic proximal solver of HQQ (Badri & Shaji, 2023): alternate rounding, a
generalized soft-threshold of the error for an lp-norm (p = 0.7, so outliers are not chased),
and closed-form least-squares updates of the scale (and, asymmetric, the zero point, rounded to
an integer because MatMulNBits and DequantizeLinear store integer zero points). Each block
keeps the iterate with the smallest squared error, so HQQ is never worse than RTN per block.

Storage (:class:`BlockQuant`): ``matmulnbits_b`` is ONNX Runtime's MatMulNBits input ``B``,
uint8 ``[N, n_blocks, blob_size]`` with ``blob_size = block_size * bits / 8``, the codes of
one block in K order packed little-endian (for 4 bits: the first value in the low nibble);
``scales`` float32 ``[N * n_blocks]`` (column-major over blocks); ``matmulnbits_zero_points``
uint8 ``[N * ceil(n_blocks * bits / 8)]``, each column's zero points packed like ``B`` and
padded to a whole byte. ``blocked_dequantize`` gives the tensors of an ONNX opset-21
``DequantizeLinear`` with ``block_size``: int4/int8 values ``q - zero_point`` (symmetric) or
uint4/uint8 codes with their zero points (asymmetric).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.chunks import all_finite, row_slices
from quantscope.numerics.packing import pack_bits, unpack_bits

__all__ = [
    "ALGORITHMS",
    "BLOCK_SIZES",
    "BlockQuant",
    "BlockedDQ",
    "blockwise_sqnr",
    "dequantize_blockwise",
    "quantize_blockwise",
    "reconstruction_sqnr",
    "valid_block_sizes",
]

BLOCK_SIZES = (16, 32, 64, 128, 256)
ALGORITHMS = ("rtn", "hqq")
_BITS = (2, 4, 8)  # widths whose codes never straddle a byte (MatMulNBits' packing)

# HQQ solver settings (the HQQ paper's defaults for its proximal solver)
HQQ_LP_NORM = 0.7
HQQ_BETA = 10.0
HQQ_KAPPA = 1.01
HQQ_ITERATIONS = 20


@dataclass(frozen=True, eq=False)
class BlockedDQ:
    """Tensors of one opset-21 block-wise ``DequantizeLinear``, in the weight's own orientation."""

    values: np.ndarray  # int8 (symmetric, holds int4 values when bits=4) or uint8 codes
    scale: np.ndarray  # float32, the weight's shape with the K axis divided by block_size
    zero_point: np.ndarray | None  # same dtype as values, shape of scale; None when symmetric
    axis: int  # the K axis
    block_size: int
    signed: bool  # values are int4/int8 (True) or uint4/uint8 (False)


@dataclass(frozen=True, eq=False)
class BlockQuant:
    """One weight quantized block-wise along K (see the module docstring for the layout)."""

    codes: np.ndarray  # uint8 [N, n_blocks, block_size], in [0, 2**bits - 1]
    scales: np.ndarray  # float32 [N, n_blocks]
    zero_points: np.ndarray  # uint8 [N, n_blocks]
    bits: int
    block_size: int
    symmetric: bool

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.codes.shape[1])

    @property
    def k(self) -> int:
        return self.n_blocks * self.block_size

    def dequantize(self) -> np.ndarray:
        """The float32 weight ``[K, N]`` that the stored codes represent."""
        centered = self.codes.astype(np.float32) - self.zero_points[..., None].astype(np.float32)
        return (centered * self.scales[..., None]).reshape(self.n, self.k).T.copy()

    # -- MatMulNBits ------------------------------------------------------------------
    def matmulnbits_b(self) -> np.ndarray:
        """Input ``B``: uint8 ``[N, n_blocks, block_size * bits / 8]``."""
        blob = self.block_size * self.bits // 8
        return _pack_rows(self.codes.reshape(-1, self.block_size), self.bits).reshape(
            self.n, self.n_blocks, blob
        )

    def matmulnbits_scales(self) -> np.ndarray:
        """Input ``scales``: float32 ``[N * n_blocks]``."""
        return self.scales.reshape(-1).astype(np.float32)

    def matmulnbits_zero_points(self) -> np.ndarray | None:
        """Input ``zero_points``: packed uint8 ``[N * ceil(n_blocks * bits / 8)]``; None when symmetric.

        Symmetric weights leave the input out: ONNX Runtime then uses ``2**(bits-1)``.
        """
        if self.symmetric:
            return None
        return _pack_rows(self.zero_points, self.bits).reshape(-1)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the MatMulNBits tensors (codes, scales, packed zero points)."""
        zp = self.matmulnbits_zero_points()
        return self.n * self.n_blocks * self.block_size * self.bits // 8 + 4 * self.scales.size + (
            0 if zp is None else zp.size
        )

    # -- blocked DequantizeLinear -------------------------------------------------------
    def blocked_dequantize(self, k_axis: int) -> BlockedDQ:
        """Tensors for ``DequantizeLinear(axis=k_axis, block_size)`` of a weight stored as
        ``[K, N]`` (``k_axis=0``) or ``[N, K]`` (``k_axis=1``)."""
        if k_axis not in (0, 1):
            raise ConfigError(f"k_axis must be 0 or 1, got {k_axis!r}")
        codes = self.codes.reshape(self.n, self.k)  # [N, K]
        scale = self.scales.astype(np.float32)  # [N, n_blocks]
        if self.symmetric:
            values = (codes.astype(np.int16) - (1 << (self.bits - 1))).astype(np.int8)
            zero_point = None
        else:
            values = codes.copy()
            zero_point = self.zero_points.copy()
        if k_axis == 0:
            values, scale = values.T.copy(), scale.T.copy()
            zero_point = None if zero_point is None else zero_point.T.copy()
        return BlockedDQ(values, scale, zero_point, k_axis, self.block_size, self.symmetric)


def _pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack each row of ``codes`` [R, C] separately (padded to a whole byte): [R, ceil(C*bits/8)]."""
    per_byte = 8 // bits
    rows, cols = codes.shape
    pad = (-cols) % per_byte
    if pad:
        codes = np.concatenate([codes, np.zeros((rows, pad), dtype=codes.dtype)], axis=1)
    return pack_bits(codes, bits).reshape(rows, -1)


def unpack_rows(packed: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """Inverse of the row packing: uint8 [R, bytes] → codes [R, cols]."""
    rows = packed.shape[0]
    per_row = packed.shape[1] * (8 // bits)
    return unpack_bits(packed.reshape(-1), bits, rows * per_row).reshape(rows, per_row)[:, :cols]


def valid_block_sizes(ks: Iterable[int], candidates: Iterable[int] = BLOCK_SIZES) -> list[int]:
    """The candidate block sizes that divide every input dimension in ``ks``."""
    ks = list(ks)
    return [b for b in candidates if all(k % b == 0 for k in ks)]


def _check(w: np.ndarray, bits: int, block_size: int, k_axis: int, algorithm: str) -> np.ndarray:
    if bits not in _BITS:
        raise ConfigError(f"bits={bits!r} is not valid for block-wise packing; choose one of {_BITS}")
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer) or block_size < 2:
        raise ConfigError(f"block_size={block_size!r} is not valid; it must be an integer >= 2")
    if block_size * bits % 8:
        raise ConfigError(f"block_size={block_size} * bits={bits} must be a whole number of bytes")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm={algorithm!r} is not valid; choose one of: {', '.join(ALGORITHMS)}")
    if k_axis not in (0, 1):
        raise ConfigError(f"k_axis must be 0 or 1, got {k_axis!r}")
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ConfigError(f"block-wise quantization takes a 2-D float weight, got {w.dtype} {w.shape}")
    if not all_finite(w):
        raise ConfigError("the weight holds NaN or infinity; it cannot be quantized")
    k = w.shape[k_axis]
    if k % block_size:
        raise ConfigError(
            f"block_size={block_size} does not divide the weight's input dimension K={k}; "
            f"block sizes that do: {', '.join(map(str, valid_block_sizes([k]))) or 'none'}"
        )
    return w


def quantize_blockwise(
    w: np.ndarray,
    bits: int,
    block_size: int,
    *,
    symmetric: bool = True,
    k_axis: int = 0,
    algorithm: str = "rtn",
) -> BlockQuant:
    """Quantize the 2-D weight ``w`` in blocks of ``block_size`` along its K axis ``k_axis``.

    ``k_axis=0``: ``w`` is ``[K, N]`` (a MatMul weight); ``k_axis=1``: ``w`` is ``[N, K]``
    (a Gemm weight with ``transB=1``). Raises :class:`ConfigError` for bad arguments,
    non-finite weights, or a block size that does not divide K.
    """
    w = _check(w, bits, block_size, k_axis, algorithm)
    n, k = (w.shape[1], w.shape[0]) if k_axis == 0 else w.shape
    n_blocks = k // block_size
    codes = np.empty((n, n_blocks, block_size), dtype=np.uint8)
    scales = np.empty((n, n_blocks), dtype=np.float32)
    zero_points = np.empty((n, n_blocks), dtype=np.uint8)
    # output channels a chunk at a time (each block is solved on its own): temporaries stay small
    for rows in row_slices(n, k * 4):
        part = (w[:, rows].T if k_axis == 0 else w[rows]).astype(np.float32)
        x = part.reshape(-1, block_size)  # one row per block, column-major over blocks
        scale, zero = _rtn_params(x, bits, symmetric)
        if algorithm == "hqq":
            scale, zero = _hqq(x, bits, symmetric, scale, zero)
        count = rows.stop - rows.start
        codes[rows] = _codes(x, scale, zero, bits).reshape(count, n_blocks, block_size)
        scales[rows] = scale.reshape(count, n_blocks)
        zero_points[rows] = zero.reshape(count, n_blocks)
    return BlockQuant(
        codes=codes, scales=scales, zero_points=zero_points, bits=bits, block_size=block_size, symmetric=symmetric,
    )


def blockwise_sqnr(w: np.ndarray, bq: BlockQuant, k_axis: int = 0) -> float:
    """:func:`reconstruction_sqnr` of ``w`` against ``bq`` (quantized from it along ``k_axis``),
    dequantized a chunk of output channels at a time (no float copy of the whole weight)."""
    signal = noise = 0.0
    for rows in row_slices(bq.n, bq.k * 8):
        part = np.asarray(w[:, rows].T if k_axis == 0 else w[rows], dtype=np.float64)
        centered = bq.codes[rows].astype(np.float32) - bq.zero_points[rows, :, None].astype(np.float32)
        w_hat = (centered * bq.scales[rows, :, None]).reshape(part.shape)
        noise += float(np.sum(np.square(part - w_hat.astype(np.float64))))
        signal += float(np.sum(np.square(part)))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def dequantize_blockwise(bq: BlockQuant, k_axis: int = 0) -> np.ndarray:
    """The float32 weight in the orientation it was quantized from."""
    w = bq.dequantize()
    return w if k_axis == 0 else w.T.copy()


def reconstruction_sqnr(w: np.ndarray, w_hat: np.ndarray) -> float:
    """SQNR in dB of a reconstruction (``inf`` when exact)."""
    w64 = np.asarray(w, dtype=np.float64)
    noise = float(np.sum(np.square(w64 - np.asarray(w_hat, dtype=np.float64))))
    signal = float(np.sum(np.square(w64)))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


# -- solvers over rows of blocks: x [R, block_size] ------------------------------------
def _rtn_params(x: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    qmax = (1 << bits) - 1
    rows = np.arange(x.shape[0])
    if symmetric:
        half = 1 << (bits - 1)
        extreme = x[rows, np.abs(x).argmax(axis=1)]
        scale = extreme / np.float32(-half)
        zero = np.full(x.shape[0], half, dtype=np.float32)
    else:
        lo = np.minimum(x.min(axis=1), 0.0)
        hi = np.maximum(x.max(axis=1), 0.0)
        scale = (hi - lo) / np.float32(qmax)
        safe = np.where(scale == 0, 1.0, scale)
        zero = np.clip(np.round(-lo / safe), 0, qmax).astype(np.float32)
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return scale[:, None], zero[:, None]


def _codes(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    q = x / scale
    np.round(q, out=q)
    q += zero
    return np.clip(q, 0, (1 << bits) - 1, out=q).astype(np.uint8)


def _sq_error(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    return np.sum(np.square(x - (q - zero) * scale), axis=1)


def _shrink(e: np.ndarray, beta: float, p: float) -> np.ndarray:
    """Proximal operator of the lp-norm (p < 1), HQQ's generalized soft-thresholding."""
    a = np.abs(e)
    # a**(p-1) as exp((p-1) log a): twice as fast as np.power in float32
    threshold = np.float32(1.0 / beta) * np.exp(np.float32(p - 1.0) * np.log(a + np.float32(1e-8)))
    return np.sign(e) * np.maximum(a - threshold, np.float32(0.0))


def _hqq(
    x: np.ndarray, bits: int, symmetric: bool, scale: np.ndarray, zero: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    qmax = (1 << bits) - 1
    q = _codes(x, scale, zero, bits).astype(np.float32)
    best_scale, best_zero = scale.copy(), zero.copy()
    best_err = _sq_error(x, q, scale, zero)
    beta = HQQ_BETA
    for _ in range(HQQ_ITERATIONS):
        target = x - _shrink(x - (q - zero) * scale, beta, HQQ_LP_NORM)
        if not symmetric:
            # least-squares line target ≈ a*q + c, then an integer zero point -c/a
            q_mean = q.mean(axis=1, keepdims=True)
            t_mean = target.mean(axis=1, keepdims=True)
            var = np.sum(np.square(q - q_mean), axis=1, keepdims=True)
            cov = np.sum((q - q_mean) * (target - t_mean), axis=1, keepdims=True)
            slope = np.where(var > 0, cov / np.where(var > 0, var, 1.0), scale)
            slope = np.where(slope == 0, scale, slope)
            zero = np.clip(np.round(q_mean - t_mean / slope), 0, qmax).astype(np.float32)
        d = q - zero
        den = np.sum(d * d, axis=1, keepdims=True)
        new_scale = np.sum(target * d, axis=1, keepdims=True) / np.where(den > 0, den, 1.0)
        scale = np.where((den > 0) & (new_scale != 0), new_scale, scale).astype(np.float32)
        beta *= HQQ_KAPPA
        q = _codes(x, scale, zero, bits).astype(np.float32)
        err = _sq_error(x, q, scale, zero)
        better = err < best_err
        best_scale = np.where(better[:, None], scale, best_scale)
        best_zero = np.where(better[:, None], zero, best_zero)
        best_err = np.minimum(err, best_err)
    return best_scale.astype(np.float32), best_zero.astype(np.float32)
