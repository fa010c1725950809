"""The calibration statistics the algorithms read beyond min/max and histograms.

A :class:`~quantscope.config.calibration.StatisticsRequest` may name, per tensor, extra kinds of
statistic (:data:`~quantscope.config.calibration.STATISTIC_KINDS`): per-feature ``mean``,
``absmax``, ``min``, ``max`` and ``sumsq`` (``Σ x²``, the diagonal of ``XᵀX``) over the last axis, the summed
second moments ``gram = Σ xᵀx`` over rows (GPTQ's and AWQ's layer error), and ``channel_mean`` over axis 1
(a Conv's input channels).
:func:`quantscope.calibrate.collect` gathers them in the same pass as the ranges (one run of
the model per batch); :func:`observe` gathers them alone, over the same seeded subset and
batches, where ranges came from elsewhere (calibration shards on an executor).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from quantscope.calibrate import TensorStats
from quantscope.config.calibration import Calibration, StatisticsRequest
from quantscope.data import Dataset
from quantscope.io import Model
from quantscope.runtime import make_session, run, with_outputs

logger = logging.getLogger(__name__)

MAX_GRAM_FEATURES = 8192
"""Above this many features ``XᵀX`` (features² float64) is not kept; GPTQ, AWQ and SmoothQuant
then leave that layer as round-to-nearest would."""


@dataclass
class FeatureStats:
    """Running per-feature statistics of one tensor."""

    kinds: tuple[str, ...]
    rows: int = 0
    ndim: int = 0  # the largest rank seen
    sums: np.ndarray | None = None
    absmax: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    gram: np.ndarray | None = None
    sumsq: np.ndarray | None = None
    channel_sums: np.ndarray | None = None
    channel_count: int = 0

    def update(self, x: np.ndarray) -> None:
        # the activation as it came (float32): no float64 copy of it; sums accumulate in float64
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        if a.ndim == 0:
            return
        flat = a.reshape(-1, a.shape[-1])
        self.rows += flat.shape[0]
        self.ndim = max(self.ndim, a.ndim)
        if "mean" in self.kinds:
            self.sums = _add(self.sums, flat.sum(axis=0, dtype=np.float64))
        if flat.size and {"absmax", "min", "max"} & set(self.kinds):
            self._add_range(flat.min(axis=0), flat.max(axis=0))
        if "sumsq" in self.kinds:
            self.sumsq = _add(self.sumsq, np.einsum("ij,ij->j", flat, flat, dtype=np.float64))
        if "gram" in self.kinds and flat.shape[1] <= MAX_GRAM_FEATURES:
            rows32 = np.ascontiguousarray(flat, dtype=np.float32)  # float32 products (twice as fast), float64 running sum
            product = rows32.T @ rows32
            if self.gram is None:
                self.gram = product.astype(np.float64)
            else:
                self.gram += product  # in place: no float64 temporary of the matrix's size
        if "channel_mean" in self.kinds and a.ndim >= 2:
            per_channel = np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])
            self.channel_sums = _add(self.channel_sums, per_channel.sum(axis=0, dtype=np.float64))
            self.channel_count += per_channel.shape[0]

    def update_reduced(self, size: int, ndim: int, lo: np.ndarray | None = None, hi: np.ndarray | None = None,
                       sums: np.ndarray | None = None, sumsq: np.ndarray | None = None) -> None:
        """What :meth:`update` gathers, from a tensor already reduced per feature (over every axis but
        the last; :mod:`quantscope.feature_reduce`): ``size`` elements of rank ``ndim``."""
        features = next((len(v) for v in (lo, hi, sums, sumsq) if v is not None), 0)
        if not size or not features:
            return
        self.rows += size // features
        self.ndim = max(self.ndim, ndim)
        if sums is not None and "mean" in self.kinds:
            self.sums = _add(self.sums, np.asarray(sums, dtype=np.float64))
        if lo is not None and hi is not None:
            self._add_range(lo, hi)
        if sumsq is not None and "sumsq" in self.kinds:
            self.sumsq = _add(self.sumsq, np.asarray(sumsq, dtype=np.float64))

    def _add_range(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo64, hi64 = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)  # exact for any float type
        self.min = lo64 if self.min is None else np.minimum(self.min, lo64)
        self.max = hi64 if self.max is None else np.maximum(self.max, hi64)
        self.absmax = np.maximum(np.abs(self.min), np.abs(self.max))

    @property
    def mean(self) -> np.ndarray | None:
        return None if self.sums is None else self.sums / max(self.rows, 1)

    @property
    def channel_mean(self) -> np.ndarray | None:
        return None if self.channel_sums is None else self.channel_sums / max(self.channel_count, 1)


def divided(stats: FeatureStats, s: np.ndarray) -> FeatureStats:
    """The statistics of ``x / s`` (a per-feature scale) from those of ``x``."""
    inverse = 1.0 / np.asarray(s, dtype=np.float64)
    scaled = FeatureStats(kinds=stats.kinds, rows=stats.rows, ndim=stats.ndim)
    for name in ("sums", "min", "max", "absmax"):
        value = getattr(stats, name)
        setattr(scaled, name, None if value is None else value * inverse)
    scaled.sumsq = None if stats.sumsq is None else stats.sumsq * inverse * inverse
    scaled.gram = None if stats.gram is None else stats.gram * np.outer(inverse, inverse)
    return scaled


def _add(total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
    return part if total is None else total + part


@dataclass(frozen=True)
class ExtraStats:
    """What :func:`observe` gathered, by tensor name."""

    tensors: Mapping[str, FeatureStats] = field(default_factory=dict)
    num_samples: int = 0

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> FeatureStats:
        return self.tensors[name]

    def get(self, name: str | None, default: FeatureStats | None = None) -> FeatureStats | None:
        return self.tensors.get(name, default) if name is not None else default

    def with_scaled(self, records: Iterable[Mapping[str, Any]], tag: str) -> ExtraStats:
        """These statistics plus those of each rewritten input ``x / s`` (named ``<x>_<tag>``)."""
        tensors = dict(self.tensors)
        for record in records:
            if record["input"] in tensors:
                tensors[f"{record['input']}_{tag}"] = divided(tensors[record["input"]], np.asarray(record["scales"]))
        return ExtraStats(tensors=tensors, num_samples=self.num_samples)


def observe(model: Model, dataset: Dataset, request: StatisticsRequest) -> ExtraStats:
    """Run ``model`` over the bound ``dataset`` once and gather ``request.extra``."""
    if not request.extra:
        return ExtraStats()
    calibration = request.calibration
    data = dataset if calibration.num_samples is None else dataset.take(calibration.num_samples, seed=calibration.seed)
    input_names = {spec.name for spec in model.inputs}
    exposed = with_outputs(model, [n for n in request.extra if n not in input_names])
    outputs = {v.name for v in exposed.ir.graph.outputs}
    wanted = [n for n in request.extra if n in outputs and n not in input_names]
    stats = {n: FeatureStats(kinds) for n, kinds in request.extra.items() if n in wanted or n in input_names}
    session = make_session(exposed, optimization="basic", lean=True)  # one pass: lower peak memory
    done = 0
    for batch in data.batches(calibration.batch_size, require_finite=True):
        for name in input_names & stats.keys():
            stats[name].update(batch.inputs[name])
        for name, array in zip(wanted, run(session, batch.inputs, wanted) if wanted else [], strict=True):
            stats[name].update(array)
        done += batch.size
    logger.info("gathered %s on %d tensor(s) over %d samples", "/".join(sorted({k for s in stats.values() for k in s.kinds})),
                len(stats), done)
    return ExtraStats(tensors=stats, num_samples=done)


@dataclass(frozen=True)
class StatsWithExtra(TensorStats):
    """:class:`~quantscope.calibrate.TensorStats` carrying the extra statistics too."""

    extra: ExtraStats = field(default_factory=ExtraStats)


def with_extra(stats: TensorStats | None, extra: ExtraStats) -> TensorStats:
    """``stats`` with ``extra`` attached (methods read it as ``stats.extra``)."""
    base = stats or TensorStats(observers={}, num_samples=extra.num_samples)
    return StatsWithExtra(observers=base.observers, num_samples=base.num_samples, skipped=base.skipped,
                          calibration=base.calibration, input_shapes=base.input_shapes, transfers=base.transfers,
                          extra=extra)


def extra_of(stats: TensorStats | None) -> ExtraStats | None:
    """The extra statistics ``stats`` carries, if any."""
    return stats.extra if isinstance(stats, StatsWithExtra) else None


def input_request(nodes: Iterable[ir.Node], kinds: tuple[str, ...], calibration: Calibration) -> StatisticsRequest:
    """A request for ``kinds`` on the first (activation) input of every node in ``nodes``."""
    names = [n.inputs[0].name for n in nodes if n.inputs and n.inputs[0] is not None and n.inputs[0].name]
    return StatisticsRequest(tuple(names), calibration, extra={name: kinds for name in names})


def summed_gram(extra: ExtraStats, nodes: Iterable[ir.Node]) -> tuple[np.ndarray, int] | None:
    """The summed ``XᵀX`` and row count over the first inputs of ``nodes`` (None if any is missing)."""
    total: np.ndarray | None = None
    rows = 0
    for node in nodes:
        name = node.inputs[0].name if node.inputs and node.inputs[0] is not None else None
        if name not in extra or extra[name].gram is None:
            return None
        total = _add(total, extra[name].gram)
        rows += extra[name].rows
    return (total, rows) if total is not None else None


def layer_error(delta: np.ndarray, gram: np.ndarray) -> float:
    """``‖X Δ‖²`` summed over the calibration rows, from their second moments ``XᵀX`` (``Δ`` is ``[K, N]``)."""
    d = np.asarray(delta, dtype=np.float64)
    return float(np.sum((np.asarray(gram, dtype=np.float64) @ d) * d))


def merged_kinds(*requests: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Several algorithms' extra statistics as one request (kinds united per tensor)."""
    out: dict[str, tuple[str, ...]] = {}
    for request in requests:
        for name, kinds in request.items():
            out[name] = tuple(dict.fromkeys((*out.get(name, ()), *kinds)))
    return out
