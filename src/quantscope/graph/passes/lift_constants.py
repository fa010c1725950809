"""``Constant`` nodes → initializers: weights held in Constant nodes become weights like any other.

Paddle2ONNX (and older exporters) write every weight as a ``Constant`` node instead of an
initializer. Every method looks for weights among the initializers, so without this pass such a
model has "no weight to quantize". Each Constant becomes an initializer of its own graph (a
subgraph's Constant an initializer of that subgraph) under the Constant's output name, so every
reader, and every later pass, sees the same tensor as a constant.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator
from quantscope.graph.passes._base import RewritePass

WEIGHT_MIN_SIZE = 16  # a lifted float tensor this large is noted as a weight; smaller ones are shape-like


def constant_tensor(node: ir.Node) -> ir.TensorProtocol | None:
    """The tensor a standard ``Constant`` node produces, when it is a plain dense one
    (``value``, ``value_float(s)``, ``value_int(s)``); None for sparse and string constants."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attributes) != 1:
        return None
    (name, attr), = node.attributes.items()
    if name == "value":
        tensor = attr.as_tensor()
        return None if tensor.dtype == ir.DataType.STRING else tensor
    if name == "value_float":
        return ir.tensor(np.array(attr.as_float(), dtype=np.float32))
    if name == "value_floats":
        return ir.tensor(np.array(attr.as_floats(), dtype=np.float32))
    if name == "value_int":
        return ir.tensor(np.array(attr.as_int(), dtype=np.int64))
    if name == "value_ints":
        return ir.tensor(np.array(attr.as_ints(), dtype=np.int64))
    return None  # sparse_value, value_string(s): left as they are


class LiftConstantsPass(RewritePass):
    """Every dense ``Constant`` node → an initializer of its graph with the same value name.

    A Constant whose output is a graph output stays (an initializer cannot take its place there).
    One note per lifted floating-point tensor of at least :data:`WEIGHT_MIN_SIZE` elements.
    """

    summary = "moved {n} weight tensor(s) held in Constant nodes into initializers"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        for node in list(ir.traversal.RecursiveGraphIterator(graph)):
            tensor = constant_tensor(node)
            owner = node.graph
            out = node.outputs[0]
            if tensor is None or owner is None or out.is_graph_output() or out.name is None:
                continue
            lifted = ir.Value(
                name=out.name, shape=ir.Shape(tensor.shape), type=ir.TensorType(tensor.dtype),
                const_value=tensor, metadata_props=out.metadata_props.copy(),
            )
            lifted.meta.update(out.meta)
            out.replace_all_uses_with(lifted)
            owner.remove(node, safe=True)
            owner.register_initializer(lifted)
            if tensor.dtype.is_floating_point() and tensor.size >= WEIGHT_MIN_SIZE:
                where = "" if owner is graph else f" (in subgraph {owner.name})"
                notes.append(f"{node.name or out.name}: {tensor.dtype.name}{list(tensor.shape)}{where}")
        return notes
