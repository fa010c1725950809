"""Read-only questions about an ``onnx_ir`` graph."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_ir as ir


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant content of a value (initializer or Constant node output), else None."""
    if value is None:
        return None
    tensor = value.const_value
    if tensor is None:
        tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return None
    return tensor.numpy()


def is_weight(value: ir.Value | None) -> bool:
    """A constant that is not a graph input (so it cannot be overridden at run time)."""
    return value is not None and not value.is_graph_input() and const_array(value) is not None


def is_float_activation(value: ir.Value | None) -> bool:
    return (
        value is not None
        and value.dtype == ir.DataType.FLOAT
        and not is_weight(value)
    )


def attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def attr_float(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.as_float())


def consumers(value: ir.Value) -> list[ir.Node]:
    return list(dict.fromkeys(node for node, _ in value.uses()))


def sole_consumer(value: ir.Value | None) -> ir.Node | None:
    """The one node that reads ``value``, once, when ``value`` is not a graph output; else None
    (what a rewrite that changes ``value`` needs: nobody else sees the change)."""
    if value is None or value.is_graph_output():
        return None
    uses = list(value.uses())
    return uses[0][0] if len(uses) == 1 else None


def nodes_with_subgraphs(graph: ir.Graph, *, recursive: bool = False) -> Iterator[ir.Node]:
    """Nodes that carry graph attributes (If, Loop, Scan bodies): of the main graph, or with
    ``recursive`` also those nested inside bodies."""
    for node in ir.traversal.RecursiveGraphIterator(graph) if recursive else graph:
        for attr in node.attributes.values():
            if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
                yield node
                break


def node_label(node: ir.Node) -> str:
    return node.name or f"{node.op_type}:{node.outputs[0].name if node.outputs else '?'}"


def nodes_by_label(graph: ir.Graph) -> dict[str, ir.Node]:
    """Every node of ``graph`` and of its If/Loop/Scan bodies, by label."""
    return {node_label(n): n for n in ir.traversal.RecursiveGraphIterator(graph)}
