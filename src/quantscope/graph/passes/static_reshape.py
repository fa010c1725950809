"""A ``Reshape`` whose target shape is computed at run time, but known → a constant target shape.

tf2onnx writes Keras' ``Flatten`` (and other reshapes) with a target shape computed from the
input's own shape (``Shape → Gather → Slice → Concat → Cast``). ONNX shape inference resolves
that shape when the model is loaded; written as a constant it lets the shape subgraph go (and
with it, in a quantized model, the dequantization of a whole activation only to read its shape)
and lets other passes see what the Reshape does. Each output dim is written as its number, as
``0`` (copy the input's dim) when it is the input's dim at the same place, or as ``-1`` for the
one dim left; a shape with more unknown dims than that stays computed.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, constant
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.queries import attr_int, const_array, node_label


def static_target(source: ir.Shape | None, result: ir.Shape | None) -> list[int] | None:
    """The constant target shape that turns ``source`` into ``result``, or None when it is unknown."""
    if source is None or result is None:
        return None
    target: list[int] = []
    for i, dim in enumerate(result):
        if isinstance(dim, int):
            if dim <= 0:
                return None  # a literal 0 would copy a dim under Reshape's default rules
            target.append(dim)
        elif i < len(source) and dim.value is not None and source[i] == dim:
            target.append(0)
        else:
            target.append(-1)
    return target if target.count(-1) <= 1 else None


class StaticReshapeShapePass(RewritePass):
    """Every ``Reshape`` of the main graph whose computed target shape shape inference knows gets
    that shape as a constant."""

    summary = "gave {n} Reshape(s) with a computed target shape a constant one"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        for node in list(graph):
            if not is_standard(node, "Reshape") or len(node.inputs) < 2 or node.inputs[0] is None:
                continue
            shape_input = node.inputs[1]
            if shape_input is None or const_array(shape_input) is not None or attr_int(node, "allowzero", 0):
                continue
            if shape_input.is_graph_input():
                continue  # a shape the caller feeds is data: it may differ from what the file declares
            target = static_target(node.inputs[0].shape, node.outputs[0].shape)
            if target is None:
                continue
            value = constant(graph, names, f"{node_label(node)}.shape", target, np.int64)
            node.replace_input_with(1, value)
            notes.append(f"{node_label(node)}: target shape {target}")
        return notes


__all__ = ["StaticReshapeShapePass", "static_target"]
