"""Shape-only ops on constants (``Reshape(bias, [1, C, 1, 1])``) evaluated once into initializers.

Paddle2ONNX writes a Conv bias as ``Add(conv, Reshape(offset, shape))``: the Reshape keeps the
bias from looking constant, so the Add stays a separate ``Add`` of two tensors. Quantized, that
becomes an ``Add`` of two ``DequantizeLinear`` outputs (which OpenVINO refuses) and a float island
between integer kernels. Folded into an initializer, the Add is a per-channel constant that
:class:`~quantscope.graph.passes.FoldChannelAffinePass` folds into the Conv's own bias.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from quantscope.graph.build import NameAllocator, initializer
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.queries import const_array, is_weight, node_label

FOLDABLE = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Identity")
MAX_ELEMENTS = 1 << 16  # larger constants are weights the exporter meant to keep as they are


class FoldConstantNodesPass(RewritePass):
    """A shape-only node of the main graph whose inputs are all constants → one initializer."""

    summary = "evaluated {n} shape op(s) on constants (e.g. a Reshape of a bias) into initializers"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        for node in list(graph):
            if not is_standard(node, *FOLDABLE) or len(node.outputs) != 1 or node.outputs[0].is_graph_output():
                continue
            inputs = [v for v in node.inputs if v is not None]
            arrays = [const_array(v) for v in inputs]
            if not inputs or not all(is_weight(v) for v in inputs) or any(a is None for a in arrays):
                continue
            if sum(a.size for a in arrays if a is not None) > MAX_ELEMENTS:
                continue
            proto = ir.serde.serialize_node(node)
            try:
                (result,) = ReferenceEvaluator(proto).run(None, {v.name: a for v, a in zip(inputs, arrays, strict=True)})
            except Exception:  # an op the reference cannot evaluate stays as it is
                continue
            out = node.outputs[0]
            folded = initializer(graph, names, f"{out.name or 'folded'}.const", result)
            ir.convenience.replace_all_uses_with(out, folded)
            graph.remove(node, safe=True)
            notes.append(f"evaluated {node_label(node)} into an initializer")
        return notes
