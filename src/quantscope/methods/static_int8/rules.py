"""Static-int8 op policy: one small rule per op type, looked up in :data:`RULES`.

A rule says whether a node of its op type can be quantized (:meth:`OpRule.check`, None or
the reason it stays float) and marks what it needs (:meth:`OpRule.plan`: activation points,
weights, its decision). The planner (:mod:`.planner`) walks the graph and asks the rules;
the writer inserts all Q/DQ at once. Adding an op is one entry in :data:`RULES`.

Kinds, after ONNX Runtime's QDQ fusions:

* ``compute`` (Conv, MatMul, Gemm): int8 weights, quantized input, an integer kernel;
* ``residual`` (Add or Mul of two activations): QLinearAdd/QLinearMul, inputs and output quantized;
* ``own_scale`` (AveragePool, Concat, ...): integer kernel on quantized input, own output scale;
* ``shared_scale`` (MaxPool, Reshape, ...): reuses its input's scale and zero point;
* ``weight_only`` (LSTM, GRU, RNN): int8 weights behind DequantizeLinear, float arithmetic;
* ``float``: stays float with a stated reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import onnx_ir as ir

from quantscope.graph.queries import attr_float, attr_int, const_array, node_label
from quantscope.methods._recurrent import WEIGHT_INPUTS, float_arithmetic, recurrent_weights

if TYPE_CHECKING:
    from quantscope.methods.static_int8.planner import Planner

Kind = Literal["compute", "residual", "own_scale", "shared_scale", "weight_only", "float"]
FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip"})
FIXED_RANGE_PRODUCERS = {"Softmax": (0.0, 1.0), "Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0)}
GATES = frozenset({"Sigmoid", "HardSigmoid"})  # outputs in [0, 1]: quantized with a fixed range, no calibration
MIN_TABLE_SIZE = 4096  # smaller constant Gather tables are not worth an integer copy


class OpRule:
    """How static-int8 treats one op type."""

    kind: ClassVar[Kind] = "float"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        """None when ``node`` can be quantized in principle, else the reason it stays float."""
        return None

    def plan(self, p: Planner, node: ir.Node) -> None:
        """Mark the points and weights ``node`` needs and decide it (called when :meth:`check` passed)."""
        raise NotImplementedError


class StaysFloat(OpRule):
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, p: Planner, node: ir.Node) -> str | None:
        return self.reason


class Conv(OpRule):
    kind: ClassVar[Kind] = "compute"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        if const_array(node.inputs[1]) is None:
            return "Conv weight is not a constant"
        return p.inputs_problem([node.inputs[0]])

    def plan(self, p: Planner, node: ir.Node) -> None:
        pc = p.config.per_channel
        p.add_point(node.inputs[0])
        p.add_weight(node, 1, 0 if pc else None)
        p.add_point(p.fused_output(node))
        p.decide(node, "quantized", f"QLinearConv: int8 weights per {'output channel' if pc else 'tensor'}")


class Gemm(OpRule):
    kind: ClassVar[Kind] = "compute"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        if attr_int(node, "transA", 0) != 0:
            return "Gemm with transA=1 is not supported"
        if attr_float(node, "alpha", 1.0) != 1.0 or (len(node.inputs) > 2 and attr_float(node, "beta", 1.0) != 1.0):
            return "Gemm with alpha or beta other than 1 is not supported"
        if const_array(node.inputs[1]) is None:
            return "Gemm weight is not a constant"
        return p.inputs_problem([node.inputs[0]])

    def plan(self, p: Planner, node: ir.Node) -> None:
        p.add_point(node.inputs[0])
        axis = 0 if attr_int(node, "transB", 0) else 1
        p.add_weight(node, 1, axis if p.config.per_channel else None)
        quantized_output = p.quantize_output(node)
        p.decide(node, "quantized", "QGemm with " + ("quantized output" if quantized_output else "float output (no integer consumer)"))


class MatMul(OpRule):
    kind: ClassVar[Kind] = "compute"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        a, b = node.inputs[0], node.inputs[1]
        b_const = const_array(b)
        if b_const is not None:
            if b_const.ndim != 2 or b_const.dtype != np.float32:
                return "MatMul weight is not a 2-D float32 constant"
            return p.inputs_problem([a])
        if const_array(a) is not None:
            return "MatMul with a constant first input is not supported"
        if not p.config.quantize_activation_matmul:
            return "activation × activation MatMul disabled by quantize_activation_matmul=False"
        return p.inputs_problem([a, b])

    def plan(self, p: Planner, node: ir.Node) -> None:
        a, b = node.inputs[0], node.inputs[1]
        p.add_point(a)
        if const_array(b) is not None:
            p.add_weight(node, 1, 1 if p.config.per_channel else None)
            how = "MatMulIntegerToFloat / QLinearMatMul: int8 weights per column"
        else:
            p.add_point(b)
            how = "activation × activation MatMul, both operands 8-bit per tensor"
        if p.quantize_output(node):
            how += ", quantized output"
        p.decide(node, "quantized", how)


class Residual(OpRule):
    kind: ClassVar[Kind] = "residual"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        if any(const_array(v) is not None for v in node.inputs):
            return "Add with a constant operand (a bias) is kept float; it folds into the float path"
        return p.inputs_problem(list(node.inputs))

    def plan(self, p: Planner, node: ir.Node) -> None:
        if not (p.integer_consumer(node.outputs[0]) or p.integer_consumer(p.peek_fused(node))):
            p.decide(node, "float", "Add output feeds no integer op; kept float to avoid a needless requantization")
            return
        for v in node.inputs:
            p.add_point(v)
        p.add_point(p.fused_output(node))
        p.decide(node, "quantized", "integer residual Add (QLinearAdd), inputs and output quantized")


def _float_producer(p: Planner, producer: ir.Node) -> bool:
    """``producer`` stays float (no rule, or its rule refuses it), unless it is a gate or a fusable
    activation: an elementwise op reading it would cut a float chain (GELU, LayerNorm) with a requantization."""
    return producer.op_type not in GATES | FUSABLE_ACTIVATIONS and (
        rule_for(producer.op_type).kind == "float" or p.candidate(producer) is not None
    )


def scalar_shift(node: ir.Node) -> ir.Value | None:
    """The activation operand of a two-input node whose other operand is a float scalar constant."""
    if len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return None
    consts = [const_array(v) for v in node.inputs]
    if sum(c is not None for c in consts) != 1:
        return None
    c = next(c for c in consts if c is not None)
    return node.inputs[consts.index(None)] if c.size == 1 and c.dtype.kind == "f" else None


class Sum(Residual):
    """Add of two activations, or of an activation from an integer op and a scalar constant (a shift).

    The shift's constant is stored in the activation type behind a DequantizeLinear
    (:func:`.gates.write_scalar_operand`), so ONNX Runtime runs it as QLinearAdd; a shift of a
    float op's output (``1 + erf(·)`` in GELU, ``var + eps`` in a normalization) stays float.
    """

    def check(self, p: Planner, node: ir.Node) -> str | None:
        x = scalar_shift(node)
        if x is None:
            return super().check(p, node)
        producer = x.producer()
        if producer is None or _float_producer(p, producer):
            return "Add of a constant to a float op's output (or a graph input) is kept float"
        return p.inputs_problem([x])

    def plan(self, p: Planner, node: ir.Node) -> None:
        x = scalar_shift(node)
        if x is None:
            super().plan(p, node)
            return
        if not p.is_point(x):
            p.decide(node, "float", "input is not quantized (its producer stays float)")
            return
        if not (p.integer_consumer(node.outputs[0]) or p.integer_consumer(p.peek_fused(node))):
            p.decide(node, "float", "Add output feeds no integer op; kept float to avoid a needless requantization")
            return
        p.add_point(p.fused_output(node))
        p.decide(node, "quantized", "integer Add of a scalar constant (QLinearAdd), input and output quantized")


class Product(Residual):
    """Mul of two activations (QLinearMul) where both come from integer ops or a [0, 1] gate.

    A squeeze-excitation scale (``x · HardSigmoid(conv(...))``) and ``x · HardSigmoid(x)``
    (HardSwish) qualify; a Mul reading a float chain (decomposed GELU, LayerNorm, a constant)
    stays float, so those chains are never cut by a requantization.
    """

    def check(self, p: Planner, node: ir.Node) -> str | None:
        if any(const_array(v) is not None for v in node.inputs):
            return "Mul by a constant is kept float (little integer speed-up; guards GELU and LayerNorm chains)"
        for v in node.inputs:
            producer = v.producer() if v is not None else None
            if producer is not None and _float_producer(p, producer):
                return (
                    f"Mul input {v.name!r} comes from a float op ({producer.op_type}); kept float "
                    "(guards GELU and LayerNorm chains)"
                )
        return p.inputs_problem(list(node.inputs))

    def plan(self, p: Planner, node: ir.Node) -> None:
        gated = [v for v in node.inputs if v is not None and not p.is_point(v)]
        if any(v.producer() is None or v.producer().op_type not in GATES for v in gated):  # type: ignore[union-attr]
            p.decide(node, "float", "an input is not quantized (its producer stays float)")
            return
        super().plan(p, node)
        if p.decisions[node_label(node)].action == "quantized":
            p.decide(node, "quantized", "integer Mul of two activations (QLinearMul), inputs and output quantized")


class OwnScale(OpRule):
    kind: ClassVar[Kind] = "own_scale"

    def __init__(self, *, all_inputs: bool = False) -> None:
        self.all_inputs = all_inputs  # Concat reads every input; pools read the first

    def _data(self, node: ir.Node) -> list[ir.Value]:
        return [v for v in (node.inputs if self.all_inputs else node.inputs[:1]) if v is not None]

    def check(self, p: Planner, node: ir.Node) -> str | None:
        return p.inputs_problem(self._data(node))

    def plan(self, p: Planner, node: ir.Node) -> None:
        if not all(p.is_point(v) for v in self._data(node)):
            p.decide(node, "float", "input is not quantized (its producer stays float)")
            return
        p.add_point(node.outputs[0] if self.all_inputs else p.fused_output(node))
        p.decide(node, "quantized", "integer kernel on quantized input, own output scale")


class HardSigmoid(OwnScale):
    """``clip(alpha·x + beta, 0, 1)`` on a quantized ``x`` (alpha > 0), written as an integer Add.

    ``HardSigmoid(x) = alpha · clip(x + beta/alpha, 0, 1/alpha)``: the writer emits ``x + beta/alpha``
    (QLinearAdd with a scalar constant) quantized into exactly ``[0, 1/alpha]``, where 8-bit
    saturation is the clip, and reads those codes back with the scale times ``alpha``, i.e. the
    gate's fixed ``[0, 1]`` parameters (:func:`.gates.write_integer_hardsigmoid`).
    """

    def check(self, p: Planner, node: ir.Node) -> str | None:
        if not attr_float(node, "alpha", 0.2) > 0:
            return "HardSigmoid with alpha <= 0 is kept float (no integer Add form)"
        return super().check(p, node)

    def plan(self, p: Planner, node: ir.Node) -> None:
        x = node.inputs[0]
        if x is None or not p.is_point(x):
            p.decide(node, "float", "input is not quantized (its producer stays float)")
            return
        if not p.integer_consumer(node.outputs[0]):
            p.decide(node, "float", "HardSigmoid output feeds no integer op; kept float to avoid a needless requantization")
            return
        p.add_point(node.outputs[0])  # the fixed [0, 1] range of a gate, never a fused Relu/Clip after it
        p.decide(node, "quantized", "integer Add of x and beta/alpha (QLinearAdd) saturating to the gate's [0, 1]")


class SharedScale(OpRule):
    kind: ClassVar[Kind] = "shared_scale"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        return p.inputs_problem([v for v in node.inputs[:1] if v is not None])

    def plan(self, p: Planner, node: ir.Node) -> None:
        data = node.inputs[0]
        if data is None or not p.is_point(data):
            p.decide(node, "float", "input is not quantized (its producer stays float)")
            return
        for out in node.outputs:
            p.share_point(out, data)
        p.decide(node, "quantized", "reuses its input's scale and zero point (Q/DQ dropped by ONNX Runtime)")


class Gather(SharedScale):
    """Rows of a constant table (an embedding) are gathered from an int8 copy; otherwise data movement."""

    def check(self, p: Planner, node: ir.Node) -> str | None:
        table = const_array(node.inputs[0])
        if table is None:
            return super().check(p, node)
        if table.dtype != np.float32 or table.ndim != 2 or attr_int(node, "axis", 0) != 0:
            return "Gather on a constant that is not a 2-D float32 table along axis 0"
        if table.size < MIN_TABLE_SIZE:
            return "small constant Gather table; not worth an integer copy"
        return None

    def plan(self, p: Planner, node: ir.Node) -> None:
        if const_array(node.inputs[0]) is None:
            super().plan(p, node)
            return
        p.add_weight(node, 0, None)
        p.table_point(node.outputs[0], node.inputs[0])
        p.decide(
            node, "quantized",
            "embedding table stored int8 per tensor; ONNX Runtime gathers int8 rows, then dequantizes",
        )


class Recurrent(OpRule):
    """LSTM/GRU/RNN: no integer kernel in ONNX Runtime's QDQ fusion, so the weights at least are int8."""

    kind: ClassVar[Kind] = "weight_only"

    def check(self, p: Planner, node: ir.Node) -> str | None:
        return recurrent_weights(node)[1]

    def plan(self, p: Planner, node: ir.Node) -> None:
        pc = p.config.per_channel
        for index in WEIGHT_INPUTS:
            p.add_weight(node, index, 1 if pc else None)
        p.decide(
            node, "quantized",
            f"W and R stored int8 per {'gate row' if pc else 'tensor'} behind DequantizeLinear; inputs and "
            f"outputs stay float (no QDQ fusion for {node.op_type}); {float_arithmetic(node.op_type)}",
        )


_SHARED = SharedScale()
_POOL = OwnScale()

RULES: dict[str, OpRule] = {
    "Conv": Conv(),
    "MatMul": MatMul(),
    "Gemm": Gemm(),
    "Add": Sum(),
    "Mul": Product(),
    **{op: _POOL for op in ("AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu")},
    "HardSigmoid": HardSigmoid(),
    "Concat": OwnScale(all_inputs=True),
    **{op: _SHARED for op in (
        "MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
        "Resize", "Identity", "Slice", "Split",
    )},
    "Gather": Gather(),
    **{op: Recurrent() for op in ("LSTM", "GRU", "RNN")},
    "Softmax": StaysFloat(
        "Softmax is kept float (its input can hold attention-mask values); its output is quantized "
        "with the fixed range [0, 1] where an integer op consumes it"
    ),
    "LayerNormalization": StaysFloat("normalization is kept float (sums of squares do not survive 8 bits)"),
    "BatchNormalization": StaysFloat("BatchNormalization not following a Conv cannot be folded; kept float"),
}


def rule_for(op_type: str) -> OpRule:
    """The rule of ``op_type``; ops without one stay float (no integer kernel in ONNX Runtime's QDQ fusion)."""
    rule = RULES.get(op_type)
    if rule is None:
        return StaysFloat(f"{op_type} has no integer kernel in ONNX Runtime's QDQ fusion; kept float")
    return rule
