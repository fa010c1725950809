"""A ``Mul`` by a positive scalar after an activation moved into the Conv/Gemm before the activation.

Some exporters write a learnable scale after the activation (PP-LCNet's affine block:
``Conv → HardSwish → Mul(a) → Add(b)``). Left alone the ``Mul`` is a float op between integer
kernels, a DequantizeLinear/QuantizeLinear round trip. For ``a > 0`` it moves back exactly:

* ``a·relu(y) = relu(a·y)``, ``a·leaky_relu(y) = leaky_relu(a·y)``;
* ``a·y·HardSigmoid_{alpha, beta}(y) = (a·y)·HardSigmoid_{alpha/a, beta}(a·y)`` (x·HardSigmoid(x) of
  :class:`~quantscope.graph.passes.DecomposedHardSwishPass`),

and ``a·y`` is the layer with its weight and bias times ``a``. Exact in float up to rounding.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer
from quantscope.graph.passes import _conv
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.queries import attr_float, const_array, consumers, node_label

HOMOGENEOUS = ("Relu", "LeakyRelu")  # f(a·y) = a·f(y) for a > 0


def _positive_scalar(value: ir.Value | None) -> float | None:
    c = const_array(value)
    if c is None or c.size != 1 or c.dtype.kind != "f":
        return None
    a = float(c.reshape(-1)[0])
    return a if a > 0 and np.isfinite(a) else None


def _only_readers(value: ir.Value | None, readers: set[ir.Node]) -> bool:
    return value is not None and not value.is_graph_output() and set(consumers(value)) == readers


def _scalable_layer(value: ir.Value | None, readers: set[ir.Node]) -> ir.Node | None:
    """The Conv or Gemm (constant weight, constant or no bias) producing ``value``, read only by ``readers``."""
    layer = value.producer() if value is not None else None
    if layer is None or not _conv.is_standard(layer, "Conv", "Gemm") or not _only_readers(value, readers):
        return None
    if const_array(layer.inputs[1]) is None:
        return None
    if len(layer.inputs) > 2 and layer.inputs[2] is not None and const_array(layer.inputs[2]) is None:
        return None
    return layer


def _scale_layer(graph: ir.Graph, names: NameAllocator, layer: ir.Node, a: float) -> None:
    """``layer``'s output times ``a``: its weight and bias (Gemm: ``C``) scaled, new initializers."""
    base = node_label(layer)
    for index in (1, 2):
        array = const_array(layer.inputs[index]) if len(layer.inputs) > index else None
        if array is None:
            continue  # no bias: zero stays zero
        scaled = initializer(graph, names, f"{base}.scalefold{index}", (array.astype(np.float64) * a).astype(array.dtype))
        layer.replace_input_with(index, scaled)


def _hardswish_parts(y: ir.Value) -> tuple[ir.Node, ir.Node, ir.Value] | None:
    """``(mul, gate, x)`` when ``y = Mul(x, HardSigmoid(x))``."""
    mul = y.producer()
    if mul is None or not _conv.is_standard(mul, "Mul") or len(mul.inputs) != 2:
        return None
    for side in (0, 1):
        g, x = mul.inputs[side], mul.inputs[1 - side]
        gate = g.producer() if g is not None else None
        if gate is not None and _conv.is_standard(gate, "HardSigmoid") and gate.inputs[0] is x and x is not None \
                and _only_readers(g, {mul}):
            return mul, gate, x
    return None


def fold_scalar_mul(graph: ir.Graph, names: NameAllocator, scale: ir.Node) -> str | None:
    """Move the positive scalar ``Mul`` node ``scale`` back into its layer; the note, or None."""
    if not _conv.is_standard(scale, "Mul") or len(scale.inputs) != 2 or scale.outputs[0].is_graph_output():
        return None
    for side in (0, 1):
        y, a = scale.inputs[side], _positive_scalar(scale.inputs[1 - side])
        if y is None or a is None or not _only_readers(y, {scale}):
            continue
        act = y.producer()
        if act is None:
            continue
        if _conv.is_standard(act, *HOMOGENEOUS) and (layer := _scalable_layer(act.inputs[0], {act})) is not None:
            _scale_layer(graph, names, layer, a)
        elif (parts := _hardswish_parts(y)) is not None:
            mul, gate, x = parts
            layer = _scalable_layer(x, {mul, gate})
            if layer is None:
                continue
            _scale_layer(graph, names, layer, a)
            gate.attributes["alpha"] = ir.AttrFloat32("alpha", attr_float(gate, "alpha", 0.2) / a)
        else:
            continue
        # the layer's output is now ``a`` times what its name meant; ``y`` computes the Mul's output
        _conv.renamed(layer.outputs[0], names, "_scaled")
        name = scale.outputs[0].name
        ir.convenience.replace_all_uses_with(scale.outputs[0], y)
        graph.remove(scale, safe=True)
        _conv.take_name(y, name)
        return f"{node_label(scale)} (×{a:g}) moved into {node_label(layer)} before its {act.op_type}"
    return None


class FoldScalarScalePass(RewritePass):
    """Every main-graph ``Mul`` by a positive scalar after Relu/LeakyRelu/x·HardSigmoid(x) of a
    Conv/Gemm → the layer's weight and bias scaled (HardSigmoid's slope divided)."""

    summary = "moved {n} positive scalar Mul(s) after an activation into the preceding Conv/Gemm"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        return [note for n in list(graph) if n.graph is graph and (note := fold_scalar_mul(graph, names, n))]
