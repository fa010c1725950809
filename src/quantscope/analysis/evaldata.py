"""Evaluation data checked once, before any model runs: finite inputs, and labels the metric can use.

Every analysis entry point (analyze, sweep, tune, sensitivity, per-layer error, robustness)
calls :func:`checked_eval_data` on the data it is given and :func:`checked_labels` on the
labels its primary metric scores. A NaN or an infinity in an input is refused with the input,
the sample and the fix (:class:`NonFiniteDataError`); labels that are text, fractions, one-hot
rows or out of the model's class range are refused with what is wrong and how to convert them
(:func:`quantscope.data.labels.check_labels`), instead of a metric that is NaN or "cannot be
computed" after minutes of work.

The finite check reads the data once; a dataset already checked against a model is not read
again when a nested step (``tune`` -> ``sweep`` -> ``analyze``) asks for it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quantscope.analysis.outputs import choose_outputs, output_indices
from quantscope.analysis.quality import METRICS, Metric, MetricFn, resolve_metric
from quantscope.data import Dataset
from quantscope.data.labels import check_labels
from quantscope.errors import DataError, NonFiniteDataError
from quantscope.io import Model

logger = logging.getLogger(__name__)

CHECK_BATCH = 64
"""Samples per batch of the finite check (memory stays that of one batch)."""

_checked: weakref.WeakKeyDictionary[Dataset, weakref.WeakSet[Model]] = weakref.WeakKeyDictionary()

_FIDELITY_HINT = (
    "; without such labels, measure fidelity against the float model instead "
    "(--metric agreement or cosine; metric='agreement')"
)


@dataclass(frozen=True)
class EvalSetup:
    """Evaluation data checked for a model: bound, its checked labels, the primary metric, the outputs."""

    data: Dataset  # bound to the model's inputs
    labels: np.ndarray | None
    metric: Metric
    outputs: list[str]  # the measured output names, primary first
    indices: list[int]  # their indices among the model's outputs


def prepare_eval(
    model: Model,
    data: Dataset,
    metric: str | MetricFn | Metric = "auto",
    *,
    metric_name: str | None = None,
    higher_is_better: bool = True,
    output: str | Sequence[str] | None = None,
) -> EvalSetup:
    """Everything an analysis checks before it runs a model: the data fits and is finite, the
    outputs and metric resolve, and the labels suit the metric (see the module docstring)."""
    bound = checked_eval_data(model, data)
    labels = bound.labels
    measured = choose_outputs(model, output)
    indices = output_indices(model, measured)
    primary = resolve_metric(metric, has_labels=labels is not None, name=metric_name,
                             higher_is_better=higher_is_better, output=indices[0])
    what = f"the labels of the evaluation data ({_describe(data)})"
    return EvalSetup(bound, checked_labels(model, labels, primary, what), primary, measured, indices)


def checked_eval_data(model: Model, data: Dataset, what: str = "the evaluation data") -> Dataset:
    """``data`` bound to ``model``'s inputs, after one pass that refuses any NaN or infinity.

    Raises :class:`NonFiniteDataError` naming ``what`` (with the data's description), the
    input and the sample, and :class:`DataMismatchError` when the data does not fit the model.
    """
    bound = data.bind(model.inputs)
    seen = _checked.get(data)
    if seen is None or model not in seen:
        try:
            for _ in bound.require_finite("evaluation").batches(CHECK_BATCH, feeds=False):
                pass
        except NonFiniteDataError as exc:
            raise NonFiniteDataError(f"{what} ({_describe(data)}): {exc}") from exc
    for checked in (data, bound):  # steps handed either one do not read it again
        _checked.setdefault(checked, weakref.WeakSet()).add(model)
    return bound


def checked_labels(
    model: Model, labels: np.ndarray | None, metric: Metric, what: str = "the labels of the evaluation data"
) -> np.ndarray | None:
    """``labels`` as int64 class indices for the model output ``metric`` scores, or a DataError.

    Only a built-in metric that needs labels (accuracy, top5) checks them, against the
    output's declared shape: its class count (last axis) and the per-sample shape before it.
    Other metrics get ``labels`` unchanged (a user's function takes them as they are).
    """
    if not _needs_labels(metric) or labels is None:
        return labels
    out = model.outputs[metric.output]
    return labels_for_output(labels, out.shape, np.dtype(out.dtype), metric.name, what)


def labels_for_output(
    labels: np.ndarray, shape: Sequence[object] | None, dtype: np.dtype, metric: str, what: str
) -> np.ndarray:
    """``labels`` checked against an output of ``shape`` (declared, or as returned) and ``dtype``.

    Float scores ``(N, ..., C)`` want class indices ``(N, ...)`` in ``0..C-1``; integer class
    indices ``(N,)`` or ``(N, 1)`` want integer labels of one per sample. An output of unknown
    rank checks the labels' type only.
    """
    arr = np.asarray(labels)
    num_classes: int | None = None
    sample: tuple[int | str, ...] | None = None
    if shape is not None and len(shape) >= 2 and dtype.kind == "f":
        last = shape[-1]
        num_classes = last if isinstance(last, int) and last > 1 else None
        sample = _sample_shape(shape[1:-1])
    elif shape is not None and dtype.kind in "iu" and len(shape) <= 2:
        sample = ()
    try:
        return check_labels(arr, num_classes, sample_shape=sample, what=what)
    except DataError as exc:
        raise DataError(f"{str(exc).rstrip('.')}. The metric {metric!r} needs class-index labels{_FIDELITY_HINT}") from exc


def require_labels_fit(
    labels: np.ndarray | None, output: np.ndarray, metric: Metric, variant: str
) -> None:
    """After a model ran: raise the labels' own problem when ``metric`` could not use them on ``output``.

    The declared output shape may leave the class count open (a symbolic last axis); the
    outputs a model returned tell it.
    """
    if labels is None or not _needs_labels(metric):
        return
    labels_for_output(labels, output.shape, output.dtype, metric.name, f"the labels of the evaluation data "
                                                                        f"(for {variant}'s outputs)")


def _needs_labels(metric: Metric) -> bool:
    spec = METRICS.get(metric.name)
    return metric.fn is None and spec is not None and spec.needs_labels


def _sample_shape(dims: Sequence[object]) -> tuple[int | str, ...]:
    """Per-sample label shape from the output's middle dims (an unknown one: named, any size)."""
    return tuple(d if isinstance(d, int) and d >= 0 else (str(d) if d is not None else "?") for d in dims)


def _describe(data: Dataset) -> str:
    text = repr(data)
    return text[len("Dataset("):-1] if text.startswith("Dataset(") else text
