"""Transposes that undo each other, across ops that act on each position alone, removed.

PyTorch and Paddle exports (and tf2onnx's NHWC handling) leave ``Transpose(p) → Relu/Clip/Add(bias)
→ Transpose(inverse p)``: two copies of the tensor that compute nothing, and when quantized, two
more places where integer kernels meet a layout op. An op that acts on each element alone
(activations, casts, per-tensor Q/DQ) or with a constant operand (the constant is transposed
back along) computes the same thing in either layout, so the chain runs on the untransposed
tensor and the two Transposes compose into one, or into none when they cancel. Two Transposes
in a row compose the same way.
"""

from __future__ import annotations

import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, take_over
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.passes._layout import (
    Perm,
    compose,
    inverse,
    is_identity,
    permuted_shape,
    transpose_perm,
)
from quantscope.graph.queries import attr_int, const_array, node_label, sole_consumer

#: ops of one data input that compute each output element from the same input element alone
POINTWISE = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Abs", "Neg", "Sign", "Exp", "Log", "Sqrt", "Reciprocal",
    "Floor", "Ceil", "Round", "Clip", "Cast", "Identity", "Not", "IsNaN", "IsInf",
)
#: ops that combine their data input with constants broadcast against it
BROADCAST = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu", "Where", "Equal", "Less", "Greater")
QDQ = ("QuantizeLinear", "DequantizeLinear")
#: inputs of a POINTWISE op that are scalars by definition
_SCALAR_INPUTS = {"Clip": (1, 2)}


def _data_index(op: ir.Node, value: ir.Value) -> int | None:
    """The one input of ``op`` that is ``value`` when every other input is a constant."""
    found = [i for i, v in enumerate(op.inputs) if v is value]
    others = [v for v in op.inputs if v is not None and v is not value]
    if len(found) != 1 or any(const_array(v) is None for v in others):
        return None
    return found[0]


def _movable(op: ir.Node, value: ir.Value, rank: int) -> bool:
    """``op`` computes the same on ``value`` in any layout (its constants transposed along)."""
    index = _data_index(op, value)
    if index is None or len(op.outputs) != 1:
        return False
    if is_standard(op, *POINTWISE):
        return all(i in _SCALAR_INPUTS.get(op.op_type, ()) for i, v in enumerate(op.inputs) if v is not value)
    if is_standard(op, *BROADCAST):
        arrays = [const_array(v) for v in op.inputs if v is not None and v is not value]
        return all(a is not None and a.ndim <= rank for a in arrays)
    if is_standard(op, *QDQ):
        return index == 0 and "block_size" not in op.attributes
    return False


def _chain_back(end: ir.Node) -> tuple[ir.Node, list[ir.Node]] | None:
    """``(first Transpose, movable ops in order)`` when ``end``'s input comes from a Transpose directly
    or through movable ops whose outputs only the next op reads, else None."""
    perm = transpose_perm(end)
    if perm is None:
        return None
    chain: list[ir.Node] = []
    value = end.inputs[0]
    while value is not None:
        producer = value.producer()
        if producer is None or producer.graph is not end.graph:
            return None
        if transpose_perm(producer) is not None:
            return producer, chain[::-1]
        if sole_consumer(value) is None:
            return None
        data = _data_input(producer)
        if data is None or not _movable(producer, data, len(perm)):
            return None
        chain.append(producer)
        value = data
    return None


def _data_input(op: ir.Node) -> ir.Value | None:
    """The one non-constant input of ``op``."""
    data = [v for v in op.inputs if v is not None and const_array(v) is None]
    return data[0] if len(data) == 1 else None


def _move(graph: ir.Graph, names: NameAllocator, op: ir.Node, value: ir.Value, perm: Perm) -> None:
    """Make ``op`` read the untransposed tensor: its constants and output shape moved back by ``perm``."""
    back = inverse(perm)
    for i, v in enumerate(op.inputs):
        array = const_array(v) if v is not None and v is not value else None
        if array is None or array.size == 1 or op.op_type == "Clip":
            continue
        if is_standard(op, *QDQ):
            continue  # a per-axis scale keeps its values; the axis moves below
        padded = array.reshape((1,) * (len(perm) - array.ndim) + array.shape)
        moved = initializer(graph, names, f"{v.name or node_label(op)}.untransposed", padded.transpose(back))  # type: ignore[union-attr]
        op.replace_input_with(i, moved)
    if is_standard(op, *QDQ) and len(op.inputs) > 1 and (scale := const_array(op.inputs[1])) is not None and scale.ndim == 1:
        axis = attr_int(op, "axis", 1) % len(perm)
        op.attributes["axis"] = ir.AttrInt64("axis", perm[axis])
    out = op.outputs[0]
    out.shape = permuted_shape(out.shape, back)


class CancelTransposesPass(RewritePass):
    """Every ``Transpose(q)`` fed by a ``Transpose(p)`` directly or through movable ops only it
    reads: the ops read the untransposed tensor and ``q`` becomes the composed permutation (the
    Transpose goes when that is the identity)."""

    summary = "removed or merged {n} layout Transpose pair(s)"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        return [note for t in list(graph) if t.graph is graph and (note := self._cancel(graph, names, t))]

    @staticmethod
    def _cancel(graph: ir.Graph, names: NameAllocator, end: ir.Node) -> str | None:
        found = _chain_back(end)
        if found is None:
            return None
        first, chain = found
        p, q = transpose_perm(first), transpose_perm(end)
        x = first.inputs[0]
        if p is None or q is None or x is None or len(p) != len(q):
            return None
        combined = compose(p, q)
        out = end.outputs[0]
        if not chain and is_identity(combined) and out.is_graph_output():
            return None  # the output would have to become the input itself
        head = chain[0] if chain else end
        head.replace_input_with(list(head.inputs).index(first.outputs[0]), x)
        previous = x
        for op in chain:
            _move(graph, names, op, previous, p)
            previous = op.outputs[0]
        last = chain[-1].outputs[0] if chain else x
        if is_identity(combined):
            take_over(names, out, last, suffix="transposed", keep=[])
            graph.remove(end, safe=True)
        else:
            end.replace_input_with(0, last)
            end.attributes["perm"] = ir.AttrInt64s("perm", list(combined))
        if not first.outputs[0].uses() and not first.outputs[0].is_graph_output():
            graph.remove(first, safe=True)
        what = "cancelled" if is_identity(combined) else f"merged into one (perm {list(combined)})"
        across = f" across {', '.join(node_label(n) for n in chain)}" if chain else ""
        return f"{node_label(first)} and {node_label(end)} {what}{across}"


__all__ = ["CancelTransposesPass"]
