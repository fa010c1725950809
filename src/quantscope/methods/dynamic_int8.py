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
for it and it is slow on x86 (grouped Convs, much slower still, stay float).

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
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import DynamicInt8, MethodConfig
from quantscope.errors import UnsupportedModelError
from quantscope.graph.prepare import prepare
from quantscope.graph.qdq import NameAllocator, add_initializer
from quantscope.graph.queries import (
    attr_float,
    attr_int,
    const_array,
    consumers,
    node_label,
    nodes_with_subgraphs,
)
from quantscope.graph.rewrite import new_node, take_over_output
from quantscope.graph.sentinels import sentinel_tensors
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._weights import WeightSite, ordered_decisions, weight_sites
from quantscope.numerics.affine import QParams, quantize, weight_qparams
from quantscope.numerics.dynamic import u8s8_safe_weight_qparams
from quantscope.plan import NodeDecision, QuantPlan, WeightQuant
from quantscope.runtime import int16_saturation_risk

logger = logging.getLogger(__name__)

CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
CONV_SLOW_WARNING = (
    "Conv is written as ConvInteger, which ONNX Runtime runs slower than float Conv on x86 CPUs without "
    "VNNI (measured on this machine, AVX2: the PP-OCR classifier runs 1.9x slower with its 42 dense Convs "
    "as ConvInteger, 10x slower if its grouped Convs are too, so those stay float); leave Conv out of "
    "op_types (the default) unless the target runs ConvInteger fast"
)


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
                f"own small integer GEMM, many times slower than float (depthwise weights are small anyway)"
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
            "Cast → Mul (+ bias Add); slow on x86, see warnings"
        )
    kernel = "DynamicQuantizeMatMul, or MatMulIntegerToFloat when it shares its input's quantization"
    tail = " (+ bias Add)" if site.node.op_type == "Gemm" and len(site.node.inputs) > 2 and site.node.inputs[2] is not None else ""
    if bias is not None:
        tail = f", bias {node_label(bias.node)} folded in"
    return (
        f"{w}; uint8 activations quantized at run time: DynamicQuantizeLinear → MatMulInteger → Cast → Mul{tail} "
        f"(ONNX Runtime runs it as {kernel})"
    )


@register(DynamicInt8)
class DynamicInt8Method:
    """Dynamic-range int8 for MatMul/Gemm, int8 embedding tables for Gather (and Conv on request)."""

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        prepared, _ = prepare(model)
        return prepared

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]:
        return []  # activations are quantized at run time: nothing to calibrate

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, DynamicInt8)
        sites, decisions = weight_sites(model, config, config.op_types)
        sentinels = sentinel_tensors(model.ir.graph)
        notes = list(model.notes)
        warnings: list[str] = []
        reduce_range = config.reduce_range
        if reduce_range is False and int16_saturation_risk():
            warnings.append(
                "reduce_range=False on an x86 CPU without VNNI: ONNX Runtime's u8 x s8 kernels sum pairs of "
                "products in int16 here, which can saturate with full 8-bit weights (wrong results on large "
                "activations); leave reduce_range unset (auto) unless the target CPU has VNNI"
            )
        if reduce_range is None:
            reduce_range = int16_saturation_risk()
            notes.append(
                "weights limited to [-64, 64] (reduce_range auto): this CPU is x86 without VNNI, where "
                "ONNX Runtime's u8 x s8 kernels sum pairs of products in int16, which saturates with full "
                "8-bit weights (255 * 127 * 2 > 32767; 255 * 64 * 2 fits)"
                if reduce_range
                else "weights use the full int8 range (reduce_range auto): this CPU's int8 dot products do not "
                "saturate"
            )
        bits = 7 if reduce_range else 8
        weights: list[WeightQuant] = []
        for site in sites:
            label = site.label
            problem = _activation_problem(site, sentinels)
            if problem is not None:
                decisions[label] = NodeDecision(node=label, op_type=site.node.op_type, action="float", reason=problem)
                continue
            bias = _fusable_bias(site.node) if site.node.op_type == "MatMul" else None
            if bias is not None:
                bias_label = node_label(bias.node)
                if decisions[bias_label].reason.startswith("excluded by"):
                    bias = None  # the user keeps this Add as it is
                else:
                    decisions[bias_label] = NodeDecision(
                        node=bias_label, op_type="Add", action="fused",
                        reason=f"bias of {label}: ONNX Runtime folds it into the integer MatMul kernel"
                        + (" (operands swapped so the bias comes second)" if bias.swap else ""),
                    )
            decisions[label] = NodeDecision(
                node=label, op_type=site.node.op_type, action="quantized", reason=_how(site, config, bits, bias)
            )
            axis = site.out_axis if config.per_channel else None
            weights.append(
                WeightQuant(
                    tensor=site.value.name or "", node=label, dtype="int8", axis=axis, bits=bits,
                    channels=int(site.array.shape[axis]) if axis is not None else 1, input_index=site.index,
                )
            )
        for node in model.ir.graph:
            label = node_label(node)
            if node.op_type != "Gather" or decisions[label].reason.startswith("excluded by"):
                continue
            problem = _table_problem(node)
            if problem is None and "Gather" not in config.op_types:
                problem = f"Gather is not among this method's op types ({', '.join(config.op_types)})"
            if problem is not None:
                if const_array(node.inputs[0]) is not None:
                    decisions[label] = NodeDecision(node=label, op_type="Gather", action="float", reason=problem)
                continue
            table = node.inputs[0]
            rows = int(table.shape[0]) if table.shape is not None else 0  # type: ignore[union-attr]
            axis = 0 if config.per_channel else None
            decisions[label] = NodeDecision(
                node=label, op_type="Gather", action="quantized",
                reason=f"embedding table stored int8 {'per row' if axis == 0 else 'per tensor'}; ONNX Runtime "
                "gathers int8 rows" + (" and their scales" if axis == 0 else "") + ", then Cast → Mul",
            )
            weights.append(
                WeightQuant(
                    tensor=table.name or "", node=label, dtype="int8", axis=axis, bits=8,  # type: ignore[union-attr]
                    channels=rows if axis == 0 else 1, input_index=0,
                )
            )
        n_sub = sum(
            1 for n in ir.traversal.RecursiveGraphIterator(model.ir.graph) if n.graph is not model.ir.graph
        )
        for node in nodes_with_subgraphs(model.ir.graph):
            label = node_label(node)
            if not decisions[label].reason.startswith("excluded by"):
                decisions[label] = NodeDecision(
                    node=label, op_type=node.op_type, action="float",
                    reason=f"holds a subgraph (the If/Loop/Scan bodies hold {n_sub} node(s)); this method does "
                    "not quantize inside subgraphs, so they stay float",
                )
        if not weights:
            reasons = sorted({d.reason for d in decisions.values()}, key=lambda r: (not r.startswith("holds"), r))
            raise UnsupportedModelError(
                "dynamic-int8 found nothing to quantize in this model: "
                + "; ".join(reasons[:5])
                + ". Nothing was written."
            )
        if any(d.op_type == "Conv" and d.action == "quantized" for d in decisions.values()):
            warnings.append(CONV_SLOW_WARNING)
            logger.warning(CONV_SLOW_WARNING)
        if n_sub:
            warnings.append(f"{n_sub} node(s) inside If/Loop/Scan subgraphs were left in float")
        shared = len(weights) - len({w.tensor for w in weights})
        if shared:
            notes.append(f"{shared} weight use(s) share an initializer with another node; each is stored once")
        return QuantPlan(
            method=config.method, decisions=ordered_decisions(model, decisions), weights=tuple(weights),
            notes=tuple(notes), warnings=tuple(warnings),
            extra={
                "activation_quantization": "dynamic uint8 per tensor",
                "weight_bits": bits,  # 7: MatMul/Gemm/Conv weights within [-64, 64] (reduce_range)
                "weight_range": [-64, 64] if bits == 7 else [-127, 127],
            },
        )

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        assert isinstance(config, DynamicInt8)
        clone = model.ir.clone()
        graph = clone.graph
        names = NameAllocator(graph)
        nodes = {node_label(n): n for n in graph}
        fused_adds = {d.node for d in plan.decisions if d.action == "fused" and d.op_type == "Add"}
        writer = _Writer(graph, names)
        for wq in plan.weights:
            node = nodes[wq.node]
            if node.op_type == "Conv":
                writer.conv(node, wq)
            elif node.op_type == "Gather":
                writer.gather(node, wq)
            else:
                writer.matmul(node, wq, fused_adds)
        common_passes.RemoveUnusedNodesPass()(clone)  # drops the float weights now unused
        graph.sort()
        clone.metadata_props["quantscope.method"] = config.method
        return Model(ir=clone, path=None, fingerprint="", notes=model.notes)


class _Writer:
    """Writes the integer subgraphs into one graph, storing each weight once."""

    def __init__(self, graph: ir.Graph, names: NameAllocator) -> None:
        self.graph = graph
        self.names = names
        self.cache: dict[tuple[object, ...], tuple[ir.Value, ir.Value]] = {}
        self._zero_point: ir.Value | None = None

    def _w_zero_point(self) -> ir.Value:
        if self._zero_point is None:
            self._zero_point = add_initializer(self.graph, self.names, "weight_zero_point", np.zeros((), np.int8))
        return self._zero_point

    def _weight(self, node: ir.Node, wq: WeightQuant, *, transpose: bool, scale_shape: tuple[int, ...]) -> tuple[ir.Value, ir.Value]:
        """The int8 weight (laid out for the integer op) and its float scale, stored once per tensor."""
        key = (wq.tensor, transpose, wq.axis, wq.bits, scale_shape)
        if key in self.cache:
            return self.cache[key]
        w = const_array(node.inputs[wq.input_index])
        assert w is not None
        qp: QParams = u8s8_safe_weight_qparams(w, wq.axis) if wq.bits == 7 else weight_qparams(w, wq.axis, bits=8)
        q = quantize(w, qp)
        if transpose:
            q = np.ascontiguousarray(q.T)
        base = wq.tensor or "weight"
        q_val = add_initializer(self.graph, self.names, f"{base}_quantized", q)
        scale = np.asarray(qp.scale, dtype=np.float32)
        if scale.ndim:
            scale = scale.reshape(scale_shape)
        s_val = add_initializer(self.graph, self.names, f"{base}_scale", scale)
        self.cache[key] = (q_val, s_val)
        return q_val, s_val

    def _quantize_input(self, x: ir.Value, base: str) -> ir.Node:
        return new_node(
            self.names, "DynamicQuantizeLinear", [x], base=base, num_outputs=3,
            dtypes=[ir.DataType.UINT8, ir.DataType.FLOAT, ir.DataType.UINT8],
            shapes=[x.shape, ir.Shape([]), ir.Shape([])],
        )

    def _rescale(self, integer: ir.Value, dql: ir.Node, w_scale: ir.Value, out: ir.Value, base: str) -> list[ir.Node]:
        """Cast the int32 product to float and multiply by ``x_scale * w_scale``."""
        to_float = new_node(
            self.names, "Cast", [integer], base=base, attributes=[ir.AttrInt64("to", int(ir.DataType.FLOAT))],
            dtypes=[ir.DataType.FLOAT], shapes=[out.shape],
        )
        scale = new_node(
            self.names, "Mul", [dql.outputs[1], w_scale], base=f"{base}_scale", dtypes=[ir.DataType.FLOAT],
            shapes=[w_scale.shape],
        )
        mul = new_node(
            self.names, "Mul", [to_float.outputs[0], scale.outputs[0]], base=base, dtypes=[ir.DataType.FLOAT],
            shapes=[out.shape],
        )
        return [to_float, scale, mul]

    def _replace(self, node: ir.Node, new: list[ir.Node], result: ir.Value) -> None:
        self.graph.insert_before(node, new)
        take_over_output(self.graph, self.names, node.outputs[0], result)
        self.graph.remove(node, safe=True)

    def matmul(self, node: ir.Node, wq: WeightQuant, fused_adds: set[str]) -> None:
        base = node_label(node)
        out = node.outputs[0]
        x = node.inputs[0]
        assert x is not None
        transpose = node.op_type == "Gemm" and attr_int(node, "transB", 0) == 1
        w_q, w_scale = self._weight(node, wq, transpose=transpose, scale_shape=(-1,))
        dql = self._quantize_input(x, base)
        mm = new_node(
            self.names, "MatMulInteger", [dql.outputs[0], w_q, dql.outputs[2], self._w_zero_point()], base=base,
            dtypes=[ir.DataType.INT32], shapes=[out.shape],
        )
        new = [dql, mm, *self._rescale(mm.outputs[0], dql, w_scale, out, base)]
        result = new[-1].outputs[0]
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
            c = node.inputs[2]
            beta = attr_float(node, "beta", 1.0)
            c_const = const_array(c)
            if beta != 1.0 and c_const is not None:
                c = add_initializer(self.graph, self.names, f"{c.name or base}_beta", (c_const * np.float32(beta)).astype(np.float32))
            add = new_node(self.names, "Add", [result, c], base=f"{base}_bias", dtypes=[ir.DataType.FLOAT], shapes=[out.shape])
            new.append(add)
            result = add.outputs[0]
        self._replace(node, new, result)
        if node.op_type == "MatMul":
            users = consumers(result)
            if len(users) == 1 and node_label(users[0]) in fused_adds and users[0].inputs[1] is result:
                add = users[0]  # bias first: swap so ONNX Runtime's fusion sees it second
                bias = add.inputs[0]
                add.replace_input_with(0, result)
                add.replace_input_with(1, bias)

    def gather(self, node: ir.Node, wq: WeightQuant) -> None:
        """Gather int8 rows (and their scales), then ``Cast → Mul``: the float table is never rebuilt."""
        base = node_label(node)
        out = node.outputs[0]
        ids = node.inputs[1]
        q_val, s_val = self._weight(node, wq, transpose=False, scale_shape=(-1, 1))
        axis0 = [ir.AttrInt64("axis", 0)]
        rows = new_node(
            self.names, "Gather", [q_val, ids], base=base, attributes=axis0, dtypes=[ir.DataType.INT8],
            shapes=[out.shape],
        )
        to_float = new_node(
            self.names, "Cast", [rows.outputs[0]], base=base, attributes=[ir.AttrInt64("to", int(ir.DataType.FLOAT))],
            dtypes=[ir.DataType.FLOAT], shapes=[out.shape],
        )
        new = [rows, to_float]
        scale = s_val
        if wq.axis is not None:
            row_scales = new_node(
                self.names, "Gather", [s_val, ids], base=f"{base}_scale", attributes=axis0,
                dtypes=[ir.DataType.FLOAT],
            )
            new.append(row_scales)
            scale = row_scales.outputs[0]
        mul = new_node(
            self.names, "Mul", [to_float.outputs[0], scale], base=base, dtypes=[ir.DataType.FLOAT], shapes=[out.shape]
        )
        new.append(mul)
        self._replace(node, new, mul.outputs[0])

    def conv(self, node: ir.Node, wq: WeightQuant) -> None:
        base = node_label(node)
        out = node.outputs[0]
        x = node.inputs[0]
        assert x is not None
        w = const_array(node.inputs[1])
        assert w is not None
        spatial = (1,) * (w.ndim - 2)
        w_q, w_scale = self._weight(node, wq, transpose=False, scale_shape=(-1, *spatial))
        dql = self._quantize_input(x, base)
        attrs = [a for name, a in node.attributes.items() if name in CONV_ATTRIBUTES]
        conv = new_node(
            self.names, "ConvInteger", [dql.outputs[0], w_q, dql.outputs[2], self._w_zero_point()], base=base,
            attributes=attrs, dtypes=[ir.DataType.INT32], shapes=[out.shape],
        )
        new = [dql, conv, *self._rescale(conv.outputs[0], dql, w_scale, out, base)]
        result = new[-1].outputs[0]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            b = const_array(node.inputs[2])
            assert b is not None  # the plan leaves Convs with a non-constant bias in float
            b_val = add_initializer(
                self.graph, self.names, f"{node.inputs[2].name or base}_channels", b.reshape(-1, *spatial).astype(np.float32)
            )
            add = new_node(self.names, "Add", [result, b_val], base=f"{base}_bias", dtypes=[ir.DataType.FLOAT], shapes=[out.shape])
            new.append(add)
            result = add.outputs[0]
        self._replace(node, new, result)

