"""Quality numbers of one variant's outputs: task metrics against labels, fidelity against float.

Names follow :mod:`quantscope.analysis.results`. Fidelity is measured on the model's first
output (for a classifier, its scores): ``agreement`` (top-1), ``cosine`` (mean over samples of
the per-sample cosine similarity), ``cosine_min``, ``sqnr_db``, ``max_abs``, ``mean_abs`` and
``kl`` (of the softmax of the scores). ``agreement`` and ``kl`` need a class axis (last axis
longer than 1). ``accuracy`` and ``top5`` need integer labels, one per row of scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConfigError, DataError
from quantscope.numerics import metrics

logger = logging.getLogger(__name__)

MetricFn = Callable[[list[np.ndarray], np.ndarray | None], float]
"""A user metric: ``fn(outputs, labels) -> float`` with outputs as the model returns them."""

FIDELITY = ("agreement", "cosine", "cosine_min", "sqnr_db", "max_abs", "mean_abs", "kl")
TASK = ("accuracy", "top5")
LOWER_IS_BETTER = frozenset({"max_abs", "mean_abs", "kl"})
BUILTIN = TASK + FIDELITY


@dataclass(frozen=True)
class Metric:
    """The primary quality metric of an analysis."""

    name: str
    higher_is_better: bool = True
    fn: MetricFn | None = None  # None: a built-in metric computed by :func:`quality`


def resolve_metric(
    metric: str | MetricFn | Metric, *, has_labels: bool, name: str | None = None, higher_is_better: bool = True
) -> Metric:
    """The primary metric: ``"auto"`` is accuracy with labels, top-1 agreement without."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        label = name or getattr(metric, "__name__", None) or "custom"
        if label == "<lambda>":
            label = "custom"
        if label in BUILTIN:
            raise ConfigError(f"a custom metric cannot be named {label!r} (a built-in metric); pass name=...")
        return Metric(label, higher_is_better, metric)
    if not isinstance(metric, str):
        raise ConfigError(f"metric must be a name or a function(outputs, labels) -> float, not {type(metric).__name__}")
    if metric == "auto":
        metric = "accuracy" if has_labels else "agreement"
    if metric == "top1":
        metric = "accuracy"
    if metric not in BUILTIN:
        raise ConfigError(f"unknown metric {metric!r}; choose one of: auto, {', '.join(BUILTIN)}, or pass a function")
    if metric in TASK and not has_labels:
        raise DataError(
            f"metric {metric!r} needs labels, but the evaluation data has none; store them under "
            "'labels' in the .npz, or use --metric agreement (fidelity against the float model)"
        )
    return Metric(metric, metric not in LOWER_IS_BETTER)


def quality(
    reference: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    labels: np.ndarray | None,
    metric: Metric | None = None,
) -> dict[str, float]:
    """Every quality number that applies to ``outputs`` (and the custom ``metric``, if any)."""
    if len(reference) != len(outputs):
        raise DataError(f"the models return different numbers of outputs: {len(reference)} vs {len(outputs)}")
    out: dict[str, float] = {}
    ref, test = np.asarray(reference[0]), np.asarray(outputs[0])
    if ref.shape != test.shape:
        raise DataError(f"the first outputs differ in shape: {ref.shape} vs {test.shape}")
    classes = ref.shape[-1] if ref.ndim >= 2 else 0
    if labels is not None and classes > 1 and _labels_fit(labels, test):
        out["accuracy"] = metrics.accuracy(test, labels)
        if classes >= 5:
            out["top5"] = metrics.topk_accuracy(test, labels, 5)
    if test.dtype.kind == "f" and ref.dtype.kind == "f" and ref.size:
        if classes > 1:
            out["agreement"] = metrics.top1_agreement(ref, test)
            out["kl"] = metrics.kl_divergence(ref, test)
        flat_r = ref.reshape(ref.shape[0], -1) if ref.ndim else ref.reshape(1, -1)
        flat_t = test.reshape(flat_r.shape)
        cos = metrics.cosine_similarity(flat_r, flat_t, axis=-1)
        out["cosine"] = float(np.mean(cos))
        out["cosine_min"] = float(np.min(cos))
        out["sqnr_db"] = metrics.sqnr_db(ref, test)
        out["max_abs"] = metrics.max_abs_error(ref, test)
        out["mean_abs"] = metrics.mean_abs_error(ref, test)
    if metric is not None and metric.fn is not None:
        try:
            value = float(metric.fn(list(outputs), labels))
        except Exception as exc:
            raise ConfigError(f"the metric function {metric.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if math.isnan(value):
            logger.warning("the metric function %r returned NaN", metric.name)
        out[metric.name] = value
    return out


def _labels_fit(labels: np.ndarray, scores: np.ndarray) -> bool:
    labels = np.asarray(labels)
    fits = (
        labels.dtype.kind in "iub"
        and labels.shape == scores.shape[:-1]
        and (labels.size == 0 or (labels.min() >= 0 and labels.max() < scores.shape[-1]))
    )
    if not fits:
        logger.info("labels of shape %s (%s) are not class indices for scores of shape %s; no accuracy",
                    labels.shape, labels.dtype, scores.shape)
    return bool(fits)
