"""The pipeline every method shares; a method supplies only what differs.

Every method runs the same steps (:func:`quantscope.quantize` drives them)::

    prepare → statistics request → calibration → plan (decisions + payload) → write → finalize

:class:`Method` owns the shared ones: node selection with the user's exclusions resolved once
(:class:`Selection`, label → rule, bodies of If/Loop/Scan included), the decision bookkeeping
(:class:`Decisions`), the decision for If/Loop/Scan holders (:class:`Subgraphs`), the one "found nothing" error
(:func:`nothing_found`) and the apply epilogue (:meth:`Method.apply`: payload, one writer,
:func:`finalize`). A method module says which nodes it takes, how it computes them (in
``plan``, stored as the plan's payload) and how it writes them (``write``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import MethodConfig
from quantscope.config.calibration import StatisticsRequest
from quantscope.errors import UnsupportedModelError
from quantscope.graph import build
from quantscope.graph.prepare import prepare
from quantscope.graph.queries import node_label, nodes_with_subgraphs
from quantscope.graph.subgraphs import bodies
from quantscope.io import Model
from quantscope.plan import Action, NodeDecision, QuantPlan
from quantscope.spill import spill


@dataclass(frozen=True)
class Selection:
    """The nodes a method looks at, with the user's exclusions resolved once (label → rule)."""

    nodes: tuple[ir.Node, ...]
    excluded: Mapping[str, str]

    def rule(self, node: ir.Node | str) -> str | None:
        """The exclusion rule that selected ``node``, or None when it is not excluded."""
        return self.excluded.get(node if isinstance(node, str) else node_label(node))

    def is_excluded(self, node: ir.Node | str) -> bool:
        return self.rule(node) is not None

    @staticmethod
    def reason(rule: str) -> str:
        return f"excluded by {rule}"


def select(model: Model, config: MethodConfig, *, recursive: bool = True) -> Selection:
    """The nodes of ``model``, also inside If/Loop/Scan bodies (unless ``recursive`` is False).

    Excluding a node that holds bodies excludes every node inside them by the same rule.
    Raises :class:`~quantscope.errors.SelectorError` when an exclusion rule matches nothing.
    """
    graph = model.ir.graph
    nodes = tuple(ir.traversal.RecursiveGraphIterator(graph) if recursive else graph)
    if not config.exclude:
        return Selection(nodes, {})
    excluded = dict(config.exclude.resolve((node_label(n), n.op_type) for n in nodes))
    for holder in nodes_with_subgraphs(graph, recursive=recursive):  # outer holders first
        rule = excluded.get(node_label(holder))
        if rule is not None:
            for _, body in bodies(holder):
                for inner in ir.traversal.RecursiveGraphIterator(body):
                    excluded.setdefault(node_label(inner), rule)
    return Selection(nodes, excluded)


class Decisions:
    """A decision and a reason for every node, listed in the selection's order."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self._by_label: dict[str, NodeDecision] = {}

    def decide(self, node: ir.Node, action: Action, reason: str) -> None:
        label = node_label(node)
        self._by_label[label] = NodeDecision(node=label, op_type=node.op_type, action=action, reason=reason)

    def keep(self, node: ir.Node, reason: str) -> None:
        self.decide(node, "float", reason)

    def keep_excluded(self) -> None:
        """Every excluded node stays float, its reason naming the rule."""
        for node in self.selection.nodes:
            rule = self.selection.rule(node)
            if rule is not None:
                self.keep(node, Selection.reason(rule))

    def __contains__(self, label: object) -> bool:
        return label in self._by_label

    def __getitem__(self, label: str) -> NodeDecision:
        return self._by_label[label]

    def values(self) -> Iterator[NodeDecision]:
        return iter(self._by_label.values())

    def ordered(self) -> tuple[NodeDecision, ...]:
        labels = (node_label(n) for n in self.selection.nodes)
        return tuple(self._by_label[label] for label in labels if label in self._by_label)

    def any_quantized(self) -> bool:
        return any(d.action == "quantized" for d in self._by_label.values())


@dataclass(frozen=True)
class Subgraphs:
    """The If/Loop/Scan nodes of the model (at every level) and how many nodes their bodies hold.

    Their bodies are walked like the main graph (:func:`select` is recursive); the holder itself
    is control flow and stays as it is, with a reason saying so.
    """

    holders: frozenset[ir.Node]
    inner: int

    @classmethod
    def of(cls, model: Model) -> Subgraphs:
        graph = model.ir.graph
        inner = sum(1 for n in ir.traversal.RecursiveGraphIterator(graph) if n.graph is not graph)
        return cls(frozenset(nodes_with_subgraphs(graph, recursive=True)), inner)

    def holds(self, node: ir.Node) -> bool:
        return node in self.holders

    @staticmethod
    def reason_for(node: ir.Node) -> str:
        held = [(name, sum(1 for _ in ir.traversal.RecursiveGraphIterator(g))) for name, g in bodies(node)]
        listed = ", ".join(f"{name} ({n} node(s))" for name, n in held)
        return (
            f"holds subgraphs ({listed}); the control flow stays as it is and the nodes inside are "
            f"decided one by one (labels starting {node_label(node)}/)"
        )

    def mark(self, decisions: Decisions) -> None:
        """Holders of a subgraph stay float (unless the user excluded them: that reason stays)."""
        for node in self.holders:
            if not decisions.selection.is_excluded(node):
                decisions.keep(node, self.reason_for(node))

    def notes_when_converted(self) -> list[str]:
        return [f"{self.inner} node(s) inside If/Loop/Scan bodies were decided like the others"] if self.inner else []


def prepare_model(model: Model, **options: bool) -> Model:
    """:func:`~quantscope.graph.prepare.prepare` (``options`` passed on), without its notes."""
    prepared, _ = prepare(model, **options)
    return prepared


def nothing_found(method: str, decisions: Iterable[NodeDecision], what: str = "nothing to quantize") -> UnsupportedModelError:
    """The one error for a model in which a method found nothing to do (the reasons of its nodes)."""
    reasons = sorted({d.reason for d in decisions}, key=lambda r: (r.startswith("holds"), r))  # control flow last
    return UnsupportedModelError(
        f"{method} found {what} in this model: " + "; ".join(reasons[:5]) + ". Nothing was written."
    )


def finalize(clone: ir.Model, config: MethodConfig, metadata: Mapping[str, str] | None = None) -> None:
    """The last pass of every writer: drop what is now unused, sort, record the method."""
    common_passes.RemoveUnusedNodesPass()(clone)  # drops the float weights now unused
    common_passes.TopologicalSortPass()(clone)
    clone.metadata_props["quantscope.method"] = config.method
    clone.metadata_props.update(metadata or {})


def wrap(written: ir.Model, source: Model) -> Model:
    """A written graph as a quantscope Model (in memory: no path, no fingerprint yet)."""
    return Model(ir=written, path=None, fingerprint="", notes=source.notes)


class Method:
    """Base of every method. ``model`` is always the prepared float model.

    Subclasses implement :meth:`plan` (decisions, with what they computed as the plan's
    payload) and :meth:`write` (apply that payload to a copy of the graph); they override
    :meth:`prepare`, :meth:`statistics` and :meth:`compute` when they need to.
    """

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        return prepare_model(model)

    def statistics(self, model: Model, config: MethodConfig) -> StatisticsRequest | None:
        """What to observe on calibration data before planning; None for data-free methods."""
        return None

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        raise NotImplementedError

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Any:
        """The payload of ``plan`` rebuilt from the model (for a plan read from a sidecar)."""
        raise UnsupportedModelError(
            f"{config.method} cannot apply a plan without its payload; quantize the model again"
        )

    def write(self, clone: ir.Model, config: MethodConfig, plan: QuantPlan, payload: Any) -> dict[str, str] | None:
        """Edit ``clone`` (a copy of the prepared graph) as ``plan`` says; return extra metadata."""
        raise NotImplementedError

    def written(self, model: Model, config: MethodConfig, plan: QuantPlan, payload: Any) -> ir.Model:
        """A copy of the graph with the payload written in, finalized."""
        clone = model.ir.clone()
        with build.storing(spill):  # a large new weight goes to a temporary file, not memory
            metadata = self.write(clone, config, plan, payload)
        finalize(clone, config, metadata)
        return clone

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        """Write ``plan`` into a copy of ``model``; a plan without payload (read from a sidecar) recomputes it."""
        payload = plan.payload if plan.payload is not None else self.compute(model, config, plan)
        return wrap(self.written(model, config, plan, payload), model)

