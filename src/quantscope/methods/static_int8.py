"""Full-integer int8 (static) quantization written as QDQ.

Weights become int8 symmetric (per output channel) behind DequantizeLinear; activations get
8-bit per-tensor parameters from calibration and a QuantizeLinear/DequantizeLinear pair.
ONNX Runtime's optimizer then fuses ``DQ → op → Q`` groups into its integer kernels
(QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm, QLinearAdd, ...), which is
where the speed comes from. The choices below follow what those fusions need:

* Relu/Clip right after a quantized op are *fused*: the Q goes after the activation, whose
  calibrated range starts at 0, so ONNX Runtime drops the Relu into the integer kernel.
* Data-movement ops (MaxPool, Reshape, Transpose, ...) reuse their input's scale and zero
  point; ONNX Runtime only removes Q/DQ around them when both sides match.
* MatMul outputs are quantized only when an integer op consumes them; otherwise the
  float output lets ONNX Runtime use MatMulIntegerToFloat without a requantization error.
* Tensors holding values near the float32 limits (attention masks built from
  ``finfo(float32).min``) are never quantized; Softmax inputs stay float, its output uses
  the fixed range [0, 1]; element-wise Mul stays float (it guards decomposed GELU and
  LayerNorm chains and gains little).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig, StaticInt8
from quantscope.errors import UnsupportedModelError
from quantscope.graph.prepare import prepare
from quantscope.graph.qdq import (
    NameAllocator,
    gather_from_quantized_table,
    insert_qdq,
    make_input_integer,
    replace_input_with_dequantized,
)
from quantscope.graph.queries import (
    attr_float,
    attr_int,
    const_array,
    consumers,
    is_float_activation,
    node_label,
    nodes_with_subgraphs,
)
from quantscope.io import Model
from quantscope.methods import register
from quantscope.numerics.affine import (
    QParams,
    activation_qparams,
    quantize,
    quantize_bias,
    weight_qparams,
)
from quantscope.plan import NodeDecision, QuantPlan, TensorQuant, WeightQuant
from quantscope.runtime import int16_saturation_risk

logger = logging.getLogger(__name__)

COMPUTE_OPS = {"Conv", "MatMul", "Gemm"}
RESIDUAL_OPS = {"Add"}
OWN_SCALE_OPS = {"AveragePool", "GlobalAveragePool", "Concat"}
SHARED_SCALE_OPS = {
    "MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
    "Resize", "Identity", "Slice", "Split", "Gather",
}
FUSABLE_ACTIVATIONS = {"Relu", "Clip"}
FIXED_RANGE_PRODUCERS = {"Softmax": (0.0, 1.0), "Sigmoid": (0.0, 1.0)}
FLOAT_REASONS = {
    "Mul": "element-wise Mul is kept float (little integer speed-up; guards GELU and LayerNorm chains)",
    "Softmax": "Softmax is kept float (its input can hold attention-mask values); its output is quantized "
    "with the fixed range [0, 1] where an integer op consumes it",
    "LayerNormalization": "normalization is kept float (sums of squares do not survive 8 bits)",
    "BatchNormalization": "BatchNormalization not following a Conv cannot be folded; kept float",
}
HUGE = 1e30  # |x| above this is a sentinel (e.g. finfo(float32).min masks), not a signal


@dataclass
class _Point:
    """An activation tensor that gets a Q/DQ pair, and where its parameters come from."""

    tensor: str
    source: str  # "calibrated" | "fixed" | "shared" | "weight" (a Gather of an int8 table)
    fixed: tuple[float, float] | None = None
    shared_with: str | None = None


class _Planner:
    def __init__(self, model: Model, config: StaticInt8, stats: TensorStats | None) -> None:
        self.model = model
        self.graph = model.ir.graph
        self.config = config
        self.stats = stats
        self.points: dict[str, _Point] = {}
        self.decisions: dict[str, NodeDecision] = {}
        self.fused: set[int] = set()
        self.notes: list[str] = list(model.notes)
        self.warnings: list[str] = []
        nodes = [(node_label(n), n.op_type) for n in self.graph]
        self.excluded = config.exclude.resolve(nodes) if config.exclude else {}

    # -- checks ------------------------------------------------------------------------
    def _danger(self, value: ir.Value) -> str | None:
        if self.stats is None:
            return None
        # tensors behind data-movement ops share their source's parameters: check the source
        hops = 0
        while (value.name or "") not in self.stats and hops < 16:
            producer = value.producer()
            if producer is None or producer.op_type not in SHARED_SCALE_OPS or producer.inputs[0] is None:
                break
            value = producer.inputs[0]
            hops += 1
        name = value.name or ""
        if name not in self.stats:
            if name in self.points and self.points[name].source != "calibrated":
                return None  # shares its producer's parameters, or has a fixed range
            producer = value.producer()
            if producer is not None and producer.op_type in FIXED_RANGE_PRODUCERS:
                return None
            return f"no calibration statistics for tensor {name!r}"
        if self.stats.absmax(name) > HUGE:
            return (
                f"tensor {name!r} reaches {self.stats.absmax(name):.3g} (a sentinel such as an attention "
                "mask built from finfo(float32).min); quantizing it would erase every other value"
            )
        return None

    def _activation_inputs_ok(self, node: ir.Node, values: list[ir.Value]) -> str | None:
        for v in values:
            if not is_float_activation(v):
                return f"input {v.name!r} is not a float32 activation"
            reason = self._danger(v)
            if reason:
                return reason
        return None

    def candidate(self, node: ir.Node) -> str | None:
        """None when ``node`` can be quantized in principle, else the reason it cannot."""
        label = node_label(node)
        if label in self.excluded:
            return f"excluded by {self.excluded[label]}"
        if node.domain not in ("", "ai.onnx"):
            return f"operator {node.domain}::{node.op_type} is outside the default ONNX domain"
        op = node.op_type
        if op == "Conv":
            if const_array(node.inputs[1]) is None:
                return "Conv weight is not a constant"
            return self._activation_inputs_ok(node, [node.inputs[0]])
        if op == "MatMul":
            a, b = node.inputs[0], node.inputs[1]
            b_const = const_array(b)
            if b_const is not None:
                if b_const.ndim != 2 or b_const.dtype != np.float32:
                    return "MatMul weight is not a 2-D float32 constant"
                return self._activation_inputs_ok(node, [a])
            if const_array(a) is not None:
                return "MatMul with a constant first input is not supported"
            if not self.config.quantize_activation_matmul:
                return "activation × activation MatMul disabled by quantize_activation_matmul=False"
            return self._activation_inputs_ok(node, [a, b])
        if op == "Gemm":
            if attr_int(node, "transA", 0) != 0:
                return "Gemm with transA=1 is not supported"
            if attr_float(node, "alpha", 1.0) != 1.0 or (len(node.inputs) > 2 and attr_float(node, "beta", 1.0) != 1.0):
                return "Gemm with alpha or beta other than 1 is not supported"
            if const_array(node.inputs[1]) is None:
                return "Gemm weight is not a constant"
            return self._activation_inputs_ok(node, [node.inputs[0]])
        if op in RESIDUAL_OPS:
            if any(const_array(v) is not None for v in node.inputs):
                return "Add with a constant operand (a bias) is kept float; it folds into the float path"
            return self._activation_inputs_ok(node, list(node.inputs))
        if op == "Gather" and const_array(node.inputs[0]) is not None:
            table = const_array(node.inputs[0])
            assert table is not None
            if table.dtype != np.float32 or table.ndim != 2 or attr_int(node, "axis", 0) != 0:
                return "Gather on a constant that is not a 2-D float32 table along axis 0"
            if table.size < 4096:
                return "small constant Gather table; not worth an integer copy"
            return None
        if op in OWN_SCALE_OPS or op in SHARED_SCALE_OPS:
            data = [v for v in node.inputs[:1] if v is not None] if op != "Concat" else list(node.inputs)
            return self._activation_inputs_ok(node, data)
        return FLOAT_REASONS.get(op, f"{op} has no integer kernel in ONNX Runtime's QDQ fusion; kept float")

    def _integer_consumer(self, value: ir.Value, depth: int = 0) -> bool:
        """Would an integer kernel read ``value`` (directly, or through a fused Relu/Clip)?"""
        if depth > 8:
            return False
        for c in consumers(value):
            if c.op_type in FUSABLE_ACTIVATIONS:
                if self._integer_consumer(c.outputs[0], depth + 1):
                    return True
                continue
            if self.candidate(c) is not None:
                continue
            if c.op_type in COMPUTE_OPS or c.op_type in OWN_SCALE_OPS:
                return True
            if (c.op_type in RESIDUAL_OPS or c.op_type in SHARED_SCALE_OPS) and self._integer_consumer(
                c.outputs[0], depth + 1
            ):
                return True
        return False

    def _fused_output(self, node: ir.Node) -> ir.Value:
        """The tensor that carries ``node``'s output range: after a sole Relu/Clip when present."""
        out = node.outputs[0]
        users = consumers(out)
        if out.is_graph_output() or len(users) != 1:
            return out
        act = users[0]
        if act.op_type not in FUSABLE_ACTIVATIONS or node_label(act) in self.excluded:
            return out
        if act.op_type == "Clip" and any(
            v is not None and const_array(v) is None for v in act.inputs[1:]
        ):
            return out
        self.fused.add(id(act))
        self.decisions[node_label(act)] = NodeDecision(
            node=node_label(act), op_type=act.op_type, action="fused",
            reason=f"fused into the output range of {node_label(node)} (Q placed after it)",
        )
        return act.outputs[0]

    def _add_point(self, value: ir.Value) -> None:
        name = value.name or ""
        if name in self.points:
            return
        producer = value.producer()
        if (producer is not None and producer.op_type in FIXED_RANGE_PRODUCERS and name not in (self.stats or {})) or (producer is not None and producer.op_type in FIXED_RANGE_PRODUCERS):
            self.points[name] = _Point(name, "fixed", fixed=FIXED_RANGE_PRODUCERS[producer.op_type])
        else:
            self.points[name] = _Point(name, "calibrated")

    # -- planning -----------------------------------------------------------------------
    def run(self) -> tuple[list[NodeDecision], dict[str, _Point], list[tuple[ir.Node, int, int | None]]]:
        weights: list[tuple[ir.Node, int, int | None]] = []  # (node, input index, channel axis)
        subgraph_nodes = set(map(id, nodes_with_subgraphs(self.graph)))
        for node in self.graph:
            label = node_label(node)
            if label in self.decisions:  # already fused
                continue
            if id(node) in subgraph_nodes:
                inner = sum(1 for _ in ir.traversal.RecursiveGraphIterator(self.graph) if _.graph is not self.graph)
                self.decisions[label] = NodeDecision(
                    node=label, op_type=node.op_type, action="float",
                    reason=f"holds a subgraph ({inner} node(s) in If/Loop/Scan bodies); quantization inside subgraphs is not supported yet",
                )
                continue
            reason = self.candidate(node)
            op = node.op_type
            if reason is None and op in COMPUTE_OPS:
                self._plan_compute(node, weights)
                continue
            if reason is None and op in RESIDUAL_OPS:
                out = node.outputs[0]
                if self._integer_consumer(out) or self._integer_consumer(self._peek_fused(node)):
                    for v in node.inputs:
                        self._add_point(v)
                    self._add_point(self._fused_output(node))
                    self._decide(node, "quantized", "integer residual Add (QLinearAdd), inputs and output quantized")
                else:
                    self._decide(node, "float", "Add output feeds no integer op; kept float to avoid a needless requantization")
                continue
            if reason is None and op in OWN_SCALE_OPS:
                data = list(node.inputs) if op == "Concat" else [node.inputs[0]]
                if all((v.name or "") in self.points for v in data):
                    self._add_point(self._fused_output(node) if op != "Concat" else node.outputs[0])
                    self._decide(node, "quantized", "integer kernel on quantized input, own output scale")
                else:
                    self._decide(node, "float", "input is not quantized (its producer stays float)")
                continue
            if reason is None and op == "Gather" and const_array(node.inputs[0]) is not None:
                weights.append((node, 0, None))
                out = node.outputs[0]
                self.points[out.name or ""] = _Point(out.name or "", "weight", shared_with=node.inputs[0].name)
                self._decide(
                    node, "quantized",
                    "embedding table stored int8 per tensor; ONNX Runtime gathers int8 rows, then dequantizes",
                )
                continue
            if reason is None and op in SHARED_SCALE_OPS:
                data = node.inputs[0]
                if data is not None and (data.name or "") in self.points:
                    for out in node.outputs:
                        self.points.setdefault(out.name or "", _Point(out.name or "", "shared", shared_with=data.name))
                    self._decide(node, "quantized", "reuses its input's scale and zero point (Q/DQ dropped by ONNX Runtime)")
                else:
                    self._decide(node, "float", "input is not quantized (its producer stays float)")
                continue
            if op in FUSABLE_ACTIVATIONS and reason is not None and label not in self.excluded:
                reason = f"{op} not directly after a quantized op (nothing to fuse into); kept float"
            self._decide(node, "float", reason or "kept float")
        return [self.decisions[node_label(n)] for n in self.graph if node_label(n) in self.decisions], self.points, weights

    def _peek_fused(self, node: ir.Node) -> ir.Value:
        out = node.outputs[0]
        users = consumers(out)
        if len(users) == 1 and users[0].op_type in FUSABLE_ACTIVATIONS and not out.is_graph_output():
            return users[0].outputs[0]
        return out

    def _decide(self, node: ir.Node, action: str, reason: str) -> None:
        label = node_label(node)
        self.decisions[label] = NodeDecision(node=label, op_type=node.op_type, action=action, reason=reason)  # type: ignore[arg-type]

    def _plan_compute(self, node: ir.Node, weights: list[tuple[ir.Node, int, int | None]]) -> None:
        op = node.op_type
        pc = self.config.per_channel
        if op == "Conv":
            self._add_point(node.inputs[0])
            weights.append((node, 1, 0 if pc else None))
            self._add_point(self._fused_output(node))
            how = "QLinearConv: int8 weights per output channel" if pc else "QLinearConv: int8 weights per tensor"
        elif op == "Gemm":
            self._add_point(node.inputs[0])
            axis = 0 if attr_int(node, "transB", 0) else 1
            weights.append((node, 1, axis if pc else None))
            out = self._peek_fused(node)
            if self._integer_consumer(out) or (self.config.integer_io and out.is_graph_output()):
                self._add_point(self._fused_output(node))
                how = "QGemm with quantized output"
            else:
                how = "QGemm with float output (no integer consumer)"
        else:  # MatMul
            a, b = node.inputs[0], node.inputs[1]
            self._add_point(a)
            if const_array(b) is not None:
                weights.append((node, 1, 1 if pc else None))
                how = "MatMulIntegerToFloat / QLinearMatMul: int8 weights per column"
            else:
                self._add_point(b)
                how = "activation × activation MatMul, both operands 8-bit per tensor"
            out = self._peek_fused(node)
            if self._integer_consumer(out) or (self.config.integer_io and out.is_graph_output()):
                self._add_point(self._fused_output(node))
                how += ", quantized output"
        self._decide(node, "quantized", how)


def _act_dtype(config: StaticInt8) -> type[np.integer]:
    return np.uint8 if config.activation_dtype == "uint8" else np.int8


@register(StaticInt8)
class StaticInt8Method:
    """Calibrated full-integer int8 QDQ."""

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        prepared, _ = prepare(model, bias_into_gemm=True)
        return prepared

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]:
        """The activations a plan could quantize: found by planning without statistics."""
        assert isinstance(config, StaticInt8)
        _, points, _ = _Planner(model, config, None).run()
        return [name for name, point in points.items() if point.source == "calibrated"]

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, StaticInt8)
        planner = _Planner(model, config, stats)
        decisions, points, weights = planner.run()
        if not any(d.action == "quantized" for d in decisions):
            reasons = sorted({d.reason for d in decisions})
            raise UnsupportedModelError(
                "static-int8 found nothing to quantize in this model: "
                + "; ".join(reasons[:5])
                + ". Nothing was written."
            )
        dtype = _act_dtype(config)
        value_producers = {out.name: node for node in model.ir.graph for out in node.outputs if out.name}
        resolved: dict[str, QParams] = {}
        activations: list[TensorQuant] = []
        for name, point in _ordered_points(points):
            if point.source == "shared":
                root = _root(points, name)
                qp = resolved[root]
                lo_hi = _range_of(qp)
                source = f"shared:{point.shared_with}"
            elif point.source == "weight":
                gather = value_producers[name]
                table = const_array(gather.inputs[0])
                assert table is not None
                qp = weight_qparams(table, None, bits=8)
                lo_hi = _range_of(qp)
                source = f"weight:{point.shared_with}"
            elif point.source == "fixed":
                assert point.fixed is not None
                lo_hi = point.fixed
                qp = activation_qparams(*lo_hi, dtype=dtype)
                source = "fixed:[0, 1] output range"
            else:
                assert stats is not None
                params = {"percentile": config.percentile} if config.calibration == "percentile" else {}
                lo_hi = stats.range(name, config.calibration, **params)
                qp = activation_qparams(*lo_hi, dtype=dtype)
                source = f"calibrated:{config.calibration}"
            resolved[name] = qp
            activations.append(
                TensorQuant(
                    tensor=name, dtype=np.dtype(qp.dtype).name, scale=float(qp.scale),
                    zero_point=int(qp.zero_point), range=(float(lo_hi[0]), float(lo_hi[1])), source=source,
                )
            )
        reduce_range = config.reduce_range
        notes = list(planner.notes)
        if reduce_range is None:
            reduce_range = int16_saturation_risk()
            if reduce_range:
                notes.append(
                    "weights stored with 7-bit magnitude (reduce_range auto): this CPU is x86 without VNNI, "
                    "where ONNX Runtime's u8 x s8 kernels saturate int16 sums with full 8-bit weights"
                )
        weight_plans = []
        for node, index, axis in weights:
            w = const_array(node.inputs[index])
            assert w is not None
            weight_plans.append(
                WeightQuant(
                    tensor=node.inputs[index].name or "", node=node_label(node), dtype="int8", axis=axis,
                    bits=7 if reduce_range and node.op_type in COMPUTE_OPS else 8,
                    channels=int(w.shape[axis]) if axis is not None else 1, input_index=index,
                )
            )
        warnings = list(planner.warnings)
        if config.activation_dtype == "int8" and any(d.op_type == "Conv" and d.action == "quantized" for d in decisions):
            warnings.append(
                "int8 activations (S8S8) with Conv run slower than float on x86 CPUs without VNNI "
                "(0.24-0.69x measured); use activation_dtype='uint8' unless the target needs S8S8"
            )
        n_sub = sum(1 for n in ir.traversal.RecursiveGraphIterator(model.ir.graph) if n.graph is not model.ir.graph)
        if n_sub:
            warnings.append(f"{n_sub} node(s) inside If/Loop/Scan subgraphs were left in float")
        return QuantPlan(
            method=config.method, decisions=tuple(decisions), activations=tuple(activations),
            weights=tuple(weight_plans), notes=tuple(notes), warnings=tuple(warnings),
            extra={"calibration_samples": stats.num_samples if stats else 0, "reduce_range": reduce_range},
        )

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        assert isinstance(config, StaticInt8)
        clone = model.ir.clone()
        graph = clone.graph
        names = NameAllocator(graph)
        values = _values_by_name(graph)
        nodes = {node_label(n): n for n in graph}
        act_qp = {t.tensor: _qparams(t) for t in plan.activations}
        io_meta: dict[str, dict[str, object]] = {}
        # weights and biases first: they need the input scale, read from the plan
        cache: dict[tuple[str, str], ir.Value] = {}
        for wq in plan.weights:
            node = nodes[wq.node]
            w_val = node.inputs[wq.input_index]
            w = const_array(w_val)
            assert w is not None
            wqp = weight_qparams(w, wq.axis, bits=8, reduce_range=wq.bits == 7)
            if node.op_type == "Gather":
                gather_from_quantized_table(graph, names, node, quantize(w, wqp), wqp, w_val.name or "table")
                continue
            replace_input_with_dequantized(
                graph, names, node, wq.input_index, quantize(w, wqp), wqp, w_val.name or "weight", cache
            )
            if node.op_type in ("Conv", "Gemm") and len(node.inputs) > 2 and node.inputs[2] is not None:
                b_val = node.inputs[2]
                b = const_array(b_val)
                x_name = node.inputs[0].name or ""
                if b is not None and b.ndim == 1 and x_name in act_qp and np.size(wqp.scale) in (1, b.shape[0]):
                    w_scale = np.broadcast_to(wqp.scale, b.shape).astype(np.float32)
                    qb, bqp = quantize_bias(b.astype(np.float32), act_qp[x_name].scale, w_scale)
                    replace_input_with_dequantized(graph, names, node, 2, qb, bqp, b_val.name or "bias")
        for t in plan.activations:
            if t.source.startswith("weight:"):
                continue  # the gathered rows of an int8 table: dequantized above
            value = values[t.tensor]
            qp = act_qp[t.tensor]
            if value.is_graph_input() and config.integer_io:
                make_input_integer(graph, names, value, qp)
                io_meta[t.tensor] = {"kind": "input", **_qp_meta(qp)}
                continue
            insert_qdq(graph, names, value, qp, integer_output=config.integer_io)
            if config.integer_io and any(o.name == t.tensor for o in graph.outputs):
                io_meta[t.tensor] = {"kind": "output", **_qp_meta(qp)}
        if config.integer_io:
            float_outputs = [o.name for o in graph.outputs if o.dtype == ir.DataType.FLOAT]
            if float_outputs:
                logger.warning("integer_io: outputs %s stay float (produced by float ops)", float_outputs)
        common_passes.RemoveUnusedNodesPass()(clone)  # drops the float weights now unused
        graph.sort()
        clone.metadata_props["quantscope.method"] = config.method
        if io_meta:
            import json

            clone.metadata_props["quantscope.integer_io"] = json.dumps(io_meta, sort_keys=True)
        return Model(ir=clone, path=None, fingerprint="", notes=model.notes)


def _qp_meta(qp: QParams) -> dict[str, object]:
    return {"scale": float(qp.scale), "zero_point": int(qp.zero_point), "dtype": np.dtype(qp.dtype).name}


def _qparams(t: TensorQuant) -> QParams:
    dtype = np.dtype(t.dtype)
    return QParams(
        scale=np.asarray(t.scale, dtype=np.float32), zero_point=np.asarray(t.zero_point, dtype=dtype),
        dtype=dtype, axis=None,
    )


def _range_of(qp: QParams) -> tuple[float, float]:
    s, z = float(qp.scale), int(qp.zero_point)
    return ((qp.qmin - z) * s, (qp.qmax - z) * s)


def _root(points: dict[str, _Point], name: str) -> str:
    seen = set()
    while points[name].source == "shared" and points[name].shared_with in points and name not in seen:
        seen.add(name)
        name = points[name].shared_with  # type: ignore[assignment]
    return name


def _ordered_points(points: dict[str, _Point]) -> list[tuple[str, _Point]]:
    """Roots before the tensors that share their parameters."""
    roots = [(n, p) for n, p in points.items() if p.source != "shared"]
    shared = [(n, p) for n, p in points.items() if p.source == "shared"]
    return roots + shared


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    out: dict[str, ir.Value] = {v.name: v for v in graph.inputs if v.name}
    for node in graph:
        for v in node.outputs:
            if v.name:
                out[v.name] = v
    return out


def preview(model: Model, config: StaticInt8) -> list[NodeDecision]:
    """Per-node decisions static-int8 would take, before any calibration (ranges unknown)."""
    prepared, _ = prepare(model, bias_into_gemm=True)
    decisions, _, _ = _Planner(prepared, config, None).run()
    return decisions
