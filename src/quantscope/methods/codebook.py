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
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import Binary, Cluster, MethodConfig, Ternary
from quantscope.errors import UnsupportedModelError
from quantscope.graph.expand import expand_coded_weight
from quantscope.graph.prepare import prepare
from quantscope.graph.qdq import NameAllocator
from quantscope.graph.queries import const_array, node_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods._weights import WeightSite, ordered_decisions, weight_sites
from quantscope.numerics.kmeans import cluster_weights
from quantscope.numerics.lowbit import CodedTensor, binarize, reconstruction_error, ternarize
from quantscope.numerics.packing import packed_size
from quantscope.plan import NodeDecision, QuantPlan, WeightQuant

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


class _CodebookMethod:
    """The shared planner and writer; subclasses say how one weight is coded."""

    def _axis(self, site_axis: int, config: MethodConfig) -> int | None:
        return site_axis

    def _code(self, w: np.ndarray, axis: int | None, config: MethodConfig) -> CodedTensor:
        raise NotImplementedError

    def _describe(self, coded: CodedTensor, config: MethodConfig) -> str:
        raise NotImplementedError

    def _warnings(self, config: MethodConfig) -> list[str]:
        return []

    # -- Method protocol ---------------------------------------------------------------
    def prepare(self, model: Model, config: MethodConfig) -> Model:
        prepared, _ = prepare(model)
        return prepared

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]:
        return []  # data-free: weights only

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, Cluster | Ternary | Binary)
        sites, decisions = weight_sites(model, config, config.op_types, min_size=config.min_size)
        groups: dict[tuple[str, int | None], list[WeightSite]] = {}
        for site in sites:
            if not np.all(np.isfinite(site.array)):
                decisions[site.label] = NodeDecision(
                    node=site.label,
                    op_type=site.node.op_type,
                    action="float",
                    reason="weight holds NaN or infinity; kept float",
                )
                continue
            axis = self._axis(site.out_axis, config)
            groups.setdefault((site.value.name or site.label, axis), []).append(site)
        if not groups:
            reasons = sorted({d.reason for d in decisions.values()})
            raise UnsupportedModelError(
                f"{config.method} found no weight to code in this model: "
                + "; ".join(reasons[:5])
                + ". Nothing was written."
            )
        coded_weights: list[_Coded] = []
        for (_, axis), group in groups.items():
            w = group[0].array
            coded = self._code(w, axis, config)
            error = reconstruction_error(w, coded.decode())
            coded_weights.append(_Coded(tuple(group), axis, coded, error))
        weight_plans: list[WeightQuant] = []
        details: list[dict[str, object]] = []
        float_total = coded_total = 0
        heavy: list[str] = []
        for item in coded_weights:
            what = self._describe(item.coded, config)
            sqnr = item.error["sqnr_db"]
            quality = f"rel. error {item.error['rel_error']:.4f}, " + (
                f"SQNR {sqnr:.1f} dB" if sqnr is not None else "exact"
            )
            first = item.sites[0].label
            for i, site in enumerate(item.sites):
                shared = (
                    f"; weight {item.name!r} is shared with {first} and coded once" if i else ""
                )
                decisions[site.label] = NodeDecision(
                    node=site.label,
                    op_type=site.node.op_type,
                    action="quantized",
                    reason=f"{what}; packed codes expanded by constant ops at load; {quality}{shared}",
                )
                weight_plans.append(
                    WeightQuant(
                        tensor=item.name,
                        node=site.label,
                        dtype="uint8",
                        axis=item.axis,
                        bits=item.coded.bits,
                        channels=int(item.coded.codebook.shape[0]) if item.axis is not None else 1,
                        input_index=site.index,
                    )
                )
            n = int(item.coded.codes.size)
            packed = packed_size(n, item.coded.bits)
            book = item.coded.stored_codebook_bytes
            float_total += 4 * n
            coded_total += packed + book
            if packed + book >= 4 * n:
                heavy.append(item.name)
            details.append(
                {
                    "tensor": item.name,
                    "nodes": [s.label for s in item.sites],
                    "shape": [int(d) for d in item.coded.shape],
                    "bits": item.coded.bits,
                    "codebook": "per-tensor"
                    if item.axis is None
                    else f"per-channel (axis {item.axis})",
                    "entries": int(item.coded.codebook.shape[-1]),
                    "rel_error": float(item.error["rel_error"] or 0.0),
                    "sqnr_db": None if sqnr is None else float(sqnr),
                    "float_bytes": 4 * n,
                    "packed_bytes": packed,
                    "codebook_bytes": book,
                }
            )
        warnings = self._warnings(config)
        if heavy:
            warnings.append(
                f"the codebooks of {len(heavy)} weight(s) ({', '.join(heavy[:5])}) are as large as "
                "the float weight itself; per-channel codebooks pay off only for long channels"
            )
        n_sub = sum(
            1
            for n in ir.traversal.RecursiveGraphIterator(model.ir.graph)
            if n.graph is not model.ir.graph
        )
        if n_sub:
            warnings.append(f"{n_sub} node(s) inside If/Loop/Scan subgraphs were left in float")
        worst = max(float(item.error["rel_error"] or 0.0) for item in coded_weights)
        notes = [*model.notes, EXPANSION_NOTE]
        logger.info(
            "%s: %d weight(s) coded, %d -> %d bytes, worst rel. error %.4f",
            config.method,
            len(details),
            float_total,
            coded_total,
            worst,
        )
        return QuantPlan(
            method=config.method,
            decisions=ordered_decisions(model, decisions),
            weights=tuple(weight_plans),
            notes=tuple(notes),
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
        )

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        clone = model.ir.clone()
        graph = clone.graph
        names = NameAllocator(graph)
        nodes = {node_label(n): n for n in graph}
        written: dict[tuple[str, int | None], ir.Value] = {}
        for wq in plan.weights:
            node = nodes[wq.node]
            value = node.inputs[wq.input_index]
            assert value is not None
            key = (value.name or wq.tensor, wq.axis)
            if key not in written:
                w = const_array(value)
                assert w is not None
                coded = self._code(w, wq.axis, config)
                new_nodes, weight, _ = expand_coded_weight(
                    graph, names, coded, value.name or "weight"
                )
                graph.insert_before(node, new_nodes)
                written[key] = weight
            node.replace_input_with(wq.input_index, written[key])
        common_passes.RemoveUnusedNodesPass()(clone)  # drops the float weights now unused
        graph.sort()
        clone.metadata_props["quantscope.method"] = config.method
        return Model(ir=clone, path=None, fingerprint="", notes=model.notes)


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
