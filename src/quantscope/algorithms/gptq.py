"""GPTQ: Hessian-aware rounding of a layer's weights with error feedback (Frantar et al. 2023).

For a linear layer ``y = x W`` (``W [K, N]``) the output error of a quantized ``Ŵ`` over the
calibration inputs is ``tr((W - Ŵ)ᵀ H (W - Ŵ)) / 2`` with ``H = 2 XᵀX``. GPTQ quantizes the K
rows of ``W`` one at a time and spreads each row's rounding error over the rows not yet
quantized, in the proportions the inverse Hessian gives (the optimal brain surgeon update), so
later rows compensate earlier rounding. As in the paper: dampening ``0.01 · mean(diag H)``,
the Cholesky factor of ``H⁻¹`` (numerically stable), lazy batches of 128 rows whose updates are
applied to the rest at once, and block-wise scales computed when their block starts (from the
already-updated rows). Pure NumPy; float64 for the Hessian algebra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from quantscope.algorithms.activation_stats import ExtraStats, layer_error, summed_gram
from quantscope.graph.queries import attr_int, const_array
from quantscope.numerics.affine import QParams, dequantize
from quantscope.numerics.blockwise import BlockQuant, quantize_blockwise

if TYPE_CHECKING:
    from quantscope.config.methods import _WeightOnly
    from quantscope.methods._weights import WeightSite

logger = logging.getLogger(__name__)

DAMP = 0.01
LAZY_BATCH = 128

Grid = tuple[np.ndarray, np.ndarray, int, int]
"""One group's quantization grid: scale ``[N]``, zero point ``[N]``, lowest and highest code."""

GridOf = Callable[[np.ndarray], Grid]
"""Makes the grid of a group from its rows ``[rows, N]`` (in the K order of ``W``)."""


def hessian(gram: np.ndarray, rows: int) -> np.ndarray:
    """GPTQ's ``H = 2 XᵀX / rows`` from the summed second moments ``XᵀX`` of ``rows`` input rows."""
    return 2.0 * np.asarray(gram, dtype=np.float64) / max(int(rows), 1)


def _inverse_cholesky(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of the dampened ``H⁻¹`` (dead inputs get a unit diagonal)."""
    h = h.astype(np.float64, copy=True)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    scale = damp * float(np.mean(np.diag(h)))
    for attempt in range(6):  # a rank-deficient H: more damping until it factors
        try:
            lower = np.linalg.cholesky(h + np.eye(h.shape[0]) * scale * (10.0**attempt))
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise np.linalg.LinAlgError("the input Hessian could not be factored even with strong damping")
    inverse = np.linalg.inv(lower)
    return np.linalg.cholesky(inverse.T @ inverse).T


def gptq(
    w: np.ndarray,
    h: np.ndarray,
    grid_of: GridOf,
    group: int,
    *,
    damp: float = DAMP,
    lazy: int = LAZY_BATCH,
) -> tuple[np.ndarray, list[Grid]]:
    """GPTQ codes of ``w [K, N]`` under the Hessian ``h [K, K]``.

    Each run of ``group`` rows shares one grid, made by ``grid_of`` from those rows when the
    group starts (``group = K``: one grid per output, made from the unchanged ``w``). Returns the
    integer codes ``[K, N]`` (int32) and the grid of every group, in order.
    """
    k, n = w.shape
    if h.shape != (k, k):
        raise ValueError(f"Hessian {h.shape} does not match a weight with K={k}")
    dead = np.diag(h) <= 0
    work = np.asarray(w, dtype=np.float64).copy()
    work[dead, :] = 0.0
    u = _inverse_cholesky(h, damp)
    whole = group >= k  # one grid per output, from the unchanged weight
    lazy = group if not whole and group > lazy else max(lazy // group, 1) * group if not whole else lazy
    codes = np.zeros((k, n), dtype=np.int32)
    grid: Grid | None = grid_of(np.asarray(w, dtype=np.float32)) if whole else None
    grids: list[Grid] = [grid] if grid is not None else []
    for start in range(0, k, lazy):
        stop = min(start + lazy, k)
        rows = work[start:stop].copy()
        errors = np.zeros_like(rows)
        u_batch = u[start:stop, start:stop]
        for i in range(stop - start):
            if not whole and (start + i) % group == 0:
                grid = grid_of(rows[i:i + group].astype(np.float32))
                grids.append(grid)
            assert grid is not None
            scale, zero, lo, hi = grid
            q = np.clip(np.rint(rows[i] / scale) + zero, lo, hi)
            codes[start + i] = q.astype(np.int32)
            deq = (q - zero).astype(np.float32) * scale.astype(np.float32)
            err = (rows[i] - deq) / u_batch[i, i]
            rows[i:] -= np.outer(u_batch[i, i:], err)
            errors[i] = err
        work[stop:] -= u[start:stop, stop:].T @ errors
    return codes, grids


def gptq_blockwise(
    w: np.ndarray, gram: np.ndarray, rows: int, bits: int, block_size: int, *,
    symmetric: bool = True, k_axis: int = 0, damp: float = DAMP,
) -> BlockQuant:
    """``w`` quantized block-wise (as :func:`~quantscope.numerics.blockwise.quantize_blockwise`) by GPTQ.

    ``gram`` is the summed ``XᵀX`` of ``rows`` calibration inputs of the layer; each block's
    scale and zero point are those round-to-nearest would give the block's rows once the
    earlier rows' errors have been fed back into them.
    """
    w_kn = np.asarray(w if k_axis == 0 else w.T, dtype=np.float32)
    k, n = w_kn.shape

    def grid_of(block: np.ndarray) -> Grid:
        bq = quantize_blockwise(block, bits, block_size, symmetric=symmetric)
        return bq.scales[:, 0], bq.zero_points[:, 0].astype(np.float32), 0, (1 << bits) - 1

    codes, grids = gptq(w_kn, hessian(gram, rows), grid_of, block_size, damp=damp)
    return BlockQuant(
        codes=codes.T.reshape(n, k // block_size, block_size).astype(np.uint8),
        scales=np.stack([g[0] for g in grids], axis=1).astype(np.float32),
        zero_points=np.stack([g[1] for g in grids], axis=1).astype(np.uint8),
        bits=bits, block_size=block_size, symmetric=symmetric,
    )


def gptq_group(
    w: np.ndarray, config: _WeightOnly, k_axis: int, sites: Sequence[WeightSite], extra: ExtraStats | None,
    gains: list[float],
) -> BlockQuant:
    """One weight (shared by ``sites``) quantized by GPTQ for a weight-only config.

    The Hessian sums the input second moments of every node using the weight. Appends to
    ``gains`` how much lower (in dB) the layer output error is than round-to-nearest's; a
    weight whose inputs were not observed falls back to round-to-nearest.
    """
    rtn = quantize_blockwise(w, config.bits, config.block_size, symmetric=config.symmetric, k_axis=k_axis)
    moments = summed_gram(extra, [s.node for s in sites]) if extra is not None else None
    if moments is None:
        logger.info("GPTQ: no input statistics for %s; rounded to nearest", sites[0].label)
        return rtn
    gram, rows = moments
    bq = gptq_blockwise(w, gram, rows, config.bits, config.block_size, symmetric=config.symmetric,
                        k_axis=k_axis, damp=config.gptq_damp)
    w_kn = w if k_axis == 0 else w.T
    ours, base = layer_error(w_kn - bq.dequantize(), gram), layer_error(w_kn - rtn.dequantize(), gram)
    if ours > base:  # never worse than round-to-nearest on the calibration data
        return rtn
    gains.append(10.0 * float(np.log10(base / ours)) if ours > 0 else 0.0)
    return bq


def gptq_int8(
    w: np.ndarray, axis: int | None, qp: QParams, bits: int, gram: np.ndarray, rows: int, damp: float = DAMP
) -> np.ndarray:
    """Int8 codes of a 2-D static-int8 weight by GPTQ, on the scales ``qp`` round-to-nearest chose.

    ``w`` is ``[K, N]`` with outputs on ``axis`` 1 (a MatMul, or a Gemm with ``transB=0``) or
    ``[N, K]`` with outputs on ``axis`` 0 (``transB=1``); ``axis`` None is one scale for all.
    Codes stay within ``±(2**(bits-1) - 1)``, as :func:`~quantscope.numerics.affine.weight_qparams` keeps them.
    """
    w_kn = np.asarray(w if axis != 0 else w.T, dtype=np.float32)
    k, n = w_kn.shape
    scale = np.broadcast_to(np.asarray(qp.scale, dtype=np.float32), (n,)).copy()
    limit = (1 << (bits - 1)) - 1
    grid: Grid = (scale, np.zeros(n, dtype=np.float32), -limit, limit)
    codes, _ = gptq(w_kn, hessian(gram, rows), lambda _rows: grid, k, damp=damp)
    codes = codes.astype(np.int8)
    return codes if axis != 0 else codes.T.copy()


def static_weights(
    nodes: Mapping[str, ir.Node], weights: Mapping[tuple[str, int], tuple[np.ndarray, QParams]],
    bits: Mapping[tuple[str, int], int], extra: ExtraStats | None, damp: float = DAMP,
) -> tuple[dict[tuple[str, int], tuple[np.ndarray, QParams]], dict[str, float]]:
    """The static-int8 weights of 2-D MatMul/Gemm nodes re-rounded by GPTQ where it lowers the layer error.

    ``weights`` maps (node label, input index) to the round-to-nearest codes and parameters;
    returns the updated mapping and, per node, the layer output error gain in dB.
    """
    out = dict(weights)
    gains: dict[str, float] = {}
    for key, (q, qp) in weights.items():
        node = nodes[key[0]]
        w = const_array(node.inputs[key[1]]) if key[1] == 1 else None
        moments = summed_gram(extra, [node]) if extra is not None else None
        if node.op_type not in ("MatMul", "Gemm") or w is None or w.ndim != 2 or moments is None:
            continue
        transposed = node.op_type == "Gemm" and attr_int(node, "transB", 0)
        axis = None if qp.axis is None else (0 if transposed else 1)
        if qp.axis is not None and qp.axis != axis:
            continue
        codes = gptq_int8(w, axis, qp, bits[key], moments[0], moments[1], damp)
        ours, base = (layer_error(_kn(w - dequantize(c, qp), transposed), moments[0]) for c in (codes, q))
        if ours < base:
            out[key] = (codes, qp)
            gains[key[0]] = round(10.0 * float(np.log10(base / ours)) if ours > 0 else 0.0, 3)
    return out, gains


def _kn(a: np.ndarray, transposed: bool) -> np.ndarray:
    return a.T if transposed else a
