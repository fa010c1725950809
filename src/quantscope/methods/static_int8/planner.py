"""The static-int8 planner: walks the graph, asks each op's rule, and marks activation points.

Only marks: which tensors get a Q/DQ pair and where their parameters come from, which weights
are stored int8, and a decision for every node. Ranges are resolved afterwards from the
statistics (:mod:`.method`), and one writer inserts everything (:mod:`.writer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from quantscope.calibrate import TensorStats
from quantscope.config import StaticInt8
from quantscope.graph.queries import const_array, consumers, is_float_activation, node_label
from quantscope.io import Model
from quantscope.methods.base import Decisions, Selection, Subgraphs
from quantscope.methods.static_int8.rules import (
    FIXED_RANGE_PRODUCERS,
    FUSABLE_ACTIVATIONS,
    rule_for,
)
from quantscope.plan import Action

HUGE = 1e30  # |x| above this is a sentinel (e.g. finfo(float32).min masks), not a signal


@dataclass
class Point:
    """An activation tensor that gets a Q/DQ pair, and where its parameters come from."""

    tensor: str
    source: str  # "calibrated" | "fixed" | "shared" | "weight" (a Gather of an int8 table)
    fixed: tuple[float, float] | None = None
    shared_with: str | None = None


@dataclass(frozen=True)
class WeightSlot:
    """A constant input of a node stored int8 (``axis`` None: one scale per tensor)."""

    node: ir.Node
    index: int
    axis: int | None


def observed_source(value: ir.Value, stats: TensorStats) -> ir.Value:
    """``value``, or the tensor that data-movement ops (shared-scale rules) made it from, when only
    that one has statistics: a Reshape or MaxPool output lies within its input's range."""
    hops = 0
    while (value.name or "") not in stats and hops < 16:
        producer = value.producer()
        if producer is None or rule_for(producer.op_type).kind != "shared_scale" or producer.inputs[0] is None:
            break
        value = producer.inputs[0]
        hops += 1
    return value


class Planner:
    def __init__(self, model: Model, config: StaticInt8, stats: TensorStats | None, selection: Selection) -> None:
        self.graph = model.ir.graph
        self.config = config
        self.stats = stats
        self.selection = selection
        self.subgraphs = Subgraphs.of(model)
        self.points: dict[str, Point] = {}
        self.weights: list[WeightSlot] = []
        self.decisions = Decisions(selection)

    # -- what rules ask ------------------------------------------------------------------
    def _danger(self, value: ir.Value) -> str | None:
        if self.stats is None:
            return None
        # tensors behind data-movement ops share their source's parameters: check the source
        value = observed_source(value, self.stats)
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

    def inputs_problem(self, values: list[ir.Value]) -> str | None:
        """None when every value is a float32 activation safe to quantize, else why not."""
        for v in values:
            if not is_float_activation(v):
                return f"input {v.name!r} is not a float32 activation"
            reason = self._danger(v)
            if reason:
                return reason
        return None

    def candidate(self, node: ir.Node) -> str | None:
        """None when ``node`` can be quantized in principle, else the reason it cannot."""
        rule = self.selection.rule(node)
        if rule is not None:
            return Selection.reason(rule)
        if node.domain not in ("", "ai.onnx"):
            return f"operator {node.domain}::{node.op_type} is outside the default ONNX domain"
        return rule_for(node.op_type).check(self, node)

    def integer_consumer(self, value: ir.Value, depth: int = 0) -> bool:
        """Would an integer kernel read ``value`` (directly, or through a fused Relu/Clip)?"""
        if depth > 8:
            return False
        for c in consumers(value):
            if c.op_type in FUSABLE_ACTIVATIONS:
                if self.integer_consumer(c.outputs[0], depth + 1):
                    return True
                continue
            if self.candidate(c) is not None:
                continue
            kind = rule_for(c.op_type).kind
            if kind in ("compute", "own_scale"):
                return True
            if kind in ("residual", "shared_scale") and self.integer_consumer(c.outputs[0], depth + 1):
                return True
        return False

    def peek_fused(self, node: ir.Node) -> ir.Value:
        """The output a sole following Relu/Clip would carry (without fusing it)."""
        out = node.outputs[0]
        users = consumers(out)
        if len(users) == 1 and users[0].op_type in FUSABLE_ACTIVATIONS and not out.is_graph_output():
            return users[0].outputs[0]
        return out

    def fused_output(self, node: ir.Node) -> ir.Value:
        """The tensor that carries ``node``'s output range: after a sole Relu/Clip when present."""
        out = node.outputs[0]
        users = consumers(out)
        if out.is_graph_output() or len(users) != 1:
            return out
        act = users[0]
        if act.op_type not in FUSABLE_ACTIVATIONS or self.selection.is_excluded(act):
            return out
        if act.op_type == "Clip" and any(v is not None and const_array(v) is None for v in act.inputs[1:]):
            return out
        self.decide(act, "fused", f"fused into the output range of {node_label(node)} (Q placed after it)")
        return act.outputs[0]

    def quantize_output(self, node: ir.Node) -> bool:
        """Quantize a MatMul/Gemm output only when an integer op (or integer I/O) reads it."""
        out = self.peek_fused(node)
        if self.integer_consumer(out) or (self.config.integer_io and out.is_graph_output()):
            self.add_point(self.fused_output(node))
            return True
        return False

    def is_point(self, value: ir.Value) -> bool:
        return (value.name or "") in self.points

    def add_point(self, value: ir.Value) -> None:
        name = value.name or ""
        if name in self.points:
            return
        producer = value.producer()
        if producer is not None and producer.op_type in FIXED_RANGE_PRODUCERS:
            self.points[name] = Point(name, "fixed", fixed=FIXED_RANGE_PRODUCERS[producer.op_type])
        else:
            self.points[name] = Point(name, "calibrated")

    def share_point(self, value: ir.Value, source: ir.Value) -> None:
        name = value.name or ""
        self.points.setdefault(name, Point(name, "shared", shared_with=source.name))

    def table_point(self, value: ir.Value, table: ir.Value | None) -> None:
        name = value.name or ""
        self.points[name] = Point(name, "weight", shared_with=table.name if table is not None else None)

    def add_weight(self, node: ir.Node, index: int, axis: int | None) -> None:
        self.weights.append(WeightSlot(node, index, axis))

    @staticmethod
    def rule_kind(node: ir.Node) -> str:
        return rule_for(node.op_type).kind

    def decide(self, node: ir.Node, action: Action, reason: str) -> None:
        self.decisions.decide(node, action, reason)

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> Planner:
        for node in self.selection.nodes:
            if node_label(node) in self.decisions:  # already fused
                continue
            if self.subgraphs.holds(node) and not self.selection.is_excluded(node):
                self.decide(node, "float", self.subgraphs.reason_for(node))
                continue
            reason = self.candidate(node)
            if reason is None:
                rule_for(node.op_type).plan(self, node)
                continue
            if node.op_type in FUSABLE_ACTIVATIONS and not self.selection.is_excluded(node):
                reason = f"{node.op_type} not directly after a quantized op (nothing to fuse into); kept float"
            self.decide(node, "float", reason)
        return self
