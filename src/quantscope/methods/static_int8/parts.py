"""Parts of a region the latency search may keep float: node kinds and stretches in graph order.

A region that loses as a whole can still hold parts that win. On small CNNs the depthwise
convolutions, or a first convolution over three colour channels, often run slower in int8 while
the pointwise ones win; elsewhere the first layers, at the largest spatial size, are the losers.
Two families of parts are offered, in this order:

* **kinds**: every node of one kind in the region (its op type; convolutions told apart by
  their weight's shape: depthwise, grouped, pointwise, few input channels, spatial);
* **stretches**: consecutive nodes in graph order, cut where few tensors cross the cut, so
  keeping one float adds few float/integer round trips.

Which parts actually win is measured (:mod:`.latency`), never assumed from these families.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, pairwise

import onnx_ir as ir

from quantscope.graph.queries import attr_int, node_label
from quantscope.methods.static_int8.regions import Region

STRETCHES = 8  # a region is cut into at most this many stretches
FEW_CHANNELS = 4  # a convolution over at most this many input channels per group (e.g. an RGB input layer)


@dataclass(frozen=True)
class Part:
    """Nodes (labels) of a region that the search times kept float together."""

    name: str
    nodes: tuple[str, ...]


def conv_kind(node: ir.Node) -> str:
    """``depthwise``, ``grouped``, ``pointwise``, ``few input channels`` or ``spatial`` (by the weight's shape)."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    shape = weight.shape if weight is not None else None
    if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape):
        return "spatial"
    out_channels, in_per_group = int(shape[0]), int(shape[1])
    group = attr_int(node, "group", 1)
    if group > 1:
        return "depthwise" if in_per_group == 1 and group == out_channels else "grouped"
    if all(int(d) == 1 for d in shape[2:]):
        return "pointwise"
    if in_per_group <= FEW_CHANNELS:
        return "few input channels"
    return "spatial"


def _kind(node: ir.Node) -> str:
    if node.op_type in ("Conv", "ConvInteger"):
        return f"{node.op_type}/{conv_kind(node)}"
    return node.op_type


def kinds(graph: ir.Graph, region: Region) -> list[Part]:
    """One part per node kind in ``region`` (largest first), leaving out a kind that is the whole region."""
    labels = set(region.nodes)
    groups: dict[str, list[str]] = {}
    for node in graph:
        label = node_label(node)
        if label in labels:
            groups.setdefault(_kind(node), []).append(label)
    parts = [Part(f"every {kind} ({len(nodes)} node(s))", tuple(nodes))
             for kind, nodes in groups.items() if len(nodes) < len(region.nodes)]
    return sorted(parts, key=lambda p: -len(p.nodes))


def _crossings(graph: ir.Graph, order: list[str]) -> list[int]:
    """For each cut after position i of ``order``: how many tensors made before it are used after it."""
    position = {label: i for i, label in enumerate(order)}
    last_use = [0] * len(order)  # for each position: the last position using a tensor it makes
    for node in graph:
        label = node_label(node)
        if label not in position:
            continue
        for out in node.outputs:
            uses = [position[node_label(user)] for user, _ in out.uses() if node_label(user) in position]
            last_use[position[label]] = max([last_use[position[label]], *uses])
    delta = [0] * (len(order) + 1)  # a tensor made at i and last used at end crosses the cuts i .. end - 1
    for i, end in enumerate(last_use):
        if end > i:
            delta[i] += 1
            delta[end] -= 1
    return list(accumulate(delta[:-1]))


def stretches(graph: ir.Graph, region: Region, count: int = STRETCHES) -> list[Part]:
    """``region`` cut into up to ``count`` stretches of about equal length, each cut where fewest tensors cross."""
    order = list(region.nodes)
    n = len(order)
    if n < 2 * count:
        count = max(1, n // 2)
    if count < 2:
        return []
    crossing = _crossings(graph, order)
    window = max(1, n // (2 * count))
    cuts: list[int] = []
    for k in range(1, count):
        target = k * n // count
        low, high = max(target - window, (cuts[-1] + 1) if cuts else 0), min(target + window, n - 2)
        if low > high:
            continue
        cuts.append(min(range(low, high + 1), key=lambda c: (crossing[c], abs(c - target))))
    bounds = [0, *(c + 1 for c in cuts), n]
    return [Part(f"stretch {i + 1}/{len(bounds) - 1} ({order[a]} .. {order[b - 1]})", tuple(order[a:b]))
            for i, (a, b) in enumerate(pairwise(bounds)) if b > a]


def parts(graph: ir.Graph, region: Region) -> list[Part]:
    """The parts of ``region`` to time: kinds first, then stretches."""
    return [*kinds(graph, region), *stretches(graph, region)]
