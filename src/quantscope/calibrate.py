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

from quantscope.config.calibration import Calibration, Calibrator, StatisticsRequest
from quantscope.config.calibration import calibrator as as_calibrator
from quantscope.data import Dataset
from quantscope.errors import EmptyDatasetError, NonFiniteDataError, RuntimeFailure
from quantscope.io import Model
from quantscope.numerics.observers import TensorObserver
from quantscope.runtime import exposing, make_session, run

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
"""Called as ``progress(samples_done, samples_total_or_None)`` after each batch."""


@dataclass(frozen=True)
class TensorStats:
    """Running statistics per tensor name, from one pass over ``num_samples`` samples."""

    observers: Mapping[str, TensorObserver]
    num_samples: int
    skipped: Mapping[str, str] = field(default_factory=dict)
    calibration: Calibration | None = None

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
) -> TensorStats:
    """Run ``model`` over ``dataset`` once and observe the tensors ``request`` names.

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
    session, outputs, skipped = _exposed_session(model, [n for n in names if n not in input_names], data)
    wanted = list(outputs)  # graph output names; outputs[o] is the tensor it carries
    carried = set(outputs.values())
    for n in names:
        if n not in input_names and n not in carried:
            skipped.setdefault(n, "not observable (no element type known, or inside an If within a Loop/Scan)")
    batch_size = _batch_within_budget(session, data, wanted, calibration.batch_size)
    observers: dict[str, TensorObserver] = {
        n: TensorObserver(bins=calibration.bins, histogram=calibration.needs_histograms)
        for n in names
        if n not in skipped
    }
    total = len(data) if _has_len(data) else None
    done = 0
    for batch in data.batches(batch_size, require_finite=True):
        feeds = batch.inputs
        for name in input_names & observers.keys():
            observers[name].update(feeds[name])
        results = run(session, feeds, wanted) if wanted else []  # [] would mean "all outputs"
        for name, array in zip(wanted, results, strict=True):
            if array.size or name == outputs[name]:  # empty from a body: its If branch did not run
                observers[outputs[name]].update(array)
        done += batch.size
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise EmptyDatasetError("the calibration dataset is empty; give at least one sample")
    for out, name in outputs.items():
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
    return TensorStats(observers=observers, num_samples=done, skipped=skipped, calibration=calibration)


def _exposed_session(model: Model, targets: list[str], data: Dataset) -> tuple[Any, dict[str, str], dict[str, str]]:
    """A session returning ``targets`` ({output: tensor}), and the tensors it had to leave out (with why).

    Tensors inside If/Loop/Scan bodies come out through their holders; when ONNX Runtime cannot
    return them (e.g. a Loop whose tensor changes shape between iterations), checked on the
    first sample, only the main-graph tensors are observed and the body tensors stay float.
    """
    exposed, outputs = exposing(model, targets)
    session = make_session(exposed, optimization="basic")
    first = next(iter(data.batches(1)), None) if any(o != t for o, t in outputs.items()) else None
    if first is None:
        return session, outputs, {}
    try:
        run(session, first.inputs, list(outputs))
    except RuntimeFailure as exc:
        logger.warning("tensors inside If/Loop/Scan bodies cannot be observed (%s); those nodes stay float", exc)
        reason = f"inside an If/Loop/Scan body whose tensors ONNX Runtime could not return ({exc})"
        left_out = {t: reason for o, t in outputs.items() if o != t}
        exposed, outputs = exposing(model, [t for o, t in outputs.items() if o == t])
        return make_session(exposed, optimization="basic"), outputs, left_out
    return session, outputs, {}


ACTIVATION_BUDGET_BYTES = 256 << 20
"""Calibration exposes every observed tensor of a whole batch at once; above this many bytes
per batch the batch is made smaller (the statistics do not depend on the batch size)."""


def _batch_within_budget(session: Any, data: Dataset, wanted: list[str], batch_size: int) -> int:
    """``batch_size``, lowered so the exposed tensors of one batch fit the activation budget.

    The size per sample is measured by running the first sample alone (shapes of exported
    models are often symbolic, so they cannot be read from the graph).
    """
    if batch_size <= 1 or not wanted:
        return batch_size
    first = next(iter(data.batches(1)), None)
    if first is None:
        return batch_size
    per_sample = sum(int(a.nbytes) for a in run(session, first.inputs, wanted))
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

