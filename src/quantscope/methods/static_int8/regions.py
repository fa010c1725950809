"""Regions of a static-int8 plan: connected sets of quantized nodes between float boundaries.

Keeping a whole region float removes its Q/DQ together with its integer kernels, so no new
round trip between float and integer appears; that is the unit the latency step decides on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import onnx_ir as ir

from quantscope.graph.queries import node_label
from quantscope.methods.static_int8.rules import rule_for
from quantscope.plan import NodeDecision

INTEGER = ("quantized", "fused")


@dataclass(frozen=True)
class Region:
    """Quantized (or fused) nodes of the main graph joined by tensors they pass to each other."""

    index: int
    nodes: tuple[str, ...]  # labels, in graph order

    def op_types(self, graph: ir.Graph) -> dict[str, int]:
        labels = set(self.nodes)
        return dict(Counter(n.op_type for n in graph if node_label(n) in labels))


def find_regions(graph: ir.Graph, decisions: Iterable[NodeDecision]) -> list[Region]:
    """The regions of ``graph`` (main graph only) under ``decisions``, largest first, then in graph order."""
    # LSTM/GRU/RNN run float arithmetic on int8 weights: quantized for size, not speed; never a region
    active = {d.node for d in decisions if d.action in INTEGER and rule_for(d.op_type).kind != "weight_only"}
    order = [n for n in graph if node_label(n) in active]
    parent = {node_label(n): node_label(n) for n in order}

    def root(label: str) -> str:
        while parent[label] != label:
            parent[label] = parent[parent[label]]
            label = parent[label]
        return label

    for node in order:
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and producer.graph is graph and node_label(producer) in parent:
                parent[root(node_label(producer))] = root(node_label(node))
    groups: dict[str, list[str]] = {}
    for node in order:
        groups.setdefault(root(node_label(node)), []).append(node_label(node))
    position = {label: i for i, label in enumerate(parent)}
    ranked = sorted(groups.values(), key=lambda labels: (-len(labels), position[labels[0]]))
    return [Region(i, tuple(labels)) for i, labels in enumerate(ranked)]
