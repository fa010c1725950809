"""Codebook weights: clustering (k-means), ternary and binary, written as packed codes + codebook.

All three store a constant MatMul/Gemm/Conv weight as ``b``-bit codes packed into uint8
bytes (:mod:`quantscope.numerics.packing`: a little-endian bit stream, ``ceil(n*b/8)``
bytes) plus a float32 codebook, one per tensor or one per output channel, and expand it
back with standard ONNX operators (:mod:`quantscope.graph.expand`: BitShift, Cast,
Gather, ...). Every input of the expansion is constant, so ONNX Runtime folds it once when
a session is created: the *file* shrinks to about ``b/32`` of the float weight bytes plus
the codebooks, while memory and speed at run time stay those of the float model.

* ``cluster``: a seeded k-means codebook of ``2**bits`` centroids per tensor (or channel);
* ``ternary``: {-α, 0, +α} per output channel (TWN), 2-bit codes;
* ``binary``: ±α per output channel (XNOR-Net), 1-bit codes.

Biases stay float; a weight shared by several nodes is coded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from quantscope.calibrate import TensorStats
from quantscope.config import Binary, Cluster, MethodConfig, Ternary
from quantscope.graph.build import NameAllocator
from quantscope.graph.expand import expand_coded_weight
from quantscope.graph.queries import const_array, nodes_by_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._weights import (
    WeightSite,
    decide_site,
    finite_groups,
    release,
    weight_sites,
)
from quantscope.methods.base import Method, Subgraphs, nothing_found, select
from quantscope.numerics.kmeans import cluster_weights
from quantscope.numerics.lowbit import CodedTensor, binarize, coded_error, ternarize
from quantscope.numerics.packing import packed_size
from quantscope.plan import QuantPlan, WeightQuant

logger = logging.getLogger(__name__)

STORAGE = (
    "codes packed little-endian: code i holds bits [i*b, (i+1)*b) of one bit stream, LSB first; "
    "stream bit j is bit j%8 of byte j//8; ceil(n*b/8) uint8 bytes per weight, channel-major "
    "when the codebook is per channel; float32 codebook [K] or [channels, K]"
)
EXPANSION_NOTE = (
    "weights are stored as packed codes + codebook and expanded by constant ONNX ops "
    "(BitShift/Cast/Gather); ONNX Runtime folds them into float32 weights once, when the session "
    "is created, so only the file shrinks: run-time memory and speed are those of the float model"
)
NO_RETRAIN_WARNING = (
    "{method} weights without retraining collapse the accuracy of most networks (TWN and "
    "XNOR-Net train the network with these weights); expect results near chance unless you "
    "measure otherwise on your data"
)


@dataclass(frozen=True)
class _Coded:
    """One coded weight: the sites that read it, its codes and how well they reconstruct it."""

    sites: tuple[WeightSite, ...]
    axis: int | None
    coded: CodedTensor
    error: dict[str, float | None]

    @property
    def name(self) -> str:
        return self.sites[0].value.name or self.sites[0].label

    @property
    def float_bytes(self) -> int:
        return 4 * int(self.coded.codes.size)

    @property
    def stored_bytes(self) -> int:
        return packed_size(int(self.coded.codes.size), self.coded.bits) + self.coded.stored_codebook_bytes


Payload = dict[tuple[str, int | None], CodedTensor]
"""The coded weights of a plan, by (weight tensor name, codebook axis)."""


class _CodebookMethod(Method):
    """The shared planner and writer; subclasses say how one weight is coded."""

    def _axis(self, site_axis: int, config: MethodConfig) -> int | None:
        return site_axis

    def _code(self, w: np.ndarray, axis: int | None, config: MethodConfig) -> CodedTensor:
        raise NotImplementedError

    def _describe(self, coded: CodedTensor, config: MethodConfig) -> str:
        raise NotImplementedError

    def _warnings(self, config: MethodConfig) -> list[str]:
        return []

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, Cluster | Ternary | Binary)
        sites, decisions = weight_sites(
            select(model, config), config.op_types, min_size=config.min_size, recurrent="native"
        )
        Subgraphs.of(model).mark(decisions)
        groups = finite_groups(sites, decisions, lambda site: self._axis(site.out_axis, config))
        if not groups:
            raise nothing_found(config.method, decisions.values(), "no weight to code")
        coded_weights: list[_Coded] = []
        for (_, axis), group in groups.items():
            w = group[0].array
            coded = self._code(w, axis, config)
            coded_weights.append(_Coded(tuple(group), axis, coded, coded_error(w, coded)))
            release(group[0].value)
        weight_plans: list[WeightQuant] = []
        details: list[dict[str, object]] = []
        for item in coded_weights:
            what = self._describe(item.coded, config)
            sqnr = item.error["sqnr_db"]
            quality = f"rel. error {item.error['rel_error']:.4f}, " + (
                f"SQNR {sqnr:.1f} dB" if sqnr is not None else "exact"
            )
            for i, site in enumerate(item.sites):
                shared = f"; weight {item.name!r} is shared with {item.sites[0].label} and coded once" if i else ""
                decide_site(decisions, site, f"{what}; packed codes expanded by constant ops at load; {quality}{shared}")
                weight_plans.append(
                    WeightQuant(
                        tensor=item.name, node=site.label, dtype="uint8", axis=item.axis, bits=item.coded.bits,
                        channels=int(item.coded.codebook.shape[0]) if item.axis is not None else 1,
                        input_index=site.index,
                    )
                )
            details.append(_detail(item))
        float_total = sum(item.float_bytes for item in coded_weights)
        coded_total = sum(item.stored_bytes for item in coded_weights)
        heavy = [item.name for item in coded_weights if item.stored_bytes >= item.float_bytes]
        warnings = self._warnings(config)
        if heavy:
            warnings.append(
                f"the codebooks of {len(heavy)} weight(s) ({', '.join(heavy[:5])}) are as large as "
                "the float weight itself; per-channel codebooks pay off only for long channels"
            )
        worst = max(float(item.error["rel_error"] or 0.0) for item in coded_weights)
        logger.info(
            "%s: %d weight(s) coded, %d -> %d bytes, worst rel. error %.4f",
            config.method, len(details), float_total, coded_total, worst,
        )
        payload: Payload = {(item.name, item.axis): item.coded for item in coded_weights}
        return QuantPlan(
            method=config.method,
            decisions=decisions.ordered(),
            weights=tuple(weight_plans),
            notes=(*model.notes, EXPANSION_NOTE),
            warnings=tuple(warnings),
            extra={
                "storage": STORAGE,
                "weights": details,
                "weight_bytes": {
                    "float": float_total,
                    "coded": coded_total,
                    "ratio": coded_total / float_total if float_total else 1.0,
                },
            },
            payload=payload,
        )

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Payload:
        """Code the plan's weights again (a plan read from a sidecar carries no codes)."""
        nodes = nodes_by_label(model.ir.graph)
        payload: Payload = {}
        for wq in plan.weights:
            key = (wq.tensor, wq.axis)
            if key not in payload:
                w = const_array(nodes[wq.node].inputs[wq.input_index])
                assert w is not None
                payload[key] = self._code(w, wq.axis, config)
        return payload

    def write(self, clone: ir.Model, config: MethodConfig, plan: QuantPlan, payload: Payload) -> None:
        graph = clone.graph
        names = NameAllocator(graph)
        nodes = nodes_by_label(graph)
        written: dict[tuple[str, int | None, int], ir.Value] = {}  # one expansion per weight and graph
        for wq in plan.weights:
            node = nodes[wq.node]
            where = node.graph
            assert where is not None
            key = (wq.tensor, wq.axis)
            if (*key, id(where)) not in written:
                new_nodes, weight, _ = expand_coded_weight(graph, names, payload[key], wq.tensor or "weight")
                where.insert_before(node, new_nodes)
                written[(*key, id(where))] = weight
            node.replace_input_with(wq.input_index, written[(*key, id(where))])


def _detail(item: _Coded) -> dict[str, object]:
    n = int(item.coded.codes.size)
    sqnr = item.error["sqnr_db"]
    return {
        "tensor": item.name,
        "nodes": [s.label for s in item.sites],
        "shape": [int(d) for d in item.coded.shape],
        "bits": item.coded.bits,
        "codebook": "per-tensor" if item.axis is None else f"per-channel (axis {item.axis})",
        "entries": int(item.coded.codebook.shape[-1]),
        "rel_error": float(item.error["rel_error"] or 0.0),
        "sqnr_db": None if sqnr is None else float(sqnr),
        "float_bytes": 4 * n,
        "packed_bytes": packed_size(n, item.coded.bits),
        "codebook_bytes": item.coded.stored_codebook_bytes,
    }


@register(Cluster)
class ClusterMethod(_CodebookMethod):
    """Seeded k-means codebooks of ``2**bits`` centroids per tensor or per output channel."""

    def _axis(self, site_axis: int, config: MethodConfig) -> int | None:
        assert isinstance(config, Cluster)
        return site_axis if config.per_channel else None

    def _code(self, w: np.ndarray, axis: int | None, config: MethodConfig) -> CodedTensor:
        assert isinstance(config, Cluster)
        return cluster_weights(
            w, config.bits, axis=axis, iterations=config.iterations, seed=config.seed
        )

    def _describe(self, coded: CodedTensor, config: MethodConfig) -> str:
        scope = "per tensor" if coded.axis is None else f"per output channel (axis {coded.axis})"
        return f"{coded.bits}-bit k-means codebook, {coded.codebook.shape[-1]} centroids {scope}"

    def _warnings(self, config: MethodConfig) -> list[str]:
        assert isinstance(config, Cluster)
        if config.bits <= 3:
            return [
                f"{config.bits}-bit clustering without fine-tuning usually costs accuracy; "
                "measure it on your data"
            ]
        return []


@register(Ternary)
class TernaryMethod(_CodebookMethod):
    """Ternary weights {-α, 0, +α} per output channel, 2-bit codes."""

    def _code(self, w: np.ndarray, axis: int | None, config: MethodConfig) -> CodedTensor:
        assert isinstance(config, Ternary) and axis is not None
        return ternarize(w, axis, float(config.threshold))

    def _describe(self, coded: CodedTensor, config: MethodConfig) -> str:
        assert isinstance(config, Ternary)
        zeros = float(np.mean(coded.codes == 1))
        return (
            f"ternary {{-α, 0, +α}} per output channel (Δ = {config.threshold:g}·mean|w|, "
            f"{zeros:.0%} zeros), 2-bit codes"
        )

    def _warnings(self, config: MethodConfig) -> list[str]:
        return [NO_RETRAIN_WARNING.format(method="Ternary")]


@register(Binary)
class BinaryMethod(_CodebookMethod):
    """Binary weights ±α per output channel (α = mean|w|), 1-bit codes."""

    def _code(self, w: np.ndarray, axis: int | None, config: MethodConfig) -> CodedTensor:
        assert axis is not None
        return binarize(w, axis)

    def _describe(self, coded: CodedTensor, config: MethodConfig) -> str:
        return "binary ±α per output channel (α = mean|w|), 1-bit codes"

    def _warnings(self, config: MethodConfig) -> list[str]:
        return [NO_RETRAIN_WARNING.format(method="Binary")]
