"""Bias correction (Nagel et al. 2019): remove the mean output shift that weight rounding adds.

A layer ``y = W x + b`` with quantized weights ``Ŵ`` is off on average by ``(Ŵ - W) E[x]``.
Adding ``(W - Ŵ) E[x]`` to the bias cancels that expected shift; ``E[x]`` per input channel
comes from the calibration data (:mod:`.activation_stats`). For a Conv the shift of output
channel ``o`` sums ``(W - Ŵ)[o, c, i, j] · E[x_c]`` over its filter (zero padding at the borders
is ignored, as in the paper); for a Gemm it is the matrix-vector product. Only Conv and Gemm
nodes with a constant bias are corrected (a MatMul has no bias of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from quantscope.algorithms.activation_stats import ExtraStats
from quantscope.graph.queries import attr_int, const_array, node_label
from quantscope.io import Model
from quantscope.numerics.affine import QParams, dequantize

KINDS = {"Conv": "channel_mean", "Gemm": "mean"}


def correctable(node: ir.Node) -> bool:
    """A Conv or Gemm with a constant bias (and, for Gemm, a non-transposed input)."""
    if node.op_type not in KINDS or len(node.inputs) < 3 or node.inputs[2] is None:
        return False
    if node.op_type == "Gemm" and attr_int(node, "transA", 0):
        return False
    return const_array(node.inputs[2]) is not None


def output_shift(node: ir.Node, delta: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``(W - Ŵ) E[x]`` per output channel, given ``delta = W - Ŵ`` in ``node``'s weight layout."""
    d = np.asarray(delta, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    if node.op_type == "Gemm":
        return d @ m if attr_int(node, "transB", 0) else m @ d
    groups = attr_int(node, "group", 1)
    out, per_group = d.shape[0], d.shape[1]
    filters = d.reshape(out, per_group, -1).sum(axis=2)  # [O, C/g]
    means = m.reshape(groups, per_group)[np.arange(out) // (out // groups)]  # the channels each filter reads
    return np.sum(filters * means, axis=1)


def corrections(
    nodes: Mapping[str, ir.Node], dequantized: Mapping[str, np.ndarray], extra: ExtraStats
) -> dict[str, list[float]]:
    """The bias shift of every node in ``dequantized`` (label → its dequantized weight) that can take one."""
    out: dict[str, list[float]] = {}
    for label, w_hat in dequantized.items():
        node = nodes[label]
        name = node.inputs[0].name if node.inputs[0] is not None else None
        w = const_array(node.inputs[1])
        if not correctable(node) or w is None or name not in extra:
            continue
        mean = getattr(extra[name], KINDS[node.op_type])
        if mean is None:
            continue
        out[label] = [float(v) for v in output_shift(node, w - w_hat, mean)]
    return out


def request(nodes: Iterable[ir.Node]) -> dict[str, tuple[str, ...]]:
    """The extra statistics bias correction reads: the mean of each correctable node's input."""
    out: dict[str, set[str]] = {}
    for node in nodes:
        if correctable(node) and node.inputs[0] is not None and node.inputs[0].name:
            out.setdefault(node.inputs[0].name, set()).add(KINDS[node.op_type])
    return {name: tuple(sorted(kinds)) for name, kinds in out.items()}


def planned(
    model: Model, weights: Mapping[str, tuple[np.ndarray, QParams]], extra: ExtraStats | None
) -> dict[str, list[float]]:
    """The shift of every node in ``weights`` (label → its int8 codes and parameters)."""
    if extra is None:
        return {}
    nodes = {node_label(n): n for n in model.ir.graph}
    return corrections(nodes, {label: dequantize(q, qp) for label, (q, qp) in weights.items()}, extra)


def apply(shifts: Mapping[str, list[float]], labels: Mapping[str, ir.Node]) -> None:
    """Add each node's shift to its bias (a shared or non-initializer bias gets its own copy)."""
    for label, shift in shifts.items():
        node = labels[label]
        bias = node.inputs[2]
        b = const_array(bias)
        assert bias is not None and b is not None
        corrected = (b.astype(np.float64) + np.asarray(shift)).astype(np.float32)
        if len(bias.uses()) == 1 and bias.is_initializer():
            bias.const_value = ir.tensor(corrected, name=bias.name)
        else:
            assert node.graph is not None
            fresh = ir.Value(name=f"{bias.name}_corrected_{len(node.graph.initializers)}",
                             const_value=ir.tensor(corrected))
            node.graph.register_initializer(fresh)
            node.replace_input_with(2, fresh)
