"""What ONNX Runtime's CPU provider does with a float16 graph: which nodes it runs in float32 between its own Casts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx
import onnx_ir as ir

from quantscope.graph.queries import node_label
from quantscope.io import Model
from quantscope.runtime import make_session
from quantscope.signals import temp_dir

ORT_CAST_PREFIX = "InsertedPrecisionFreeCast_"
LARGE_WEIGHT_BYTES = 1 << 16
"""Initializers of the main graph this large are graph inputs in the copy ONNX Runtime looks at:
which kernels it picks depends on their types and shapes, not their values."""


def _without_large_weights(model: ir.Model) -> ir.Model:
    """A copy of ``model`` whose large main-graph initializers are graph inputs (no weights in memory twice)."""
    view = model.clone()
    graph = view.graph
    for name, value in list(graph.initializers.items()):
        tensor = value.const_value
        if tensor is None or tensor.nbytes < LARGE_WEIGHT_BYTES:
            continue
        del graph.initializers[name]
        value.const_value = None
        if not value.is_graph_input():
            graph.inputs.append(value)
    return view


def _proto_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _proto_nodes(g)


def ort_float32_nodes(converted: ir.Model, labels: set[str]) -> set[str]:
    """Converted nodes that ONNX Runtime's CPU provider runs in float32 between its own Casts."""
    by_output = {
        out.name: node_label(n)
        for n in ir.traversal.RecursiveGraphIterator(converted.graph)
        if node_label(n) in labels
        for out in n.outputs
        if out.name
    }
    with temp_dir() as tmp:
        path = Path(tmp) / "optimized.onnx"
        make_session(Model(ir=_without_large_weights(converted)), optimization="none", optimized_model_path=str(path))
        proto = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    for node in _proto_nodes(proto.graph):
        if node.op_type == "Cast":
            continue
        if any(name.startswith(ORT_CAST_PREFIX) for name in [*node.input, *node.output]):
            for out in node.output:
                label = by_output.get(out.removeprefix(ORT_CAST_PREFIX))
                if label is not None:
                    found.add(label)
    return found
