"""Finding the constant weights that weight-only methods rewrite, with a decision for every node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

from quantscope.graph.queries import attr_float, attr_int, const_array, node_label
from quantscope.methods._recurrent import (
    WEIGHT_INPUTS,
    float_arithmetic,
    is_recurrent,
    recurrent_weights,
    rows,
)
from quantscope.methods.base import Decisions, Selection
from quantscope.model_stream import release_pages
from quantscope.numerics.chunks import all_finite

Recurrent = Literal["rows", "native"]
"""How a method takes LSTM/GRU/RNN weights: ``rows`` flattened to ``[directions*gates*hidden, K]``
(2-D block quantization), ``native`` as the node's 3-D tensor with channels on axis 1."""


@dataclass(frozen=True, eq=False)
class WeightSite:
    """A constant weight input of a MatMul, Gemm or Conv node."""

    node: ir.Node
    index: int  # input index of the weight
    array: np.ndarray
    out_axis: int  # axis of output channels in ``array``
    layout: tuple[int, ...] | None = None  # the node's shape of the weight when ``array`` is its rows

    @property
    def label(self) -> str:
        return node_label(self.node)

    @property
    def value(self) -> ir.Value:
        value = self.node.inputs[self.index]
        assert value is not None
        return value


def _site(node: ir.Node) -> tuple[WeightSite | None, str]:
    """The weight of ``node`` or the reason it has none we can rewrite."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None, f"operator {node.domain}::{op} is outside the default ONNX domain"
    if op == "MatMul":
        w = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
        if w is None:
            return None, "MatMul has no constant weight (both operands are activations)"
        if w.ndim != 2:
            return None, f"MatMul weight has rank {w.ndim}; only 2-D weights are rewritten"
        return WeightSite(node, 1, w, 1), ""
    if op == "Gemm":
        w = const_array(node.inputs[1])
        if w is None:
            return None, "Gemm weight is not a constant"
        if attr_int(node, "transA", 0) or attr_float(node, "alpha", 1.0) != 1.0:
            return None, "Gemm with transA=1 or alpha != 1 is not rewritten"
        return WeightSite(node, 1, w, 0 if attr_int(node, "transB", 0) else 1), ""
    if op == "Conv":
        w = const_array(node.inputs[1])
        if w is None:
            return None, "Conv weight is not a constant"
        return WeightSite(node, 1, w, 0), ""
    return None, f"{op} has no weight this method rewrites; kept as is"


def recurrent_sites(node: ir.Node, recurrent: Recurrent) -> tuple[list[WeightSite], str | None]:
    """The W and R sites of an LSTM/GRU/RNN node, or the reason it has none."""
    arrays, problem = recurrent_weights(node)
    if problem is not None:
        return [], problem
    if recurrent == "native":
        return [WeightSite(node, i, w, 1) for i, w in arrays.items()], None
    return [WeightSite(node, i, rows(w), 0, layout=tuple(w.shape)) for i, w in arrays.items()], None


def weight_sites(
    selection: Selection, op_types: Sequence[str], *, min_size: int = 0, recurrent: Recurrent | None = None
) -> tuple[list[WeightSite], Decisions]:
    """Weights to rewrite, and a float decision (with its reason) for every other node.

    With ``recurrent``, the W and R weights of LSTM/GRU/RNN nodes are sites too (laid out as it says).
    """
    sites: list[WeightSite] = []
    decisions = Decisions(selection)
    decisions.keep_excluded()
    for node in selection.nodes:
        if selection.is_excluded(node):
            continue
        if recurrent is not None and is_recurrent(node):
            found, reason = recurrent_sites(node, recurrent)
            small = [s for s in found if s.array.size < min_size]
            if reason is None and small:
                reason = f"{node.op_type} weights have fewer than min_size={min_size} elements; not worth rewriting"
            if reason is not None:
                decisions.keep(node, reason)
            sites += [] if reason else found
            continue
        if node.op_type in ("MatMul", "Gemm", "Conv") and node.op_type not in op_types:
            decisions.keep(node, f"{node.op_type} is not among this method's op types ({', '.join(op_types)})")
            continue
        site, reason = _site(node)
        if site is None:
            decisions.keep(node, reason)
        elif site.array.dtype != np.float32:
            decisions.keep(node, f"weight is {site.array.dtype}, not float32")
        elif site.array.size < min_size:
            decisions.keep(
                node, f"weight has {site.array.size} elements, below min_size={min_size}; not worth rewriting"
            )
        else:
            sites.append(site)
    return sites, decisions


def decide_site(decisions: Decisions, site: WeightSite, reason: str) -> None:
    """Decide ``site``'s node quantized; an LSTM/GRU/RNN node gets one reason per weight and
    says once that its arithmetic stays float (``W: ... | R: ...; the GRU arithmetic ...``)."""
    if not is_recurrent(site.node):
        decisions.decide(site.node, "quantized", reason)
        return
    tail = f"; {float_arithmetic(site.node.op_type)}"
    reason = f"{WEIGHT_INPUTS[site.index]}: {reason}"
    label = site.label
    if label in decisions and decisions[label].action == "quantized" and site.index == 2:
        reason = f"{decisions[label].reason.removesuffix(tail)} | {reason}"
    decisions.decide(site.node, "quantized", reason + tail)


def release(value: ir.Value | None) -> None:
    """Done with this weight for now: the resident pages of a memory-mapped one are dropped
    (a large model's weights are read one at a time, not all kept in memory)."""
    if value is not None:
        release_pages(value.const_value)


def finite_groups(
    sites: Sequence[WeightSite], decisions: Decisions, axis_of: Callable[[WeightSite], int | None]
) -> dict[tuple[str, int | None], list[WeightSite]]:
    """Sites grouped by (weight tensor, axis) so a shared weight is computed once; NaN/inf weights stay float."""
    groups: dict[tuple[str, int | None], list[WeightSite]] = {}
    for site in sites:
        finite = all_finite(site.array)
        release(site.value)
        if not finite:
            decisions.keep(site.node, "weight holds NaN or infinity; kept float")
            continue
        groups.setdefault((site.value.name or site.label, axis_of(site)), []).append(site)
    return groups
