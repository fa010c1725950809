"""One streaming pass over calibration data, feeding an observer per tensor.

A method asks for statistics with a :class:`~quantscope.config.calibration.StatisticsRequest`
(the tensors, and a :class:`~quantscope.config.calibration.Calibration` value saying how).
Only running statistics are kept (exact min/max, and fixed-size histograms when the
calibrator needs them), so memory does not grow with the number of samples; the calibrator
(min-max, percentile, entropy, MSE) reads its range from the same statistics afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantscope.config.calibration import Calibration, Calibrator, StatisticsRequest
from quantscope.config.calibration import calibrator as as_calibrator
from quantscope.data import Dataset
from quantscope.errors import EmptyDatasetError, NonFiniteDataError, RuntimeFailure
from quantscope.feature_reduce import FeatureOutputs, with_feature_reductions
from quantscope.io import Model
from quantscope.numerics.observers import TensorObserver
from quantscope.numerics.ranges import Transfer
from quantscope.runtime import Reduced, exposing, make_session, reducing, run, with_outputs

logger = logging.getLogger(__name__)

_F32_MAX = float(np.finfo(np.float32).max)

Progress = Callable[[int, int | None], None]
"""Called as ``progress(samples_done, samples_total_or_None)`` after each batch."""


@dataclass(frozen=True)
class TensorStats:
    """Running statistics per tensor name, from one pass over ``num_samples`` samples."""

    observers: Mapping[str, TensorObserver]
    num_samples: int
    skipped: Mapping[str, str] = field(default_factory=dict)
    calibration: Calibration | None = None
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # of the first calibration batch
    transfers: Mapping[str, Transfer] = field(default_factory=dict)
    """What each tensor's float consumers make of it, where they are elementwise (for ``auto``:
    :mod:`quantscope.algorithms.consumer_transfer`)."""

    def __contains__(self, name: object) -> bool:
        return name in self.observers

    def range(self, name: str, calibrator: Calibrator | str | None = None, **params: Any) -> tuple[float, float]:
        """The range of tensor ``name`` by ``calibrator`` (default: the one the statistics were taken for).

        A calibrator name with its parameters (``"percentile", percentile=99.9``) is accepted too.
        """
        if calibrator is None:
            if self.calibration is None:
                raise ValueError("no calibrator given and these statistics carry no calibration")
            calibrator = self.calibration.method
        return as_calibrator(calibrator, **params).range(self.observers[name])

    def absmax(self, name: str) -> float:
        obs = self.observers[name]
        return float(max(abs(obs.min), abs(obs.max)))


def collect(
    model: Model,
    dataset: Dataset,
    request: StatisticsRequest,
    *,
    progress: Progress | None = None,
    transfers: bool = True,
) -> TensorStats:
    """Run ``model`` over ``dataset`` once and observe the tensors ``request`` names.

    ``transfers=False`` leaves out auto's consumer transfers (a calibration shard: the merge makes them).

    ``dataset`` must already be bound to the model's inputs (:meth:`Dataset.bind`; the caller
    binds once). ``request.calibration`` says how many samples (a seeded subset), in what
    batches, and whether histograms are kept (only when its calibrator needs them; min-max
    needs exact min/max only). Graph inputs are observed from the feeds; intermediate tensors
    are exposed as extra outputs of a copy of the model. Raises :class:`NonFiniteDataError`
    for NaN/inf in the data and :class:`EmptyDatasetError` when there is nothing to
    calibrate on.
    """
    calibration = request.calibration
    names = list(request.tensors)
    data = dataset
    if calibration.num_samples is not None:
        data = data.take(calibration.num_samples, seed=calibration.seed)
    input_names = {spec.name for spec in model.inputs}
    targets = [n for n in names if n not in input_names]
    extra_names = [n for n in request.extra if n not in input_names]
    observed = _Observed.build(model, targets, data, reduce=not calibration.needs_histograms, extra=extra_names,
                               kinds=request.extra)
    features = _feature_stats(request)
    skipped = dict(observed.skipped)
    carried = set(observed.outputs.values()) | observed.reduced.keys()
    for n in targets:
        if n not in carried:
            skipped.setdefault(n, "not observable (no element type known, or inside an If within a Loop/Scan)")
    batch_size = _batch_within_budget(observed, data, calibration.batch_size)
    observers: dict[str, TensorObserver] = {
        n: TensorObserver(bins=calibration.bins, histogram=calibration.needs_histograms)
        for n in names
        if n not in skipped
    }
    total = len(data) if _has_len(data) else None
    done = 0
    input_shapes: dict[str, tuple[int, ...]] = {}
    for batch in data.batches(batch_size, require_finite=True):
        feeds = batch.inputs
        input_shapes = input_shapes or {name: tuple(np.shape(v)) for name, v in feeds.items()}
        for name in input_names & observers.keys():
            observers[name].update(feeds[name])
        for name in input_names & features.keys():
            features[name].update(feeds[name])
        observed.observe(feeds, observers, features)
        done += batch.size
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise EmptyDatasetError("the calibration dataset is empty; give at least one sample")
    for out, name in observed.outputs.items():
        if out != name and not (observers[name].seen or observers[name].nonfinite):
            del observers[name]
            skipped[name] = "inside an If branch that never ran on the calibration data; not observed"
    for name, obs in observers.items():
        if obs.nonfinite:
            raise NonFiniteDataError(
                f"tensor {name!r} produced {obs.nonfinite} NaN/inf value(s) during calibration although "
                "the inputs were finite; the float model itself overflows on this data"
            )
    logger.info("calibrated %d tensors on %d samples (%s)", len(observers), done, calibration.method)
    stats = TensorStats(observers=observers, num_samples=done, skipped=skipped, calibration=calibration,
                        input_shapes=input_shapes,
                        transfers=consumer_transfers(model, calibration, observers) if transfers else {})
    if not request.extra:
        return stats
    from quantscope.algorithms.activation_stats import ExtraStats, with_extra

    seen = {name: f for name, f in features.items() if f.rows}
    logger.info("gathered %s on %d tensor(s) in the same pass", "/".join(sorted({k for f in seen.values() for k in f.kinds})),
                len(seen))
    return with_extra(stats, ExtraStats(tensors=seen, num_samples=done))


def _feature_stats(request: StatisticsRequest) -> dict[str, Any]:
    """A running :class:`~quantscope.algorithms.activation_stats.FeatureStats` per tensor of ``request.extra``."""
    if not request.extra:
        return {}
    from quantscope.algorithms.activation_stats import FeatureStats

    return {name: FeatureStats(tuple(kinds)) for name, kinds in request.extra.items()}


def consumer_transfers(
    model: Model, calibration: Calibration, observers: Mapping[str, TensorObserver]
) -> dict[str, Transfer]:
    """The consumer transfers ``auto`` calibration judges ranges by (none for other calibrators)."""
    if calibration.method.name != "auto":
        return {}
    from quantscope.algorithms.consumer_transfer import transfers

    return transfers(model, observers, observers)


@dataclass
class _Observed:
    """A session returning the observed tensors: whole (``outputs``: {output: tensor}) or reduced.

    A reduced tensor (``reduced``: {tensor: its min, max, sum and size outputs}) never leaves
    ONNX Runtime; only min-max calibration reduces. A batch whose reduction shows a NaN or a value
    beyond the float32 range (infinities, float64) is run again with those tensors whole, so the
    statistics (counts of non-finite values too) are exactly those of observing every value.
    """

    model: Model
    session: Any
    outputs: dict[str, str]
    reduced: dict[str, Reduced]
    skipped: dict[str, str]
    whole: Any = None  # session exposing the reduced tensors whole, made on the first need
    extra: list[str] = field(default_factory=list)  # tensors returned whole for the algorithms' statistics
    features: dict[str, FeatureOutputs] = field(default_factory=dict)  # ... or reduced per feature in the graph

    @classmethod
    def build(cls, model: Model, targets: list[str], data: Dataset, *, reduce: bool, extra: list[str] | None = None,
              kinds: Mapping[str, tuple[str, ...]] | None = None) -> _Observed:
        """Tensors inside If/Loop/Scan bodies come out through their holders; when ONNX Runtime
        cannot return them (e.g. a Loop whose tensor changes shape between iterations), checked
        on the first sample, only the main-graph tensors are observed and the body tensors stay float.
        """
        exposed, outputs, reduced = reducing(model, targets) if reduce else (*exposing(model, targets), {})
        more = [n for n in dict.fromkeys(extra or ()) if n not in outputs]
        # MatMul/Gemm/Conv inputs: reduced per feature in the graph where their statistics allow, else whole
        exposed, features = with_feature_reductions(exposed, {n: tuple(kinds[n]) for n in more if kinds and n in kinds})
        more = [n for n in more if n not in features]
        if more:  # main-graph tensors: each is its own graph output
            exposed = with_outputs(exposed, more)
        known = {v.name for v in exposed.ir.graph.outputs}
        extra = [n for n in dict.fromkeys(extra or ()) if n in known and n not in features]
        session = make_session(exposed, optimization="basic", lean=True)
        first = next(iter(data.batches(1)), None) if any(o != t for o, t in outputs.items()) else None
        if first is None:
            return cls(model, session, outputs, reduced, {}, extra=extra, features=features)
        try:
            run(session, first.inputs, list(outputs))
        except RuntimeFailure as exc:
            logger.warning("tensors inside If/Loop/Scan bodies cannot be observed (%s); those nodes stay float", exc)
            reason = f"inside an If/Loop/Scan body whose tensors ONNX Runtime could not return ({exc})"
            left_out = {t: reason for o, t in outputs.items() if o != t}
            kept = [t for t in targets if t not in left_out]
            return cls.build(model, kept, data, reduce=reduce, extra=extra, kinds=kinds)._left_out(left_out)
        return cls(model, session, outputs, reduced, {}, extra=extra, features=features)

    def _left_out(self, skipped: dict[str, str]) -> _Observed:
        self.skipped = skipped
        return self

    @property
    def wanted(self) -> list[str]:
        whole = [*self.outputs, *(n for n in self.extra if n not in self.outputs)]
        per_feature = [o for f in self.features.values() for o in (*f.stats.values(), f.size)]
        return [*whole, *(o for outs in self.reduced.values() for o in outs), *per_feature]

    def fetch(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = self.wanted
        return dict(zip(wanted, run(self.session, feeds, wanted), strict=True)) if wanted else {}

    def observe(self, feeds: Mapping[str, np.ndarray], observers: Mapping[str, TensorObserver],
                features: Mapping[str, Any] | None = None) -> None:
        got = self.fetch(feeds)
        for name in self.extra:
            if features is not None and name in features:
                features[name].update(got[name])
        for name, f in self.features.items():
            if features is not None and name in features:
                features[name].update_reduced(
                    int(got[f.size]), f.ndim,
                    **{key: got[f.stats[stat]] for key, stat in (("lo", "min"), ("hi", "max"), ("sums", "sum"),
                                                                 ("sumsq", "sumsq")) if stat in f.stats})
        for name, tensor in self.outputs.items():
            array = got[name]
            if array.size or name == tensor:  # empty from a body: its If branch did not run
                observers[tensor].update(array)
        redo = []
        for tensor, (lo, hi, total, size) in self.reduced.items():
            count = int(got[size])
            if not count:
                continue
            if np.isnan(got[total]) or not (got[lo] >= -_F32_MAX and got[hi] <= _F32_MAX):
                redo.append(tensor)
                continue
            obs = observers[tensor]
            obs.update(np.stack([got[lo], got[hi]]))
            # Needs at merge: TensorObserver.update_range(lo, hi, count); until then the counts
            # of the other count - 2 values are added here.
            obs.count += count - 2
            obs.seen += count - 2
        if redo:
            if self.whole is None:  # rare (the model overflows): then every reduced tensor is ready whole
                self.whole = make_session(exposing(self.model, list(self.reduced))[0], optimization="basic",
                                          lean=True)
            for tensor, array in zip(redo, run(self.whole, feeds, redo), strict=True):
                observers[tensor].update(array)


ACTIVATION_BUDGET_BYTES = 256 << 20
"""Calibration exposes the observed tensors of a whole batch at once (min-max reduces them in
the graph, so then only the largest tensor alive counts); above this many bytes per batch the
batch is made smaller (the statistics do not depend on the batch size)."""


def _batch_within_budget(observed: _Observed, data: Dataset, batch_size: int) -> int:
    """``batch_size``, lowered so the tensors of one batch fit the activation budget.

    The size per sample is measured by running the first sample alone (shapes of exported
    models are often symbolic, so they cannot be read from the graph): the bytes of the tensors
    returned whole, plus the largest reduced tensor (4 bytes an element).
    """
    if batch_size <= 1 or not observed.wanted:
        return batch_size
    first = next(iter(data.batches(1)), None)
    if first is None:
        return batch_size
    got = observed.fetch(first.inputs)
    per_sample = sum(int(got[o].nbytes) for o in dict.fromkeys([*observed.outputs, *observed.extra]))
    per_sample += max((4 * int(got[outs[3]]) for outs in observed.reduced.values()), default=0)
    if per_sample * batch_size <= ACTIVATION_BUDGET_BYTES:
        return batch_size
    smaller = max(1, ACTIVATION_BUDGET_BYTES // max(per_sample, 1))
    logger.info(
        "calibration batch %d -> %d: the observed tensors take %.1f MB per sample",
        batch_size, smaller, per_sample / 1e6,
    )
    return int(smaller)


def _has_len(obj: object) -> bool:
    try:
        return len(obj) is not None  # type: ignore[arg-type]
    except TypeError:
        return False

