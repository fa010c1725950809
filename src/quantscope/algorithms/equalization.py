"""Cross-layer equalization (Nagel et al. 2019, "Data-free quantization").

For ``Conv₁ → Relu → Conv₂`` (pooling may sit between) the Relu is positively homogeneous, so dividing output channel
``c`` of Conv₁ (weights and bias) by ``s_c`` and multiplying the matching input channel of
Conv₂ by ``s_c`` leaves the float output unchanged. With ``s_c = sqrt(r1_c / r2_c)`` (``r1_c``
the largest magnitude of Conv₁'s filter ``c``, ``r2_c`` that of Conv₂'s weights reading
channel ``c``) both become ``sqrt(r1_c · r2_c)``: per-tensor and per-channel weight grids then
waste fewer levels, which matters most for depthwise convolutions, whose filters differ in
range by orders of magnitude. Conv₂ may be a regular (group 1) or a depthwise convolution;
chains are equalized pair by pair, a few sweeps over the graph. Pure NumPy on the weights of
the prepared float model, before calibration (activation ranges change with it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from quantscope.graph.queries import attr_int, const_array, consumers, node_label
from quantscope.io import Model

logger = logging.getLogger(__name__)

SWEEPS = 4
HOMOGENEOUS = ("Relu", "MaxPool", "AveragePool")
"""Per-channel ops that commute with a positive per-channel scale (``f(s·x) = s·f(x)``)."""


@dataclass(frozen=True, eq=False)
class Pair:
    """Two convolutions through positively homogeneous ops (or none)."""

    first: ir.Node
    second: ir.Node
    depthwise: bool  # the second is depthwise: its filter c reads channel c


def _initializer(node: ir.Node, index: int) -> np.ndarray | None:
    """The array of ``node``'s input ``index`` if it is an initializer only ``node`` uses."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None or not value.is_initializer() or len(value.uses()) != 1 or value.is_graph_output():
        return None
    return const_array(value)


def _single_consumer(value: ir.Value | None) -> ir.Node | None:
    if value is None or value.is_graph_output():
        return None
    users = consumers(value)
    return users[0] if len(users) == 1 else None


def pairs(graph: ir.Graph) -> list[Pair]:
    """Every ``Conv → (Relu, pooling)* → Conv`` whose weights can be rescaled without touching anything else."""
    found = []
    for first in graph:
        if first.op_type != "Conv" or first.domain not in ("", "ai.onnx"):
            continue
        w1 = _initializer(first, 1)
        if w1 is None or (len(first.inputs) > 2 and first.inputs[2] is not None and _initializer(first, 2) is None):
            continue
        value, second = first.outputs[0], _single_consumer(first.outputs[0])
        while second is not None and second.op_type in HOMOGENEOUS:  # Relu, pooling: commute with s > 0
            value, second = second.outputs[0], _single_consumer(second.outputs[0])
        if second is None or second.op_type != "Conv" or second.inputs[0] is not value:
            continue
        w2 = _initializer(second, 1)
        channels = w1.shape[0]
        group = attr_int(second, "group", 1)
        if w2 is None or group not in (1, channels) or (group == 1 and w2.shape[1] != channels):
            continue
        found.append(Pair(first, second, depthwise=group == channels and group > 1))
    return found


def _set(node: ir.Node, index: int, array: np.ndarray) -> None:
    value = node.inputs[index]
    assert value is not None
    value.const_value = ir.tensor(array.astype(np.float32), name=value.name)


def equalize_pair(pair: Pair) -> float:
    """Rescale one pair in place; the largest ratio between the two ranges before (1 = equal)."""
    w1, w2 = _initializer(pair.first, 1), _initializer(pair.second, 1)
    assert w1 is not None and w2 is not None
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    w2_by_input = w2 if pair.depthwise else np.swapaxes(w2, 0, 1)  # [C, ...]
    r2 = np.abs(w2_by_input).reshape(w2_by_input.shape[0], -1).max(axis=1)
    ok = (r1 > 0) & (r2 > 0)
    s = np.ones_like(r1, dtype=np.float64)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    spread = float(np.max(np.maximum(r1[ok] / r2[ok], r2[ok] / r1[ok]))) if ok.any() else 1.0
    shape1 = (-1,) + (1,) * (w1.ndim - 1)
    _set(pair.first, 1, w1 / s.reshape(shape1))
    bias = _initializer(pair.first, 2) if len(pair.first.inputs) > 2 and pair.first.inputs[2] is not None else None
    if bias is not None:
        _set(pair.first, 2, bias / s)
    scaled = w2_by_input * s.reshape((-1,) + (1,) * (w2.ndim - 1))
    _set(pair.second, 1, scaled if pair.depthwise else np.swapaxes(scaled, 0, 1))
    return spread


def equalize(graph: ir.Graph, sweeps: int = SWEEPS) -> dict[str, float]:
    """Equalize every pair of ``graph`` in place; per pair, the range spread before the first sweep."""
    found = pairs(graph)
    spreads: dict[str, float] = {}
    for _ in range(sweeps):
        for pair in found:
            spread = equalize_pair(pair)
            spreads.setdefault(f"{node_label(pair.first)} -> {node_label(pair.second)}", spread)
    if found:
        logger.info("cross-layer equalization: %d conv pair(s)", len(found))
    return spreads


def equalized(model: Model) -> Model:
    """``model`` (a prepared copy, edited in place) with its conv pairs equalized and a note saying so."""
    spreads = equalize(model.ir.graph)
    if not spreads:
        return model
    worst = max(spreads.values())
    note = (f"cross-layer equalization rescaled {len(spreads)} Conv -> Relu -> Conv pair(s) "
            f"(largest channel range ratio before: {worst:.3g})")
    return Model(ir=model.ir, path=None, fingerprint=model.fingerprint, notes=(*model.notes, note))
