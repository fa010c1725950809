"""A quantized ``HardSigmoid`` written as an integer Add whose 8-bit saturation is the gate's clip.

ONNX Runtime has no integer HardSigmoid: ``DQ → HardSigmoid → Q`` runs in float, a round trip
between integer kernels. With ``alpha > 0``,
``HardSigmoid(x) = clip(alpha·x + beta, 0, 1) = alpha · clip(x + beta/alpha, 0, 1/alpha)``. So

``DQ(x) → Add(·, DQ(beta/alpha)) → Q(scale/alpha, zp) → DQ(scale, zp)``

computes the same codes as the float island when the gate's parameters ``(scale, zp)`` represent
exactly ``[0, 1]`` (the fixed range every gate gets): the Add's output codes in ``[qmin, qmax]``
are ``[0, 1/alpha]`` (saturation clips), and read with ``scale`` they are ``alpha`` times that.
ONNX Runtime fuses the Add into ``QLinearAdd``; its reader sees the gate's usual ``DQ``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, node
from quantscope.graph.qdq import replace_input_with_dequantized
from quantscope.graph.queries import attr_float, const_array, consumers, node_label
from quantscope.numerics.affine import QParams, activation_qparams, quantize

logger = logging.getLogger(__name__)

RANGE_TOLERANCE = 1e-6


def represents_unit_range(qp: QParams) -> bool:
    """``qp``'s codes span exactly ``[0, 1]`` (saturation at the ends is then a clip to [0, 1])."""
    lo, hi = qp.float_range()
    return float(np.max(np.abs(lo))) <= RANGE_TOLERANCE and float(np.max(np.abs(hi - 1.0))) <= RANGE_TOLERANCE


def scalar_constant(c: float, dtype: np.dtype) -> tuple[np.ndarray, QParams]:
    """``c`` as one code of ``dtype`` and its parameters, ``c`` at the end of the range (exact up to float32)."""
    qp = activation_qparams(min(c, 0.0), max(c, 0.0), dtype=dtype)
    return quantize(np.asarray(c, dtype=np.float32), qp), qp


def write_scalar_operand(graph: ir.Graph, names: NameAllocator, node: ir.Node, dtype: np.dtype) -> bool:
    """The float scalar constant operand of ``node`` stored as one code of ``dtype`` behind a
    DequantizeLinear (ONNX Runtime's QLinearAdd needs both operands in the activation type)."""
    for index, value in enumerate(node.inputs):
        c = const_array(value)
        if c is not None and c.size == 1 and c.dtype.kind == "f":
            codes, qp = scalar_constant(float(c.reshape(-1)[0]), dtype)
            replace_input_with_dequantized(graph, names, node, index, codes.reshape(c.shape), qp,
                                           f"{value.name or node_label(node)}")
            return True
    return False


def write_integer_hardsigmoid(graph: ir.Graph, names: NameAllocator, gate: ir.Node, qp: QParams) -> bool:
    """Rewrite the quantized ``gate`` (its output already behind a Q→DQ pair with ``qp``) as above.

    False, and the graph untouched, when ``qp`` does not span ``[0, 1]``, alpha is not positive
    or the output is read by anything but its QuantizeLinear (the gate then stays a float island).
    """
    out = gate.outputs[0]
    readers = consumers(out)
    alpha, beta = attr_float(gate, "alpha", 0.2), attr_float(gate, "beta", 0.5)
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or out.is_graph_output() or gate.inputs[0] is None:
        return False
    if not alpha > 0 or not represents_unit_range(qp):
        logger.debug("%s stays float: parameters do not span [0, 1] or alpha <= 0", node_label(gate))
        return False
    q = readers[0]
    base = node_label(gate)
    shift = beta / alpha
    add = node(names, "Add", [gate.inputs[0], None], base=base, dtypes=[ir.DataType.FLOAT], shapes=[out.shape])
    graph.insert_before(gate, [add])
    codes, shift_qp = scalar_constant(shift, np.dtype(qp.dtype))
    replace_input_with_dequantized(graph, names, add, 1, codes, shift_qp, f"{base}.shift")
    wide = initializer(graph, names, f"{base}.prescale", np.asarray(np.float32(qp.scale) / np.float32(alpha), np.float32))
    q.replace_input_with(0, add.outputs[0])
    q.replace_input_with(1, wide)
    graph.remove(gate, safe=True)
    return True
