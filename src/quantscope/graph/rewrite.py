"""Small, generic ``onnx_ir`` graph edits (in place on a clone): new nodes, Casts, output moves.

These know nothing about quantization; methods compose them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import onnx_ir as ir

from quantscope.graph.qdq import NameAllocator


def new_node(
    names: NameAllocator,
    op_type: str,
    inputs: Sequence[ir.Value | None],
    *,
    base: str,
    attributes: Iterable[ir.Attr] = (),
    dtypes: Sequence[ir.DataType | None] = (),
    shapes: Sequence[ir.Shape | None] = (),
    domain: str = "",
    num_outputs: int = 1,
) -> ir.Node:
    """A node named after ``base`` whose outputs get unique names and the given types/shapes.

    The node is not inserted into any graph; use ``graph.insert_before``/``insert_after``.
    """
    node = ir.Node(
        domain, op_type, list(inputs), list(attributes), name=names(f"{base}_{op_type}"), num_outputs=num_outputs
    )
    for i, out in enumerate(node.outputs):
        suffix = f"_{op_type}" if num_outputs == 1 else f"_{op_type}_{i}"
        out.name = names(f"{base}{suffix}")
        if i < len(dtypes) and dtypes[i] is not None:
            out.type = ir.TensorType(dtypes[i])  # type: ignore[arg-type]
        if i < len(shapes) and shapes[i] is not None:
            out.shape = shapes[i]
    return node


def cast(names: NameAllocator, value: ir.Value, to: ir.DataType, *, base: str | None = None) -> ir.Node:
    """A Cast of ``value`` to ``to`` (not inserted), keeping the value's shape."""
    return new_node(
        names, "Cast", [value], base=base or value.name or "value",
        attributes=[ir.AttrInt64("to", int(to))], dtypes=[to], shapes=[value.shape],
    )


def insert_after_producer(graph: ir.Graph, nodes: Sequence[ir.Node], value: ir.Value) -> None:
    """Insert ``nodes`` right after ``value``'s producer, or at the top for inputs and initializers."""
    producer = value.producer()
    if producer is not None and producer.graph is graph:
        graph.insert_after(producer, list(nodes))
    elif len(graph):
        graph.insert_before(graph[0], list(nodes))
    else:
        graph.extend(list(nodes))


def take_over_output(graph: ir.Graph, names: NameAllocator, old: ir.Value, new: ir.Value) -> None:
    """Make ``new`` replace ``old`` everywhere: every use, and its place and name among the graph outputs.

    ``old`` keeps existing (its producer may still be removed by the caller) under a fresh name
    when it was a graph output, so the model's output names never change.
    """
    for node, index in list(old.uses()):
        if node is not new.producer():
            node.replace_input_with(index, new)
    if old.is_graph_output():
        original = old.name
        old.name = names(f"{original}_unconverted")
        new.name = original
        for i, v in enumerate(list(graph.outputs)):
            if v is old:
                graph.outputs[i] = new
