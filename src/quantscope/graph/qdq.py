"""Writing QuantizeLinear/DequantizeLinear into an ``onnx_ir`` graph (in place on a clone).

These helpers know ONNX graph surgery, nothing about how parameters were chosen.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import (
    NameAllocator,
    initializer,
    insert_first,
    node,
    replace_uses,
    take_over,
)
from quantscope.numerics.affine import QParams

__all__ = [
    "NameAllocator",
    "add_initializer",
    "dequantize_node",
    "gather_from_quantized_table",
    "insert_qdq",
    "make_input_integer",
    "replace_input_with_dequantized",
]


def _ir_dtype(dtype: np.dtype | type) -> ir.DataType:
    return ir.DataType.from_numpy(np.dtype(dtype))


def add_initializer(graph: ir.Graph, names: NameAllocator, base: str, array: np.ndarray) -> ir.Value:
    """A new initializer of ``graph`` holding ``array`` (kept for callers; see :func:`build.initializer`)."""
    return initializer(graph, names, base, array)


def _qparam_values(graph: ir.Graph, names: NameAllocator, base: str, qp: QParams) -> tuple[ir.Value, ir.Value]:
    scale = initializer(graph, names, f"{base}_scale", np.asarray(qp.scale, dtype=np.float32))
    zp = initializer(graph, names, f"{base}_zero_point", np.asarray(qp.zero_point, dtype=qp.dtype))
    return scale, zp


def _qdq_node(
    names: NameAllocator, op_type: str, inputs: list[ir.Value | None], qp: QParams, base: str,
    output: str, dtype: ir.DataType, shape: ir.Shape | None,
) -> ir.Node:
    attrs = [ir.AttrInt64("axis", int(qp.axis))] if qp.axis is not None else []
    return node(
        names, op_type, inputs, base=base, attributes=attrs, outputs=[f"{base}_{output}"],
        dtypes=[dtype], shapes=[shape],
    )


def dequantize_node(
    graph: ir.Graph, names: NameAllocator, base: str, quantized: ir.Value, qp: QParams, shape: ir.Shape | None
) -> ir.Node:
    scale, zp = _qparam_values(graph, names, base, qp)
    return _qdq_node(names, "DequantizeLinear", [quantized, scale, zp], qp, base, "dequantized", ir.DataType.FLOAT, shape)


def insert_qdq(
    graph: ir.Graph, names: NameAllocator, value: ir.Value, qp: QParams, *, integer_output: bool = False
) -> tuple[ir.Node, ir.Node]:
    """Route every consumer of ``value`` through a Q→DQ pair with ``qp``.

    With ``integer_output`` and ``value`` a graph output, the graph output becomes the
    quantized tensor (keeping its name) instead of the float one.
    """
    base = value.name or names("tensor")
    scale, zp = _qparam_values(graph, names, base, qp)
    q = _qdq_node(
        names, "QuantizeLinear", [value, scale, zp], qp, base, "quantized", _ir_dtype(qp.dtype), value.shape
    )
    dq = _qdq_node(
        names, "DequantizeLinear", [q.outputs[0], scale, zp], qp, base, "dequantized", ir.DataType.FLOAT, value.shape
    )
    # every consumer except the new Q reads the dequantized tensor
    replace_uses(value, dq.outputs[0], keep=[q])
    producer = value.producer()
    if producer is None:
        insert_first(graph, [q, dq])
    else:
        graph.insert_after(producer, [q, dq])
    if value.is_graph_output():
        # the graph output becomes the dequantized (or, for integer I/O, the quantized)
        # tensor under the original name, so the producer's only consumer is the Q and
        # ONNX Runtime can fuse it into an integer kernel
        replacement = q.outputs[0] if integer_output else dq.outputs[0]
        take_over(names, value, replacement, suffix="prequant", keep=[q])
    return q, dq


def make_input_integer(graph: ir.Graph, names: NameAllocator, value: ir.Value, qp: QParams) -> ir.Node:
    """Turn a float graph input into a quantized one, dequantized before its consumers."""
    dq = dequantize_node(graph, names, value.name or "input", value, qp, value.shape)
    replace_uses(value, dq.outputs[0], keep=[dq])
    value.type = ir.TensorType(_ir_dtype(qp.dtype))
    insert_first(graph, [dq])
    return dq


def replace_input_with_dequantized(
    graph: ir.Graph,
    names: NameAllocator,
    node: ir.Node,
    index: int,
    quantized: np.ndarray,
    qp: QParams,
    base: str,
    cache: dict[tuple[str, str], ir.Value] | None = None,
) -> ir.Value:
    """Store a constant input as integers and feed the node through a DequantizeLinear."""
    key = (base, str(qp.dtype) + str(qp.axis))
    if cache is not None and key in cache:
        node.replace_input_with(index, cache[key])
        return cache[key]
    q_init = initializer(graph, names, f"{base}_quantized", quantized)
    dq = dequantize_node(graph, names, base, q_init, qp, ir.Shape(quantized.shape))
    graph.insert_before(node, [dq])
    node.replace_input_with(index, dq.outputs[0])
    if cache is not None:
        cache[key] = dq.outputs[0]
    return dq.outputs[0]


def gather_from_quantized_table(
    graph: ir.Graph, names: NameAllocator, node: ir.Node, quantized: np.ndarray, qp: QParams, base: str
) -> ir.Node:
    """Make ``node`` (a Gather) read an integer table and dequantize only the gathered rows.

    Writing the Gather on the integer table directly (rather than ``DQ(table) → Gather``)
    keeps the runtime from dequantizing the whole table on every call.
    """
    node.replace_input_with(0, initializer(graph, names, f"{base}_quantized", quantized))
    out = node.outputs[0]
    dq = dequantize_node(graph, names, out.name or base, out, qp, out.shape)
    take_over(names, out, dq.outputs[0], suffix="int")
    out.type = ir.TensorType(_ir_dtype(qp.dtype))
    graph.insert_after(node, [dq])
    return dq
