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
  the fixed range [0, 1]; a Mul is integer only when both inputs come from integer ops or a
  [0, 1] gate (SE blocks, HardSwish), so decomposed GELU and LayerNorm chains stay float.
* With ``objective="speed"`` the written model is timed against float on this machine and
  regions that are slower in int8 stay float (:mod:`.latency`).

The per-op policy is a table of rules (:mod:`.rules`), walked by the planner
(:mod:`.planner`); this module asks for statistics, resolves the ranges and keeps the int8
weights as the plan's payload; :mod:`.writer` writes them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from quantscope.algorithms import bias_correction, gptq, smoothquant
from quantscope.algorithms.activation_stats import extra_of, merged_kinds
from quantscope.algorithms.equalization import equalized
from quantscope.algorithms.range_selection import RangeSelection
from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig, StaticInt8
from quantscope.config.calibration import StatisticsRequest
from quantscope.errors import UnsupportedModelError
from quantscope.graph.queries import const_array, node_label, nodes_by_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._weights import release
from quantscope.methods.base import Method, nothing_found, prepare_model, select
from quantscope.methods.static_int8.latency import choose_regions
from quantscope.methods.static_int8.memo import PlanMemo, RangeMemo, key_of
from quantscope.methods.static_int8.planner import Planner, Point, observed_source
from quantscope.methods.static_int8.writer import QuantizedWeights, weight_key, write
from quantscope.numerics.affine import QParams, activation_qparams, quantize, weight_qparams
from quantscope.plan import NodeDecision, QuantPlan, TensorQuant, WeightQuant
from quantscope.runtime import int16_saturation_risk

logger = logging.getLogger(__name__)


def s8s8_warning() -> str:
    """The warning for int8 activations with Conv, saying what this CPU has."""
    where = "; this CPU is x86 without VNNI" if int16_saturation_risk() else ""
    return (
        "int8 activations (S8S8) with Conv may run slower than float on x86 CPUs without VNNI"
        f"{where}; use activation_dtype='uint8' unless the target needs S8S8"
    )


def _act_dtype(config: StaticInt8) -> type[np.integer[Any]]:
    return np.uint8 if config.activation_dtype == "uint8" else np.int8


def _planner(model: Model, config: StaticInt8, stats: TensorStats | None) -> Planner:
    return Planner(model, config, stats, select(model, config)).run()


@register(StaticInt8)
class StaticInt8Method(Method):
    """Calibrated full-integer int8 QDQ."""

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        prepared = prepare_model(model, bias_into_gemm=True, integer_chains=True)
        return equalized(prepared) if isinstance(config, StaticInt8) and config.equalize else prepared

    def statistics(self, model: Model, config: MethodConfig) -> StatisticsRequest:
        """The activations a plan could quantize (found by planning without statistics), calibrated as configured."""
        assert isinstance(config, StaticInt8)
        planner = _planner(model, config, None)
        tensors = tuple(name for name, point in planner.points.items() if point.source == "calibrated")
        if config.objective == "speed" and config.measure:  # the latency search may keep nodes float,
            tensors += _fused_outputs(model, planner, set(tensors))  # making points of tensors inside fused patterns
        nodes = [s.node for s in planner.weights]
        extra = merged_kinds(bias_correction.request(nodes) if config.bias_correction else {},
                             smoothquant.request(nodes) if config.smoothquant is not False else {},
                             smoothquant.request(nodes, ("gram",)) if config.gptq else {})
        return StatisticsRequest(tensors, config.as_calibration(), extra=extra)

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None, *,
             memo: PlanMemo | None = None) -> QuantPlan:
        """The plan; ``memo`` keeps what plans over the same model and statistics share (the latency
        search plans many variants: ranges, SmoothQuant's scales and int8 weights are chosen once)."""
        assert isinstance(config, StaticInt8)
        smoothed: list[Mapping[str, Any]] = []
        if memo is not None and memo.smoothquant is not None:
            smoothed = memo.smoothquant  # the model already carries the rewrite, ``stats`` the smoothed inputs
        elif config.smoothquant is not False and stats is not None:
            nodes = [s.node for s in _planner(model, config, None).weights]
            stats, smoothed = smoothquant.smooth(model, nodes, stats, config.smoothquant_alpha or None,
                                                 tokens_only=config.smoothquant is None)
        planner = _planner(model, config, stats)
        decisions = planner.decisions.ordered()
        if not planner.decisions.any_quantized():
            raise nothing_found(config.method, decisions)
        ranges = RangeSelection.of(stats, config.as_calibration().method, (i.name for i in model.inputs)) if stats else None
        activations = _activations(model, config, stats, _memoized(ranges, memo.ranges if memo else None),
                                  planner.points)
        reduce_range = config.reduce_range
        notes = list(model.notes)
        if reduce_range is None:
            reduce_range = int16_saturation_risk()
            if reduce_range:
                notes.append(
                    "weights stored with 7-bit magnitude (reduce_range auto): this CPU is x86 without VNNI, "
                    "where ONNX Runtime's u8 x s8 kernels saturate int16 sums with full 8-bit weights"
                )
        weight_plans = []
        for slot in planner.weights:
            value = slot.node.inputs[slot.index]
            assert value is not None
            w = const_array(value)
            assert w is not None
            weight_plans.append(
                WeightQuant(
                    tensor=value.name or "", node=node_label(slot.node), dtype="int8", axis=slot.axis,
                    bits=7 if reduce_range and planner.rule_kind(slot.node) == "compute" else 8,
                    channels=int(w.shape[slot.axis]) if slot.axis is not None else 1, input_index=slot.index,
                )
            )
        warnings: list[str] = []
        if config.activation_dtype == "int8" and any(d.op_type == "Conv" and d.action == "quantized" for d in decisions):
            warnings.append(s8s8_warning())
        warnings += ranges.warnings() if ranges else []
        plan = QuantPlan(
            method=config.method, decisions=decisions, activations=tuple(activations),
            weights=tuple(weight_plans), notes=tuple(notes), warnings=tuple(warnings),
            extra={"calibration_samples": stats.num_samples if stats else 0, "reduce_range": reduce_range,
                   **({"ranges": ranges.summary()} if ranges else {}),
                   **({"smoothquant": smoothed} if smoothed else {})},
        )
        payload = self.compute(model, config, plan, memo=memo)
        if config.gptq:
            labels = nodes_by_label(model.ir.graph)
            bits = {weight_key(wq): wq.bits for wq in plan.weights}
            payload, gains = gptq.static_weights(labels, payload, bits, extra_of(stats))
            plan = dataclasses.replace(plan, extra={**plan.extra, "gptq_gain_db": gains})
        if config.bias_correction:
            weights = {wq.node: payload[weight_key(wq)] for wq in plan.weights}
            shifts = bias_correction.planned(model, weights, extra_of(stats))
            plan = dataclasses.replace(plan, extra={**plan.extra, "bias_correction": shifts})
        return choose_regions(self, model, config, stats, plan.with_payload(payload))

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan, *, memo: PlanMemo | None = None) -> QuantizedWeights:
        """The int8 weights of ``plan`` and their parameters (from ``memo`` where it has them)."""
        smoothquant.rewrite(model.ir.graph, plan.extra.get("smoothquant", []))  # a plan read from a sidecar
        if plan.payload is None and plan.extra.get("gptq_gain_db"):
            raise UnsupportedModelError("GPTQ-rounded weights need calibration data; quantize the model again")
        nodes = nodes_by_label(model.ir.graph)
        payload: QuantizedWeights = {}
        for wq in plan.weights:
            value = nodes[wq.node].inputs[wq.input_index]

            def quantized(value: ir.Value | None = value, wq: WeightQuant = wq) -> tuple[np.ndarray, QParams]:
                w = const_array(value)
                assert w is not None
                wqp = weight_qparams(w, wq.axis, bits=8, reduce_range=wq.bits == 7)
                codes = quantize(w, wqp)
                release(value)
                return codes, wqp
            payload[weight_key(wq)] = memo.weight(key_of(wq), quantized) if memo is not None else quantized()
        return payload

    def write(self, clone: ir.Model, config: MethodConfig, plan: QuantPlan, payload: QuantizedWeights) -> dict[str, str]:
        assert isinstance(config, StaticInt8)
        if plan.extra.get("bias_correction"):
            bias_correction.apply(plan.extra["bias_correction"], nodes_by_label(clone.graph))
        return write(clone, config, plan, payload)


RangeOf = Callable[[str], tuple[tuple[float, float], str]]


def _memoized(ranges: RangeSelection | None, memo: RangeMemo | None) -> RangeOf | None:
    """``ranges.range``, answered from ``memo`` where it already knows the tensor (its rule recorded too)."""
    if ranges is None or memo is None:
        return ranges.range if ranges is not None else None

    def range_of(name: str) -> tuple[tuple[float, float], str]:
        if name not in memo:
            lo_hi, source = ranges.range(name)
            memo[name] = (lo_hi, source, ranges.rules.get(name, ""))
        lo_hi, source, rule = memo[name]
        ranges.rules.setdefault(name, rule)
        return lo_hi, source
    return range_of


def _activations(
    model: Model, config: StaticInt8, stats: TensorStats | None, range_of: RangeOf | None, points: dict[str, Point]
) -> list[TensorQuant]:
    """The parameters of every activation point: calibrated, fixed, shared, or those of an int8 table."""
    dtype = _act_dtype(config)
    value_producers = {out.name: node for node in nodes_by_label(model.ir.graph).values() for out in node.outputs if out.name}
    values = {out.name: out for node in value_producers.values() for out in node.outputs if out.name}
    resolved: dict[str, QParams] = {}
    activations: list[TensorQuant] = []
    for name, point in _ordered_points(points):
        if point.source == "shared":
            qp = resolved[_root(points, name)]
            lo_hi = _range_of(qp)
            source = f"shared:{point.shared_with}"
        elif point.source == "weight":
            table = const_array(value_producers[name].inputs[0])
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
            assert range_of is not None and stats is not None
            # a point planned with more nodes float than the statistics were taken for: its source's range
            observed = name if name in stats or name not in values else observed_source(values[name], stats).name or name
            if observed not in stats:
                raise UnsupportedModelError(f"no calibration statistics for tensor {name!r}: calibrate for this plan")
            lo_hi, source = range_of(observed)
            qp = activation_qparams(*lo_hi, dtype=dtype)
        resolved[name] = qp
        activations.append(
            TensorQuant(
                tensor=name, dtype=np.dtype(qp.dtype).name, scale=float(qp.scale),
                zero_point=int(qp.zero_point), range=(float(lo_hi[0]), float(lo_hi[1])), source=source,
            )
        )
    return activations


def _fused_outputs(model: Model, planner: Planner, known: set[str]) -> tuple[str, ...]:
    """Float outputs of the integer nodes of ``planner`` that are not points yet."""
    nodes = nodes_by_label(model.ir.graph)
    names = [out.name for d in planner.decisions.ordered() if d.action in ("quantized", "fused") and d.node in nodes
             for out in nodes[d.node].outputs if out.name and out.dtype == ir.DataType.FLOAT]
    return tuple(n for n in dict.fromkeys(names) if n not in known)


def _range_of(qp: QParams) -> tuple[float, float]:
    s, z = float(qp.scale), int(qp.zero_point)
    return ((qp.qmin - z) * s, (qp.qmax - z) * s)


def _root(points: dict[str, Point], name: str) -> str:
    seen = set()
    while points[name].source == "shared" and points[name].shared_with in points and name not in seen:
        seen.add(name)
        name = points[name].shared_with  # type: ignore[assignment]
    return name


def _ordered_points(points: dict[str, Point]) -> list[tuple[str, Point]]:
    """Roots before the tensors that share their parameters."""
    roots = [(n, p) for n, p in points.items() if p.source != "shared"]
    shared = [(n, p) for n, p in points.items() if p.source == "shared"]
    return roots + shared


def preview(model: Model, config: StaticInt8) -> list[NodeDecision]:
    """Per-node decisions static-int8 would take, before any calibration (ranges unknown)."""
    prepared = prepare_model(model, bias_into_gemm=True, integer_chains=True)
    return list(_planner(prepared, config, None).decisions.ordered())
