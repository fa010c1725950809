"""Small, generic ``onnx_ir`` graph edits (in place on a clone): new nodes, Casts, output moves.

These know nothing about quantization; methods compose them. They are thin names over
:mod:`quantscope.graph.build`, kept for the methods that call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import onnx_ir as ir

from quantscope.graph.build import NameAllocator, node, take_over

__all__ = ["cast", "new_node", "take_over_output"]


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
    return node(
        names, op_type, inputs, base=base, attributes=attributes, dtypes=dtypes, shapes=shapes,
        domain=domain, num_outputs=num_outputs,
    )


def cast(names: NameAllocator, value: ir.Value, to: ir.DataType, *, base: str | None = None) -> ir.Node:
    """A Cast of ``value`` to ``to`` (not inserted), keeping the value's shape."""
    return node(
        names, "Cast", [value], base=base or value.name or "value",
        attributes=[ir.AttrInt64("to", int(to))], dtypes=[to], shapes=[value.shape],
    )


def take_over_output(graph: ir.Graph, names: NameAllocator, old: ir.Value, new: ir.Value) -> None:
    """Make ``new`` replace ``old`` everywhere: every use, and its place and name among the graph outputs.

    ``old`` keeps existing (its producer may still be removed by the caller) under a fresh name
    when it was a graph output, so the model's output names never change. ``graph`` is the graph
    that holds ``old`` (kept for callers; the value knows its graph).
    """
    take_over(names, old, new, suffix="unconverted")
