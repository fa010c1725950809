"""The metric registry: every quality number by name, how to compute it, and which way is better.

Names follow :mod:`quantscope.analysis.results`. A built-in metric is computed on one model
output (``Metric.output``, the index chosen by :mod:`quantscope.analysis.outputs`; for a
classifier, its scores or its class indices) against the labels (task
metrics) or against the float model's first output (fidelity): ``accuracy``, ``top5``,
``agreement`` (top-1), ``kl`` (of the softmax of the scores), ``cosine`` (mean over samples of
the per-sample cosine similarity), ``cosine_min``, ``sqnr_db``, ``max_abs`` and ``mean_abs``.
``agreement`` and ``accuracy`` need class scores (last axis longer than 1) or class indices;
``top5`` and ``kl`` need scores. A user metric is ``fn(outputs, labels) -> float``.

Every analysis (compare, sensitivity, robustness, the TFLite backend) resolves its metric here
with :func:`resolve_metric` and scores with :meth:`Metric.score` or :func:`quality`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from quantscope.analysis import stats
from quantscope.errors import ConfigError, DataError
from quantscope.numerics import metrics

logger = logging.getLogger(__name__)

MetricFn = Callable[[list[np.ndarray], np.ndarray | None], float]
"""A user metric: ``fn(outputs, labels) -> float`` with outputs as the model returns them."""

Compute = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], "float | None"]
"""A built-in metric: ``compute(reference, output, labels)`` on the measured output; None: does not apply."""


@dataclass(frozen=True)
class MetricSpec:
    """One entry of the registry."""

    name: str
    compute: Compute
    higher_is_better: bool = True
    needs_labels: bool = False


METRICS: dict[str, MetricSpec] = {}
"""The registry, in the order :func:`quality` reports the metrics."""


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a built-in metric (its name must be new)."""
    if spec.name in METRICS:
        raise ConfigError(f"a metric named {spec.name!r} is already registered")
    METRICS[spec.name] = spec
    return spec


@dataclass(frozen=True)
class Metric:
    """The primary quality metric of an analysis: a registry name, or a user function."""

    name: str
    higher_is_better: bool = True
    fn: MetricFn | None = None  # None: the built-in metric of this name
    output: int = 0  # index of the model output a built-in metric is computed on

    def score(
        self, reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], labels: np.ndarray | None
    ) -> float:
        """This metric on ``outputs`` (against ``reference``, the float model's outputs, and ``labels``)."""
        if self.fn is not None:
            return _custom(self, outputs, labels)
        i = self.output
        value = METRICS[self.name].compute(np.asarray(reference[i]), np.asarray(outputs[i]), labels)
        if value is None:
            raise DataError(f"metric {self.name!r} cannot be computed on these outputs; choose another metric")
        return value


def resolve_metric(
    metric: str | MetricFn | Metric, *, has_labels: bool, name: str | None = None, higher_is_better: bool = True,
    output: int | None = None,
) -> Metric:
    """The primary metric: ``"auto"`` is accuracy with labels, top-1 agreement without.

    ``output`` is the index of the model output built-in metrics are computed on (None: keep a
    given :class:`Metric`'s, else 0).
    """
    if isinstance(metric, Metric):
        return metric if output is None else dataclasses.replace(metric, output=output)
    resolved = _resolve(metric, has_labels=has_labels, name=name, higher_is_better=higher_is_better)
    return resolved if output is None else dataclasses.replace(resolved, output=output)


def _resolve(metric: str | MetricFn, *, has_labels: bool, name: str | None, higher_is_better: bool) -> Metric:
    if callable(metric):
        label = name or getattr(metric, "__name__", None) or "custom"
        if label == "<lambda>":
            label = "custom"
        if label in METRICS:
            raise ConfigError(f"a custom metric cannot be named {label!r} (a built-in metric); pass name=...")
        return Metric(label, higher_is_better, metric)
    if not isinstance(metric, str):
        raise ConfigError(f"metric must be a name or a function(outputs, labels) -> float, not {type(metric).__name__}")
    if metric == "auto":
        metric = "accuracy" if has_labels else "agreement"
    if metric == "top1":
        metric = "accuracy"
    spec = METRICS.get(metric)
    if spec is None:
        raise ConfigError(f"unknown metric {metric!r}; choose one of: auto, {', '.join(METRICS)}, or pass a function")
    if spec.needs_labels and not has_labels:
        raise DataError(
            f"metric {metric!r} needs labels, but the evaluation data has none; store them under "
            "'labels' in the .npz, or use metric='agreement' (--metric agreement: fidelity against the float model)"
        )
    return Metric(metric, spec.higher_is_better)


def quality(
    reference: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    labels: np.ndarray | None,
    metric: Metric | None = None,
    *,
    output: int | None = None,
) -> dict[str, float]:
    """Every registered metric that applies to output ``output`` (default: ``metric.output``, else 0),
    and the custom ``metric``, if any."""
    if len(reference) != len(outputs):
        raise DataError(f"the models return different numbers of outputs: {len(reference)} vs {len(outputs)}")
    i = output if output is not None else (metric.output if metric is not None else 0)
    ref, test = np.asarray(reference[i]), np.asarray(outputs[i])
    if ref.shape != test.shape:
        raise DataError(f"the measured outputs differ in shape: {ref.shape} vs {test.shape}")
    out: dict[str, float] = {}
    for spec in METRICS.values():
        value = spec.compute(ref, test, labels)
        if value is not None:
            out[spec.name] = value
    if metric is not None and metric.fn is not None:
        out[metric.name] = _custom(metric, outputs, labels)
    return out


def quality_interval(
    reference: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    labels: np.ndarray | None,
    metric: Metric,
    values: dict[str, float],
    *,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % intervals of the primary metric (and of ``agreement``) over the evaluation samples.

    A fraction of samples (accuracy, top5, agreement) gets a Wilson interval from the sample
    count; any other metric a bootstrap over samples. Metrics with no interval are left out.
    """
    i = metric.output
    ref, test = np.asarray(reference[i]), np.asarray(outputs[i])
    n = len(test) if test.ndim else 0
    out: dict[str, list[float]] = {}
    for name in dict.fromkeys((metric.name, "agreement")):
        if name not in values or n == 0:
            continue
        if name in stats.PROPORTIONS:
            out[name] = list(stats.wilson(values[name] * n, n))
            continue
        statistic = _statistic(name, metric, ref, test, outputs, labels)
        try:
            interval = stats.bootstrap(statistic, n, resamples=100 if metric.fn is not None else stats.BOOTSTRAP, seed=seed)
        except Exception as exc:  # a user's function that cannot take a subset
            logger.info("no interval for %s: %s: %s", name, type(exc).__name__, exc)
            interval = None
        if interval is not None:
            out[name] = list(interval)
    return out


def _statistic(
    name: str, metric: Metric, ref: np.ndarray, test: np.ndarray, outputs: Sequence[np.ndarray],
    labels: np.ndarray | None,
) -> Callable[[np.ndarray], float | None]:
    """Metric ``name`` on a subset of samples (given as indices), for the bootstrap."""
    lab = None if labels is None else np.asarray(labels)
    if metric.fn is not None and name == metric.name:
        fn = metric.fn
        return lambda idx: fn([np.asarray(o)[idx] for o in outputs], None if lab is None else lab[idx])
    compute = METRICS[name].compute
    return lambda idx: compute(ref[idx], test[idx], None if lab is None else lab[idx])


def _custom(metric: Metric, outputs: Sequence[np.ndarray], labels: np.ndarray | None) -> float:
    assert metric.fn is not None
    try:
        value = float(metric.fn(list(outputs), labels))
    except Exception as exc:
        raise ConfigError(f"the metric function {metric.name!r} failed: {type(exc).__name__}: {exc}") from exc
    if math.isnan(value):
        logger.warning("the metric function %r returned NaN", metric.name)
    return value


# --- the built-in metrics ---------------------------------------------------------------------


def classes(y: np.ndarray) -> int:
    """Length of the class axis of scores (0: not scores)."""
    return y.shape[-1] if y.ndim >= 2 else 0


def predicted_classes(y: np.ndarray) -> np.ndarray | None:
    """Class indices from a first output: argmax of scores, or integer labels as they are."""
    if y.dtype.kind in "iu" and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        return y.reshape(len(y))
    if classes(y) > 1:
        return np.argmax(y, axis=-1)
    return None


def _scores_and_labels(test: np.ndarray, labels: np.ndarray | None) -> bool:
    if labels is None or classes(test) <= 1:
        return False
    labels = np.asarray(labels)
    fits = (
        labels.dtype.kind in "iub"
        and labels.shape == test.shape[:-1]
        and (labels.size == 0 or (labels.min() >= 0 and labels.max() < test.shape[-1]))
    )
    if not fits:
        logger.info("labels of shape %s (%s) are not class indices for scores of shape %s; no accuracy",
                    labels.shape, labels.dtype, test.shape)
    return bool(fits)


def _accuracy(ref: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    if classes(test) > 1:
        return metrics.accuracy(test, labels) if _scores_and_labels(test, labels) else None
    pred = predicted_classes(test)
    labels = np.asarray(labels)
    if pred is None or pred.shape != labels.reshape(-1).shape or not len(pred):
        return None
    return float(np.mean(pred == labels.reshape(-1)))


def _top5(ref: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> float | None:
    if classes(ref) < 5 or not _scores_and_labels(test, labels):
        return None
    assert labels is not None
    return metrics.topk_accuracy(test, labels, 5)


def _agreement(ref: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> float | None:
    if _floats(ref, test) and classes(ref) > 1:
        return metrics.top1_agreement(ref, test)
    a, b = predicted_classes(ref), predicted_classes(test)
    if a is None or b is None or not len(a):
        return None
    return float(np.mean(a == b))


def _floats(ref: np.ndarray, test: np.ndarray) -> bool:
    return test.dtype.kind == "f" and ref.dtype.kind == "f" and ref.size > 0


def _per_sample_cosine(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    flat_r = ref.reshape(ref.shape[0], -1) if ref.ndim else ref.reshape(1, -1)
    return metrics.cosine_similarity(flat_r, test.reshape(flat_r.shape), axis=-1)


def _fidelity(fn: Callable[[np.ndarray, np.ndarray], float], *, scores: bool = False) -> Compute:
    """A fidelity metric on floating-point first outputs (``scores``: with a class axis only)."""

    def compute(ref: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> float | None:
        if not _floats(ref, test) or (scores and classes(ref) <= 1):
            return None
        return float(fn(ref, test))

    return compute


for _spec in (
    MetricSpec("accuracy", _accuracy, needs_labels=True),
    MetricSpec("top5", _top5, needs_labels=True),
    MetricSpec("agreement", _agreement),
    MetricSpec("kl", _fidelity(metrics.kl_divergence, scores=True), higher_is_better=False),
    MetricSpec("cosine", _fidelity(lambda r, t: float(np.mean(_per_sample_cosine(r, t))))),
    MetricSpec("cosine_min", _fidelity(lambda r, t: float(np.min(_per_sample_cosine(r, t))))),
    MetricSpec("sqnr_db", _fidelity(metrics.sqnr_db)),
    MetricSpec("max_abs", _fidelity(metrics.max_abs_error), higher_is_better=False),
    MetricSpec("mean_abs", _fidelity(metrics.mean_abs_error), higher_is_better=False),
):
    register_metric(_spec)

TASK = tuple(name for name, spec in METRICS.items() if spec.needs_labels)
FIDELITY = tuple(name for name, spec in METRICS.items() if not spec.needs_labels)
LOWER_IS_BETTER = frozenset(name for name, spec in METRICS.items() if not spec.higher_is_better)
BUILTIN = TASK + FIDELITY
