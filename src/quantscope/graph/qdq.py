"""Writing QuantizeLinear/DequantizeLinear into an ``onnx_ir`` graph (in place on a clone).

These helpers know ONNX graph surgery, nothing about how parameters were chosen.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.numerics.affine import QParams

_NP_TO_IR = {
    np.dtype(np.uint8): ir.DataType.UINT8,
    np.dtype(np.int8): ir.DataType.INT8,
    np.dtype(np.int32): ir.DataType.INT32,
    np.dtype(np.float32): ir.DataType.FLOAT,
}


class NameAllocator:
    """Unique value and node names in one graph."""

    def __init__(self, graph: ir.Graph) -> None:
        self._used: set[str] = set(graph.initializers)
        for v in graph.inputs:
            self._used.add(v.name or "")
        for node in ir.traversal.RecursiveGraphIterator(graph):
            if node.name:
                self._used.add(node.name)
            for out in node.outputs:
                if out.name:
                    self._used.add(out.name)

    def __call__(self, base: str) -> str:
        name = base
        i = 1
        while name in self._used:
            name = f"{base}_{i}"
            i += 1
        self._used.add(name)
        return name


def add_initializer(graph: ir.Graph, names: NameAllocator, base: str, array: np.ndarray) -> ir.Value:
    name = names(base)
    array = np.asarray(array)
    value = ir.Value(
        name=name,
        const_value=ir.tensor(array, name=name),
        type=ir.TensorType(_NP_TO_IR[array.dtype]),
        shape=ir.Shape(array.shape),
    )
    graph.register_initializer(value)
    return value


def _qparam_values(graph: ir.Graph, names: NameAllocator, base: str, qp: QParams) -> tuple[ir.Value, ir.Value]:
    scale = add_initializer(graph, names, f"{base}_scale", np.asarray(qp.scale, dtype=np.float32))
    zp = add_initializer(graph, names, f"{base}_zero_point", np.asarray(qp.zero_point, dtype=qp.dtype))
    return scale, zp


def _axis_attrs(qp: QParams) -> list[ir.Attr]:
    return [ir.AttrInt64("axis", int(qp.axis))] if qp.axis is not None else []


def dequantize_node(
    graph: ir.Graph, names: NameAllocator, base: str, quantized: ir.Value, qp: QParams, shape: ir.Shape | None
) -> ir.Node:
    scale, zp = _qparam_values(graph, names, base, qp)
    node = ir.Node(
        "", "DequantizeLinear", [quantized, scale, zp], _axis_attrs(qp),
        name=names(f"{base}_DequantizeLinear"), num_outputs=1,
    )
    out = node.outputs[0]
    out.name = names(f"{base}_dequantized")
    out.type = ir.TensorType(ir.DataType.FLOAT)
    out.shape = shape
    return node


def insert_qdq(
    graph: ir.Graph, names: NameAllocator, value: ir.Value, qp: QParams, *, integer_output: bool = False
) -> tuple[ir.Node, ir.Node]:
    """Route every consumer of ``value`` through a Q→DQ pair with ``qp``.

    With ``integer_output`` and ``value`` a graph output, the graph output becomes the
    quantized tensor (keeping its name) instead of the float one.
    """
    base = value.name or names("tensor")
    dtype = _NP_TO_IR[np.dtype(qp.dtype)]
    scale, zp = _qparam_values(graph, names, base, qp)
    q = ir.Node(
        "", "QuantizeLinear", [value, scale, zp], _axis_attrs(qp),
        name=names(f"{base}_QuantizeLinear"), num_outputs=1,
    )
    q_out = q.outputs[0]
    q_out.name = names(f"{base}_quantized")
    q_out.type = ir.TensorType(dtype)
    q_out.shape = value.shape
    dq = ir.Node(
        "", "DequantizeLinear", [q_out, scale, zp], _axis_attrs(qp),
        name=names(f"{base}_DequantizeLinear"), num_outputs=1,
    )
    dq_out = dq.outputs[0]
    dq_out.name = names(f"{base}_dequantized")
    dq_out.type = ir.TensorType(ir.DataType.FLOAT)
    dq_out.shape = value.shape
    # every consumer except the new Q reads the dequantized tensor
    for node, index in list(value.uses()):
        if node is not q:
            node.replace_input_with(index, dq_out)
    producer = value.producer()
    if producer is None:
        graph.insert_before(graph[0], [q, dq]) if len(graph) else graph.extend([q, dq])
    else:
        graph.insert_after(producer, [q, dq])
    if value.is_graph_output():
        # the graph output becomes the dequantized (or, for integer I/O, the quantized)
        # tensor under the original name, so the producer's only consumer is the Q and
        # ONNX Runtime can fuse it into an integer kernel
        original = value.name
        replacement = q_out if integer_output else dq_out
        idx = [i for i, v in enumerate(graph.outputs) if v is value]
        value.name = names(f"{original}_prequant")
        replacement.name = original
        for i in idx:
            graph.outputs[i] = replacement
    return q, dq


def make_input_integer(graph: ir.Graph, names: NameAllocator, value: ir.Value, qp: QParams) -> ir.Node:
    """Turn a float graph input into a quantized one, dequantized before its consumers."""
    uses = list(value.uses())
    dq = dequantize_node(graph, names, value.name or "input", value, qp, value.shape)
    for node, index in uses:
        node.replace_input_with(index, dq.outputs[0])
    value.type = ir.TensorType(_NP_TO_IR[np.dtype(qp.dtype)])
    graph.insert_before(graph[0], [dq]) if len(graph) else graph.append(dq)
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
    q_init = add_initializer(graph, names, f"{base}_quantized", quantized)
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
    q_init = add_initializer(graph, names, f"{base}_quantized", quantized)
    node.replace_input_with(0, q_init)
    out = node.outputs[0]
    uses = list(out.uses())
    dq = dequantize_node(graph, names, out.name or base, out, qp, out.shape)
    for user, index in uses:
        user.replace_input_with(index, dq.outputs[0])
    out.type = ir.TensorType(_NP_TO_IR[np.dtype(qp.dtype)])
    graph.insert_after(node, [dq])
    if out.is_graph_output():
        original = out.name
        out.name = names(f"{original}_int")
        dq.outputs[0].name = original
        for i, v in enumerate(list(graph.outputs)):
            if v is out:
                graph.outputs[i] = dq.outputs[0]
    return dq
