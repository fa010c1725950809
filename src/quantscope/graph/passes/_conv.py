"""Reading and replacing a Conv's weight and bias, for the passes that fold ops into it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer
from quantscope.graph.queries import const_array, sole_consumer


def is_standard(node: ir.Node, *op_types: str) -> bool:
    """``node`` is one of ``op_types`` in the default ONNX domain."""
    return node.op_type in op_types and node.domain in ("", "ai.onnx")


def conv_feeding(value: ir.Value | None, user: ir.Node) -> ir.Node | None:
    """The Conv that produces ``value``, when ``user`` may be folded into it, else None.

    Folding needs ``user`` to be the Conv output's only consumer and neither tensor to be a graph
    output (the model's outputs keep what they compute).
    """
    conv = value.producer() if value is not None else None
    if conv is None or not is_standard(conv, "Conv") or sole_consumer(value) is not user:
        return None
    if any(out.is_graph_output() for out in user.outputs):
        return None
    return conv


def conv_weight_bias(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """The Conv's constant weight and bias (zeros when it has none) in float64, or None."""
    w = const_array(conv.inputs[1])
    if w is None:
        return None
    bias = const_array(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
    b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
    return w.astype(np.float64), b


def scale_output_channels(w: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``w`` [C_out, ...] with output channel ``c`` multiplied by ``factor[c]``."""
    return w * factor.reshape(-1, *([1] * (w.ndim - 1)))


def set_constant_input(graph: ir.Graph, names: NameAllocator, target: ir.Node, index: int, array: np.ndarray,
                       base: str) -> None:
    """``target``'s input ``index`` (added when missing) becomes a new float32 initializer holding ``array``."""
    value = initializer(graph, names, base, array.astype(np.float32))
    if len(target.inputs) <= index:
        target.resize_inputs(index + 1)
    target.replace_input_with(index, value)


def fold_into_conv(
    graph: ir.Graph, names: NameAllocator, folded: ir.Node, conv: ir.Node, weight: np.ndarray, bias: np.ndarray,
    *, weight_name: str, bias_name: str,
) -> None:
    """Give ``conv`` new float32 weight and bias initializers (adding the bias input if missing)
    that compute what ``folded`` computed on its output, and remove ``folded``.

    The Conv's output takes ``folded``'s output name: a tensor name keeps meaning what it meant in
    the float model (per-layer comparisons match tensors by name), and the Conv's own pre-fold
    output, which no longer exists, is not mistaken for it."""
    for index, array, base in ((1, weight, weight_name), (2, bias, bias_name)):
        set_constant_input(graph, names, conv, index, array, base)
    name = folded.outputs[0].name
    ir.convenience.replace_all_uses_with(folded.outputs[0], conv.outputs[0])
    graph.remove(folded, safe=True)
    if name:
        conv.outputs[0].name = name


def renamed(value: ir.Value, names: NameAllocator, suffix: str) -> None:
    """Give ``value`` a new name (``<name><suffix>``, unique): it now holds something other than what
    its name meant in the float model, so no comparison by name may take it for the original."""
    if value.name:
        value.name = names(f"{value.name}{suffix}")


def take_name(value: ir.Value, name: str | None) -> None:
    """``value`` takes ``name`` (of a removed node's output whose values it now computes)."""
    if name:
        value.name = name
