"""Dynamic-range int8: int8 weights stored ahead of time, activations quantized at run time.

For every MatMul/Gemm with a constant weight this writes standard ONNX ops::

    x ─ DynamicQuantizeLinear ─┬─ x_q (uint8) ──┐
                               ├─ x_zp ─────────┼─ MatMulInteger(x_q, w_q int8, x_zp, w_zp) ─ Cast(float) ─┐
                               └─ x_scale ─ Mul(x_scale, w_scale) ───────────────────────────────────────── Mul ─ [Add bias]

which ONNX Runtime's optimizer fuses (MatMulIntegerToFloatFusion, then
DynamicQuantizeMatMulFusion) into one ``com.microsoft.DynamicQuantizeMatMul`` kernel. The
fusions need exactly this shape: the Cast and the scale Mul each feeding only the final Mul,
``Mul(x_scale, w_scale)`` in that order, a constant 1-D bias as the *second* input of the Add,
and a DynamicQuantizeLinear whose three outputs feed one MatMulInteger (so each weight
node gets its own DynamicQuantizeLinear; ONNX Runtime's common-subexpression elimination
then merges those reading one tensor, e.g. q, k and v share one and run as MatMulIntegerToFloat). Activations must be uint8 for ONNX Runtime's x86 u8×s8 kernels. Conv (only when
asked) becomes ``ConvInteger`` the same way; ONNX Runtime has no fused float-output kernel
for it and it may run slower than float Conv (grouped Convs, likely slower still, stay float).

Embedding tables (``Gather`` of rows from a constant 2-D table) are stored int8 with one
scale per row: ``Gather(int8 table) → Cast → Mul(Gather(row scales))``, so only the looked-up
rows are ever turned back into floats.

Weights on x86 CPUs without VNNI are limited to ``[-64, 64]`` (``reduce_range`` auto): ONNX
Runtime's u8 x s8 kernels add pairs of products in int16 there, which 8-bit weights overflow.
A projection whose input can carry a sentinel from a constant (an attention mask built from
``finfo(float32).min`` or ``-inf``) stays float: a range taken at run time would be ~1e38 wide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from quantscope.calibrate import TensorStats
from quantscope.config import DynamicInt8, MethodConfig
from quantscope.graph.queries import (
    attr_float,
    attr_int,
    const_array,
    consumers,
    node_label,
    nodes_by_label,
)
from quantscope.graph.sentinels import sentinel_tensors
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._recurrent import float_arithmetic, is_recurrent, rows
from quantscope.methods._weights import WeightSite, release, weight_sites
from quantscope.methods.base import Decisions, Method, Subgraphs, nothing_found, select
from quantscope.methods.dynamic_int8.writer import (
    MS_DOMAIN,
    QuantizedWeight,
    Writer,
    integer_lstm,
    weight_key,
)
from quantscope.numerics.affine import quantize, weight_qparams
from quantscope.numerics.dynamic import u8s8_safe_weight_qparams
from quantscope.plan import QuantPlan, WeightQuant
from quantscope.runtime import int16_saturation_risk

logger = logging.getLogger(__name__)

MIN_TABLE_SIZE = 4096  # smaller Gather tables are not worth an int8 copy


def _table_problem(node: ir.Node) -> str | None:
    """None when ``node`` is a Gather of rows from a constant table we can store as int8."""
    if node.domain not in ("", "ai.onnx"):
        return f"operator {node.domain}::{node.op_type} is outside the default ONNX domain"
    table = const_array(node.inputs[0])
    if table is None:
        return "Gather reads no constant table; kept as is"
    if table.dtype != np.float32 or table.ndim != 2:
        return f"Gather table is {table.dtype} with rank {table.ndim}, not a 2-D float32 table"
    if attr_int(node, "axis", 0) != 0:
        return "Gather along an axis other than 0 is not a row lookup; kept as is"
    if table.size < MIN_TABLE_SIZE:
        return f"Gather table has {table.size} elements (< {MIN_TABLE_SIZE}); not worth an int8 copy"
    return None


@dataclass(frozen=True)
class _Bias:
    """A bias Add right after a MatMul that ONNX Runtime can fold into the integer kernel."""

    node: ir.Node
    swap: bool  # the bias is the Add's first input; swap so the fusion sees it second


def _activation_problem(site: WeightSite, sentinels: dict[str, str]) -> str | None:
    x = site.node.inputs[0]
    if x is None:
        return "the node has no activation input"
    if const_array(x) is not None:
        return "both inputs are constants; ONNX Runtime folds this node at load time"
    if x.name in sentinels:
        return (
            f"activation {x.name!r} can carry a sentinel from constant {sentinels[x.name]!r} "
            "(e.g. an attention mask built from finfo(float32).min or -inf); a range taken at run time "
            "would erase every other value"
        )
    if x.dtype != ir.DataType.FLOAT:
        return f"activation {x.name!r} is {x.dtype}, not float32 (DynamicQuantizeLinear reads float32 only)"
    if x.shape is not None and len(x.shape) < 2 and site.node.op_type == "MatMul":
        return "MatMul with a 1-D activation is not rewritten"
    node = site.node
    if (
        node.op_type == "Gemm"
        and len(node.inputs) > 2
        and node.inputs[2] is not None
        and attr_float(node, "beta", 1.0) != 1.0
        and const_array(node.inputs[2]) is None
    ):
        return "Gemm with beta != 1 and a non-constant C is not rewritten"
    if node.op_type == "Conv":
        if site.array.ndim < 3:
            return f"Conv weight has rank {site.array.ndim}"
        group = attr_int(node, "group", 1)
        if group > 1:
            return (
                f"grouped Conv (group={group}) kept float: ONNX Runtime's ConvInteger runs every group as its "
                f"own small integer GEMM, which can be many times slower than float (depthwise weights are small anyway)"
            )
        if len(node.inputs) > 2 and node.inputs[2] is not None and const_array(node.inputs[2]) is None:
            return "Conv with a non-constant bias is not rewritten"
    return None


def _fusable_bias(node: ir.Node) -> _Bias | None:
    """The Add after ``node`` that MatMulIntegerToFloatFusion takes as its bias, if any."""
    out = node.outputs[0]
    users = consumers(out)
    if out.is_graph_output() or len(users) != 1 or users[0].op_type != "Add" or len(list(out.uses())) != 1:
        return None
    add = users[0]
    if add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
        return None
    other_index = 1 if add.inputs[0] is out else 0
    other = add.inputs[other_index]
    if other is None or not other.is_initializer() or other.is_graph_input():
        return None
    bias = const_array(other)
    # ONNX Runtime: 1-D (or [1, ..., 1, N]) constant, N > 1, float32
    if bias is None or bias.dtype != np.float32 or bias.ndim < 1 or bias.shape[-1] <= 1:
        return None
    if any(d != 1 for d in bias.shape[:-1]):
        return None
    n_out = node.outputs[0].shape[-1] if node.outputs[0].shape is not None and len(node.outputs[0].shape) else None
    if isinstance(n_out, int) and n_out != bias.shape[-1]:
        return None
    return _Bias(add, swap=other_index == 0)


def _how(site: WeightSite, config: DynamicInt8, bits: int, bias: _Bias | None) -> str:
    gran = "per output channel" if config.per_channel else "per tensor"
    w = f"int8 weights {gran}" + (" within [-64, 64] (reduce_range)" if bits == 7 else "")
    if site.node.op_type == "Conv":
        return (
            f"{w}; uint8 activations quantized at run time: DynamicQuantizeLinear → ConvInteger → "
            "Cast → Mul (+ bias Add); may be slower than float, see warnings"
        )
    kernel = "DynamicQuantizeMatMul, or MatMulIntegerToFloat when it shares its input's quantization"
    tail = " (+ bias Add)" if site.node.op_type == "Gemm" and len(site.node.inputs) > 2 and site.node.inputs[2] is not None else ""
    if bias is not None:
        tail = f", bias {node_label(bias.node)} folded in"
    return (
        f"{w}; uint8 activations quantized at run time: DynamicQuantizeLinear → MatMulInteger → Cast → Mul{tail} "
        f"(ONNX Runtime runs it as {kernel})"
    )


def _recurrent(site: WeightSite, config: DynamicInt8, bits: int, decisions: Decisions) -> WeightQuant:
    """The int8 W or R of an LSTM/GRU/RNN (deciding the node): DynamicQuantizeLSTM, else behind DequantizeLinear."""
    node, op = site.node, site.node.op_type
    gran = "per (direction, gate row)" if config.per_channel else "per direction" if op == "LSTM" else "per tensor"
    if op == "LSTM" and integer_lstm(node):
        how = (
            f"com.microsoft::DynamicQuantizeLSTM: int8 W and R {gran}"
            + (" within [-64, 64] (reduce_range)" if bits == 7 else "")
            + ", activations quantized at run time inside the kernel"
        )
    else:
        bits = 8  # float arithmetic: no integer kernel to saturate
        why = "layout=1 (batch first), which DynamicQuantizeLSTM does not take" if op == "LSTM" else f"no integer {op} kernel"
        how = f"int8 W and R {gran} behind DequantizeLinear ({why}); {float_arithmetic(op)}"
    decisions.decide(node, "quantized", how)
    axis = 0 if config.per_channel else None
    return WeightQuant(
        tensor=site.value.name or "", node=site.label, dtype="int8", axis=axis, bits=bits,
        channels=int(site.array.shape[0]) if axis is not None else 1, input_index=site.index,
    )


def conv_slow_warning() -> str:
    """The warning for Convs written as ConvInteger, saying what this CPU has."""
    cpu = (
        "this CPU is x86 without VNNI, where it is most likely"
        if int16_saturation_risk()
        else "check on the target CPU"
    )
    return (
        "Conv is written as ConvInteger, which ONNX Runtime may run slower than float Conv (it has no fused "
        f"float-output kernel for it; {cpu}; grouped Convs stay float for that reason); leave Conv out of "
        "op_types (the default) unless the target runs ConvInteger fast"
    )


def _reduce_range(config: DynamicInt8, notes: list[str], warnings: list[str]) -> bool:
    """Whether weights are limited to [-64, 64], with the note or warning that says why."""
    if config.reduce_range is False and int16_saturation_risk():
        warnings.append(
            "reduce_range=False on an x86 CPU without VNNI: ONNX Runtime's u8 x s8 kernels sum pairs of "
            "products in int16 here, which can saturate with full 8-bit weights (wrong results on large "
            "activations); leave reduce_range unset (auto) unless the target CPU has VNNI"
        )
    if config.reduce_range is not None:
        return config.reduce_range
    reduce_range = int16_saturation_risk()
    notes.append(
        "weights limited to [-64, 64] (reduce_range auto): this CPU is x86 without VNNI, where "
        "ONNX Runtime's u8 x s8 kernels sum pairs of products in int16, which saturates with full "
        "8-bit weights (255 * 127 * 2 > 32767; 255 * 64 * 2 fits)"
        if reduce_range
        else "weights use the full int8 range (reduce_range auto): this CPU's int8 dot products do not "
        "saturate"
    )
    return reduce_range


Payload = dict[tuple[str, int | None, int], QuantizedWeight]
"""The int8 weights and scales of a plan, by (weight tensor, channel axis, bits)."""


@register(DynamicInt8)
class DynamicInt8Method(Method):
    """Dynamic-range int8 for MatMul/Gemm, int8 embedding tables for Gather (and Conv on request)."""

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, DynamicInt8)
        selection = select(model, config)
        sites, decisions = weight_sites(selection, config.op_types, recurrent="rows")
        sentinels = sentinel_tensors(model.ir.graph)
        notes = list(model.notes)
        warnings: list[str] = []
        bits = 7 if _reduce_range(config, notes, warnings) else 8
        weights: list[WeightQuant] = []
        for site in sites:
            if site.layout is not None:  # LSTM/GRU/RNN: W and R
                weights.append(_recurrent(site, config, bits, decisions))
                continue
            problem = _activation_problem(site, sentinels)
            if problem is not None:
                decisions.keep(site.node, problem)
                continue
            bias = _fusable_bias(site.node) if site.node.op_type == "MatMul" else None
            if bias is not None and selection.is_excluded(bias.node):
                bias = None  # the user keeps this Add as it is
            if bias is not None:
                decisions.decide(
                    bias.node, "fused",
                    f"bias of {site.label}: ONNX Runtime folds it into the integer MatMul kernel"
                    + (" (operands swapped so the bias comes second)" if bias.swap else ""),
                )
            decisions.decide(site.node, "quantized", _how(site, config, bits, bias))
            axis = site.out_axis if config.per_channel else None
            weights.append(
                WeightQuant(
                    tensor=site.value.name or "", node=site.label, dtype="int8", axis=axis, bits=bits,
                    channels=int(site.array.shape[axis]) if axis is not None else 1, input_index=site.index,
                )
            )
        for node in selection.nodes:
            if node.op_type == "Gather" and not selection.is_excluded(node):
                table = self._table(node, config, decisions)
                if table is not None:
                    weights.append(table)
        Subgraphs.of(model).mark(decisions)
        if not weights:
            raise nothing_found(config.method, decisions.values())
        if any(d.op_type == "Conv" and d.action == "quantized" for d in decisions.values()):
            warning = conv_slow_warning()
            warnings.append(warning)
            logger.warning(warning)
        shared = len(weights) - len({w.tensor for w in weights})
        if shared:
            notes.append(f"{shared} weight use(s) share an initializer with another node; each is stored once")
        plan = QuantPlan(
            method=config.method, decisions=decisions.ordered(), weights=tuple(weights),
            notes=tuple(notes), warnings=tuple(warnings),
            extra={
                "activation_quantization": "dynamic uint8 per tensor",
                "weight_bits": bits,  # 7: MatMul/Gemm/Conv weights within [-64, 64] (reduce_range)
                "weight_range": [-64, 64] if bits == 7 else [-127, 127],
            },
        )
        return plan.with_payload(self.compute(model, config, plan))

    @staticmethod
    def _table(node: ir.Node, config: DynamicInt8, decisions: Decisions) -> WeightQuant | None:
        """The int8 table of a Gather (deciding the node), or None when it stays as it is."""
        problem = _table_problem(node)
        if problem is None and "Gather" not in config.op_types:
            problem = f"Gather is not among this method's op types ({', '.join(config.op_types)})"
        if problem is not None:
            if const_array(node.inputs[0]) is not None:
                decisions.keep(node, problem)
            return None
        table = node.inputs[0]
        assert table is not None
        rows = int(table.shape[0]) if table.shape is not None else 0
        axis = 0 if config.per_channel else None
        decisions.decide(
            node, "quantized",
            f"embedding table stored int8 {'per row' if axis == 0 else 'per tensor'}; ONNX Runtime "
            "gathers int8 rows" + (" and their scales" if axis == 0 else "") + ", then Cast → Mul",
        )
        return WeightQuant(
            tensor=table.name or "", node=node_label(node), dtype="int8", axis=axis, bits=8,
            channels=rows if axis == 0 else 1, input_index=0,
        )

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Payload:
        """The int8 weights and scales of every weight in ``plan``, each computed once."""
        nodes = nodes_by_label(model.ir.graph)
        payload: Payload = {}
        for wq in plan.weights:
            key = weight_key(wq)
            if key in payload:
                continue
            node = nodes[wq.node]
            w = const_array(node.inputs[wq.input_index])
            assert w is not None
            w = rows(w) if is_recurrent(node) else w
            qp = u8s8_safe_weight_qparams(w, wq.axis) if wq.bits == 7 else weight_qparams(w, wq.axis, bits=8)
            payload[key] = (quantize(w, qp), np.asarray(qp.scale, dtype=np.float32))
            release(node.inputs[wq.input_index])
        return payload

    def write(self, clone: ir.Model, config: MethodConfig, plan: QuantPlan, payload: Payload) -> None:
        graph = clone.graph
        nodes = nodes_by_label(graph)
        fused_adds = {d.node for d in plan.decisions if d.action == "fused" and d.op_type == "Add"}
        writer = Writer(graph, payload)
        for wq in plan.weights:
            node = nodes[wq.node]
            if node.op_type == "Conv":
                writer.conv(node, wq)
            elif node.op_type == "Gather":
                writer.gather(node, wq)
            elif node.op_type == "LSTM" and integer_lstm(node):
                writer.lstm(node, wq)
            elif is_recurrent(node):
                writer.recurrent_weight(node, wq)
            else:
                writer.matmul(node, wq, fused_adds)
        if writer.uses_ms_domain:
            clone.opset_imports[MS_DOMAIN] = 1
