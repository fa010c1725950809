"""One streaming pass over calibration data, feeding an observer per tensor.

Only running statistics are kept (exact min/max and fixed-size histograms), so memory does
not grow with the number of samples; every calibrator (min-max, percentile, entropy, MSE)
reads its range from the same statistics afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quantscope.data import Dataset
from quantscope.errors import EmptyDatasetError, NonFiniteDataError
from quantscope.io import Model
from quantscope.numerics.observers import TensorObserver, compute_range
from quantscope.runtime import make_session, run, with_outputs

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
"""Called as ``progress(samples_done, samples_total_or_None)`` after each batch."""


@dataclass(frozen=True)
class TensorStats:
    """Running statistics per tensor name, from one pass over ``num_samples`` samples."""

    observers: Mapping[str, TensorObserver]
    num_samples: int
    skipped: Mapping[str, str] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.observers

    def range(self, name: str, method: str, **params: float) -> tuple[float, float]:
        return compute_range(method, self.observers[name], **params)

    def absmax(self, name: str) -> float:
        obs = self.observers[name]
        return float(max(abs(obs.min), abs(obs.max)))


def collect(
    model: Model,
    dataset: Dataset,
    tensors: Iterable[str],
    *,
    batch_size: int = 16,
    num_samples: int | None = None,
    seed: int = 0,
    bins: int = 2048,
    histograms: bool = True,
    progress: Progress | None = None,
) -> TensorStats:
    """Run ``model`` over ``dataset`` once and observe the named float tensors.

    Graph inputs are observed from the feeds; intermediate tensors are exposed as extra
    outputs of a copy of the model. Raises :class:`NonFiniteDataError` for NaN/inf in the
    data and :class:`EmptyDatasetError` when there is nothing to calibrate on. With
    ``histograms=False`` only exact min/max are kept (enough for min-max calibration).
    """
    names = list(dict.fromkeys(tensors))
    data = dataset.bind(model.inputs)
    if num_samples is not None:
        data = data.take(num_samples, seed=seed)
    input_names = {spec.name for spec in model.inputs}
    exposed = with_outputs(model, [n for n in names if n not in input_names])
    output_names = [v.name for v in exposed.ir.graph.outputs]
    wanted = [n for n in output_names if n in names]
    skipped = {n: "no element type known; not observable" for n in names if n not in input_names and n not in wanted}
    session = make_session(exposed, optimization="basic")
    batch_size = _batch_within_budget(session, data, wanted, batch_size)
    observers: dict[str, TensorObserver] = {n: TensorObserver(bins=bins, histogram=histograms) for n in names if n not in skipped}
    total = len(data) if _has_len(data) else None
    done = 0
    for batch in data.batches(batch_size, require_finite=True):
        feeds = batch.inputs
        for name in input_names & observers.keys():
            observers[name].update(feeds[name])
        results = run(session, feeds, wanted) if wanted else []  # [] would mean "all outputs"
        for name, array in zip(wanted, results, strict=True):
            observers[name].update(array)
        done += _batch_len(feeds)
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise EmptyDatasetError("the calibration dataset is empty; give at least one sample")
    for name, obs in observers.items():
        if obs.nonfinite:
            raise NonFiniteDataError(
                f"tensor {name!r} produced {obs.nonfinite} NaN/inf value(s) during calibration although "
                "the inputs were finite; the float model itself overflows on this data"
            )
    logger.info("calibrated %d tensors on %d samples", len(observers), done)
    return TensorStats(observers=observers, num_samples=done, skipped=skipped)


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


def _batch_len(feeds: Mapping[str, object]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0])  # type: ignore[attr-defined]
