"""Quantization plans: a decision and a reason for every node, and the parameters chosen.

A plan is plain data. It is computed from a model and its statistics, applied to write the
quantized graph, and saved in the sidecar JSON so a run can be read and reproduced.

A plan made in this process also carries a ``payload``: what its method computed while
planning (quantized weights, scales, codebooks, the converted float16 graph) so that applying
it computes nothing twice. The payload lives in memory only: it is neither saved nor
compared, and a plan read back from a sidecar has none (its method recomputes it on apply).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Action = Literal["quantized", "fused", "float"]


@dataclass(frozen=True, kw_only=True)
class NodeDecision:
    """What happened to one node: quantized (and how), fused into a neighbour, or left float (and why)."""

    node: str
    op_type: str
    action: Action
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class TensorQuant:
    """Quantization parameters of one activation tensor (a Q/DQ pair in the graph)."""

    tensor: str
    dtype: str  # "uint8" | "int8"
    scale: float
    zero_point: int
    range: tuple[float, float]
    source: str  # "calibrated:<method>", "fixed:<why>", "shared:<tensor>"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["range"] = list(self.range)
        return d


@dataclass(frozen=True, kw_only=True)
class WeightQuant:
    """How one constant weight is stored."""

    tensor: str
    node: str
    dtype: str
    axis: int | None
    bits: int
    channels: int
    input_index: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class QuantPlan:
    method: str
    decisions: tuple[NodeDecision, ...]
    activations: tuple[TensorQuant, ...] = ()
    weights: tuple[WeightQuant, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    payload: Any = field(default=None, compare=False, repr=False)

    def _repr_html_(self) -> str:
        """Every node's decision and reason as an HTML table, inline in a notebook."""
        from quantscope.reporting.notebook import plan_html

        return plan_html(self)

    def with_payload(self, payload: Any) -> QuantPlan:
        """This plan carrying ``payload`` (what its method's writer needs)."""
        return replace(self, payload=payload)

    @property
    def quantized_nodes(self) -> list[NodeDecision]:
        return [d for d in self.decisions if d.action == "quantized"]

    @property
    def float_nodes(self) -> list[NodeDecision]:
        return [d for d in self.decisions if d.action == "float"]

    def summary(self) -> dict[str, Any]:
        by_action = Counter(d.action for d in self.decisions)
        quantized_ops = Counter(d.op_type for d in self.decisions if d.action == "quantized")
        float_reasons = Counter(d.reason for d in self.decisions if d.action == "float")
        return {
            "nodes": len(self.decisions),
            "quantized": by_action.get("quantized", 0),
            "fused": by_action.get("fused", 0),
            "float": by_action.get("float", 0),
            "quantized_by_op": dict(quantized_ops.most_common()),
            "float_reasons": dict(float_reasons.most_common()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "summary": self.summary(),
            "decisions": [d.to_dict() for d in self.decisions],
            "activations": [t.to_dict() for t in self.activations],
            "weights": [w.to_dict() for w in self.weights],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantPlan:
        return cls(
            method=d["method"],
            decisions=tuple(NodeDecision(**x) for x in d["decisions"]),
            activations=tuple(
                TensorQuant(**{**x, "range": tuple(x["range"])}) for x in d.get("activations", [])
            ),
            weights=tuple(WeightQuant(**x) for x in d.get("weights", [])),
            notes=tuple(d.get("notes", [])),
            warnings=tuple(d.get("warnings", [])),
            extra=dict(d.get("extra", {})),
        )
