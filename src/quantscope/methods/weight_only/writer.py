"""Writing block-wise weights: as ``com.microsoft::MatMulNBits``, or as a blocked DequantizeLinear."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph import build
from quantscope.graph.build import NameAllocator
from quantscope.graph.queries import attr_float, const_array, node_label
from quantscope.numerics.blockwise import BlockQuant

MS_DOMAIN = "com.microsoft"


def matmulnbits_inputs(graph: ir.Graph, names: NameAllocator, base: str, bq: BlockQuant) -> tuple[ir.Value | None, ...]:
    """The packed weight, scales and (asymmetric only) zero points, stored once per weight."""
    b = build.initializer(graph, names, f"{base}_Q{bq.bits}", bq.matmulnbits_b())
    scales = build.initializer(graph, names, f"{base}_scales", bq.matmulnbits_scales())
    zp_array = bq.matmulnbits_zero_points()
    zp = None if zp_array is None else build.initializer(graph, names, f"{base}_zero_points", zp_array)
    return b, scales, zp


def _bias(graph: ir.Graph, names: NameAllocator, node: ir.Node, n: int) -> tuple[ir.Value | None, ir.Value | None, list[ir.Node]]:
    """A Gemm's ``beta * C``: a MatMulNBits bias vector, or an operand of an Add after it (with its nodes)."""
    c_value = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
    if c_value is None:
        return None, None, []
    label = node_label(node)
    beta = attr_float(node, "beta", 1.0)
    c = const_array(c_value)
    if c is not None and c.size in (1, n) and (c.ndim == 0 or c.shape[-1] in (1, n)) and c.ndim <= 2:
        vec = np.broadcast_to((beta * c.astype(np.float32)).reshape(-1), (n,)).astype(np.float32)
        return build.initializer(graph, names, f"{c_value.name or label}_bias", vec), None, []
    if c is not None:
        scaled = build.initializer(graph, names, f"{c_value.name or label}_scaled", (beta * c).astype(np.float32))
        return None, scaled, []
    if beta == 1.0:
        return None, c_value, []
    beta_value = build.initializer(graph, names, f"{label}_beta", np.asarray(beta, np.float32))
    mul = ir.Node("", "Mul", [c_value, beta_value], name=names(f"{label}_beta_Mul"), num_outputs=1)
    mul.outputs[0].name = names(f"{label}_beta_C")
    return None, mul.outputs[0], [mul]


def replace_with_matmulnbits(
    graph: ir.Graph,
    names: NameAllocator,
    node: ir.Node,
    kn: tuple[int, int],
    tensors: tuple[ir.Value | None, ...],
    bits: int,
    block_size: int,
) -> None:
    """Replace a MatMul or Gemm by MatMulNBits over the stored ``tensors`` (plus an Add for a non-vector C)."""
    k, n = kn
    b, scales, zp = tensors
    label = node_label(node)
    bias, add_operand, extra_nodes = _bias(graph, names, node, n)
    inputs: list[ir.Value | None] = [node.inputs[0], b, scales, zp, None, bias]
    while inputs[-1] is None:
        inputs.pop()
    attrs = [
        ir.AttrInt64("K", k),
        ir.AttrInt64("N", n),
        ir.AttrInt64("bits", bits),
        ir.AttrInt64("block_size", block_size),
        ir.AttrInt64("accuracy_level", 0),
    ]
    mnb = ir.Node(MS_DOMAIN, "MatMulNBits", inputs, attrs, name=names(f"{label}_MatMulNBits"), num_outputs=1)
    new_nodes = [*extra_nodes, mnb]
    result = mnb.outputs[0]
    result.type = ir.TensorType(ir.DataType.FLOAT)
    if add_operand is not None:
        mnb.outputs[0].name = names(f"{label}_matmul")
        add = ir.Node("", "Add", [mnb.outputs[0], add_operand], name=names(f"{label}_bias_Add"), num_outputs=1)
        new_nodes.append(add)
        result = add.outputs[0]
    ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, [node.outputs[0]], [result])


def dequantize_node(
    graph: ir.Graph,
    names: NameAllocator,
    before: ir.Node,
    base: str,
    bq: BlockQuant,
    k_axis: int,
    shape: tuple[int, ...],
) -> ir.Value:
    """A blocked DequantizeLinear (opset 21) of ``bq``, inserted before ``before``; its float output.

    ``shape`` is the weight as the node reads it: ``bq``'s 2-D layout, or (an LSTM/GRU/RNN
    weight whose rows ``[N, K]`` were quantized, ``k_axis=1``) ``[directions, gates*hidden, K]``,
    blocked along its last axis.
    """
    dq = bq.blocked_dequantize(k_axis)
    wide = bq.bits == 8
    dtype = (
        (ir.DataType.INT8 if wide else ir.DataType.INT4) if dq.signed
        else (ir.DataType.UINT8 if wide else ir.DataType.UINT4)
    )
    axis = k_axis
    arrays = [dq.values, dq.scale, dq.zero_point]
    if len(shape) != 2:
        axis = len(shape) - 1
        arrays = [None if a is None else a.reshape(*shape[:-1], a.shape[-1]) for a in arrays]
    values, scale, zero_point = arrays
    assert values is not None and scale is not None
    inputs: list[ir.Value | None] = [
        build.initializer(graph, names, f"{base}_q{bq.bits}", values, dtype=dtype),
        build.initializer(graph, names, f"{base}_scale", scale),
    ]
    if zero_point is not None:
        inputs.append(build.initializer(graph, names, f"{base}_zero_point", zero_point, dtype=dtype))
    node = ir.Node(
        "", "DequantizeLinear", inputs,
        [ir.AttrInt64("axis", axis), ir.AttrInt64("block_size", dq.block_size)],
        name=names(f"{base}_DequantizeLinear"), num_outputs=1,
    )
    out = node.outputs[0]
    out.name = names(f"{base}_dequantized")
    out.type = ir.TensorType(ir.DataType.FLOAT)
    out.shape = ir.Shape(shape)
    graph.insert_before(before, [node])
    return out


def kn_of(w_shape: tuple[int, ...], k_axis: int) -> tuple[int, int]:
    """(K, N) of a 2-D weight whose K axis is ``k_axis``."""
    return (int(w_shape[0]), int(w_shape[1])) if k_axis == 0 else (int(w_shape[1]), int(w_shape[0]))
