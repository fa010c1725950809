"""The robustness study's inputs: the evaluation data in memory, the models, the metric."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from quantscope.analysis.evaldata import checked_eval_data
from quantscope.analysis.quality import Metric, MetricFn, resolve_metric
from quantscope.data import Dataset
from quantscope.errors import ConfigError
from quantscope.io import Model, load
from quantscope.quantization import QuantizedModel

REFERENCE = "float"
"""The name under which the float model appears in every robustness result."""

ModelLike = Model | QuantizedModel | str | os.PathLike[str]
MetricArg = str | MetricFn | Metric


@dataclass(frozen=True)
class EvalArrays:
    """The evaluation data in memory, bound to the model's input names and dtypes."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def dataset(self, inputs: dict[str, np.ndarray] | None = None) -> Dataset:
        return Dataset.from_arrays(self.inputs if inputs is None else inputs, labels=self.labels)


def materialize(data: Dataset, model: Model) -> EvalArrays:
    if not isinstance(data, Dataset):
        raise ConfigError(f"data must be a quantscope Dataset (Dataset.from_npz(...)), not {type(data).__name__}")
    inputs: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    meta: dict[str, list[np.ndarray]] = {}
    for batch in checked_eval_data(model, data).batches(256):
        for k, v in batch.inputs.items():
            inputs.setdefault(k, []).append(np.asarray(v))
        if batch.labels is not None:
            labels.append(np.asarray(batch.labels))
        for k, v in batch.meta.items():
            meta.setdefault(k, []).append(np.asarray(v))
    return EvalArrays(
        {k: np.concatenate(v) for k, v in inputs.items()},
        np.concatenate(labels) if labels else None,
        {k: np.concatenate(v) for k, v in meta.items()},
    )


def as_model(value: ModelLike, what: str) -> Model:
    """A :class:`Model` from a Model, a QuantizedModel or a path."""
    if isinstance(value, QuantizedModel):
        return value.model
    if isinstance(value, Model):
        return value
    if isinstance(value, str | os.PathLike):
        return load(value)
    raise ConfigError(f"{what} must be a Model, a QuantizedModel or a path, not {type(value).__name__}")



def count_samples(data: Dataset) -> int:
    n = data.num_samples
    return n if n is not None else sum(len(b) for b in data.batches(256))


def robustness_metric(metric: MetricArg, has_labels: bool, output: int | None = None) -> Metric:
    """A metric of the registry (or a function) where higher is better: thresholds and drops assume it.

    ``output`` is the index of the model output it is computed on (None: as given, else the first).
    """
    m = resolve_metric(metric, has_labels=has_labels, output=output)
    if not m.higher_is_better:
        raise ConfigError(
            f"robustness needs a metric where higher is better (accuracy, agreement, cosine, sqnr_db, or a "
            f"function), not {m.name!r}"
        )
    return m


def score(
    metric: Metric,
    reference: list[np.ndarray],
    outputs: list[np.ndarray],
    labels: np.ndarray | None,
    rows: np.ndarray | None = None,
) -> float:
    """``metric`` on ``outputs`` against the float model's ``reference`` outputs and ``labels`` (on ``rows``)."""
    if rows is not None:
        reference = [r[rows] for r in reference]
        outputs = [o[rows] for o in outputs]
        labels = None if labels is None else labels[rows]
    return metric.score(reference, outputs, labels)

