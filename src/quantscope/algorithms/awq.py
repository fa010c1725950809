"""AWQ: activation-aware scales for weight-only quantization (Lin et al. 2024).

Weights that meet large activations matter most. AWQ scales input channel ``j`` of a weight
up by ``s_j = r_j^α`` (``r_j`` the channel's RMS over the calibration data), quantizes
``diag(s) W`` and divides the activation by ``s`` at run time (an inserted ``Mul``, as
SmoothQuant does; layers reading the same input share it): the salient rows get finer steps
relative to their size. ``α`` in ``[0, 1]`` is searched per input tensor on the layer output
error ``tr(ΔWᵀ XᵀX ΔW)`` of the block-wise quantized weight (``α = 0`` is plain rounding, so
AWQ is applied only where it lowers that error). GPTQ, when also chosen, then rounds the
scaled weights with the Hessian of the scaled input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from quantscope.algorithms.activation_stats import (
    ExtraStats,
    extra_of,
    layer_error,
    with_extra,
)
from quantscope.algorithms.smoothquant import Group, groups, rewrite, weight_kn
from quantscope.calibrate import TensorStats
from quantscope.graph.queries import node_label
from quantscope.io import Model
from quantscope.numerics.blockwise import quantize_blockwise

if TYPE_CHECKING:
    from quantscope.config.methods import _WeightOnly

logger = logging.getLogger(__name__)

TAG = "awq"
ALPHAS = tuple(round(float(a), 2) for a in np.linspace(0.0, 1.0, 11))
MIN_GAIN = 0.98


def choose(group: Group, extra: ExtraStats, config: _WeightOnly) -> dict[str, Any] | None:
    """The scales of one group, or None when no ``α > 0`` lowers the layer error enough."""
    stats = extra.get(group.input)
    if stats is None or stats.gram is None:
        return None
    w_kn = np.concatenate([weight_kn(n) for n in group.nodes], axis=1)  # type: ignore[misc]
    if w_kn.shape[0] % config.block_size:
        return None  # the plan refuses this block size and says why
    rms = np.sqrt(np.maximum(np.diag(stats.gram) / max(stats.rows, 1), 0.0))
    rms[rms == 0] = rms[rms > 0].min() if np.any(rms > 0) else 1.0
    errors: dict[float, float] = {}
    tried: dict[float, np.ndarray] = {}
    for alpha in ALPHAS:
        s = rms**alpha
        s /= np.sqrt(s.max() * s.min())
        bq = quantize_blockwise((w_kn * s[:, None]).astype(np.float32), config.bits, config.block_size,
                                symmetric=config.symmetric)
        errors[alpha] = layer_error(bq.dequantize() / s[:, None] - w_kn, stats.gram)
        tried[alpha] = s
    best = min(errors, key=errors.__getitem__)
    if best == 0.0 or not errors[best] < MIN_GAIN * errors[0.0]:
        return None
    gain = 10.0 * float(np.log10(errors[0.0] / errors[best])) if errors[best] > 0 else 0.0
    return {"input": group.input, "nodes": [node_label(n) for n in group.nodes], "alpha": best,
            "estimated_gain_db": round(gain, 3), "scales": [float(v) for v in tried[best]]}


def apply(
    model: Model, nodes: Iterable[ir.Node], stats: TensorStats | None, config: _WeightOnly
) -> tuple[TensorStats | None, list[dict[str, Any]]]:
    """Choose and write the scales into ``model`` (the prepared copy); the statistics of the scaled inputs added."""
    extra = extra_of(stats)
    if extra is None:
        return stats, []
    records = [r for g in groups(nodes) if (r := choose(g, extra, config)) is not None]
    rewrite(model.ir.graph, records, tag=TAG)
    if records:
        logger.info("AWQ: %d input(s) scaled", len(records))
    return with_extra(stats, extra.with_scaled(records, TAG)), records
