"""Per-layer sensitivity: the quality when only one node is quantized (or all but one), ranked.

Each measurement re-quantizes the float model with the same config and a node selector that
leaves every other quantized node in float (``mode="only"``) or just this one
(``mode="all-but"``), then evaluates it on a seeded subset of the evaluation data. The cost
is one quantization and one evaluation per candidate: the candidates are the ``top`` worst
nodes of the per-layer error ranking (or, without one, the first quantized nodes in graph order).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from quantscope.analysis.evaldata import checked_eval_data, checked_labels
from quantscope.analysis.evaluate import predict
from quantscope.analysis.options import Mode, StepProgress
from quantscope.analysis.quality import Metric, quality
from quantscope.analysis.results import LayerSensitivity
from quantscope.config import MethodConfig, NodeSelector
from quantscope.data import Dataset
from quantscope.errors import ConfigError, QuantscopeError
from quantscope.execution.inputs import JobInput
from quantscope.io import Model
from quantscope.plan import QuantPlan
from quantscope.quantization import quantize

logger = logging.getLogger(__name__)

DATA_MOVEMENT = frozenset({
    "MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
    "Identity", "Slice", "Split", "Resize", "Concat", "Gather", "Expand", "Pad",
})


def candidates(plan: QuantPlan, ranked: Sequence[str] = (), top: int = 5) -> list[str]:
    """Up to ``top`` quantized nodes worth measuring: ``ranked`` first, then graph order.

    Data-movement nodes (MaxPool, Reshape, ...) are skipped: they only share their input's
    scale and say nothing on their own.
    """
    quantized = [d.node for d in plan.decisions if d.action == "quantized" and d.op_type not in DATA_MOVEMENT]
    allowed = set(quantized)
    order = [n for n in ranked if n in allowed]
    order += [n for n in quantized if n not in order]
    return order[: max(top, 0)]


def layer_sensitivity(
    model: Model,
    config: MethodConfig,
    plan: QuantPlan,
    data: Dataset,
    *,
    metric: Metric,
    calib: Dataset | None = None,
    nodes: Sequence[str],
    mode: Mode = "only",
    full: Model | None = None,
    samples: int = 128,
    seed: int = 0,
    progress: StepProgress | None = None,
    executor: Any = None,
) -> list[LayerSensitivity]:
    """Quality of ``model`` quantized with ``config`` at one node of ``nodes`` (or all but it).

    ``plan`` is the full quantization's plan (which nodes it quantized). ``delta`` is measured
    against the float model for ``"only"`` and against the fully quantized model (``full``,
    quantized here when not given) for ``"all-but"``, all on the same ``samples``-sample
    seeded subset of ``data``. Ranked from the largest loss to the smallest. ``executor`` (see
    :mod:`quantscope.execution`): each node's quantize-and-evaluate run is one job there; None:
    one after another in this process.
    """
    if mode not in ("only", "all-but"):
        raise ConfigError(f"sensitivity mode must be 'only' or 'all-but', not {mode!r}")
    quantized = [d.node for d in plan.decisions if d.action == "quantized"]
    op_types = {d.node: d.op_type for d in plan.decisions}
    unknown = [n for n in nodes if n not in op_types]
    if unknown:
        raise ConfigError(f"node(s) {unknown} are not in the plan; pick nodes the method quantized")
    checked_eval_data(model, data)  # NaN/inf (a no-op for data an analysis already checked)
    subset = data.take(samples, seed=seed)
    labels = checked_labels(model, subset.labels, metric)
    ref_outputs = predict(model, subset)
    if mode == "only":
        reference = _value(quality(ref_outputs, ref_outputs, labels, metric), metric)
    else:
        if full is None:
            full = quantize(model, config, calib if config.needs_calibration else None).model
        reference = _value(quality(ref_outputs, predict(full, subset), labels, metric), metric)
    cal = calib if config.needs_calibration else None
    runs: dict[str, MethodConfig] = {}
    for node in nodes:
        others = [n for n in quantized if n != node]
        runs[node] = config if mode == "only" and not others else with_excluded(config, others if mode == "only"
                                                                                  else [node])
    if executor is None:
        values = {}
        for i, (node, cfg) in enumerate(runs.items()):
            if progress is not None:
                progress(f"sensitivity of {node}", i, len(nodes))
            values[node] = node_quality(model, cfg, cal, subset, ref_outputs, labels, metric)
    else:
        values = _on_workers(executor, model, runs, cal, subset, ref_outputs, labels, metric, progress)
    out = [
        LayerSensitivity(node=node, op_type=op_types[node], mode=mode, metric=metric.name, value=value,
                         delta=value - reference)
        for node, value in values.items()
    ]
    if progress is not None:
        progress("sensitivity", len(nodes), len(nodes))
    sign = 1.0 if metric.higher_is_better else -1.0
    return sorted(out, key=lambda s: sign * s.delta)


def node_quality(
    model: Model | JobInput, config: MethodConfig, calib: Dataset | JobInput | None, subset: Dataset | JobInput,
    ref_outputs: list[np.ndarray], labels: np.ndarray | None, metric: Metric,
) -> float:
    """One sensitivity run: ``model`` quantized with ``config``, evaluated on ``subset`` (also a job:
    the inputs may be :class:`~quantscope.execution.inputs.JobInput` s, opened where it runs)."""
    if isinstance(model, JobInput):
        model = model.load_model()
    if isinstance(calib, JobInput):
        calib = calib.load_dataset()
    if isinstance(subset, JobInput):
        subset = subset.load_dataset()
    q = quantize(model, config, calib)
    return _value(quality(ref_outputs, predict(q.model, subset), labels, metric), metric)


def _on_workers(
    executor: Any, model: Model, runs: dict[str, MethodConfig], calib: Dataset | None, subset: Dataset,
    ref_outputs: list[np.ndarray], labels: np.ndarray | None, metric: Metric, progress: StepProgress | None,
) -> dict[str, float]:
    """Every node's run as a job on ``executor``; the first failure is raised as it is."""
    from quantscope.analysis.sweep_workers import job_progress
    from quantscope.execution import Job, fan_out, place

    model_in, subset_in = place(executor, model), place(executor, subset)
    calib_in = None if calib is None else place(executor, calib)
    jobs = [Job(node, (model_in, cfg, calib_in, subset_in, ref_outputs, labels, metric)) for node, cfg in runs.items()]
    values = {}
    for result in fan_out(executor, node_quality, jobs, progress=job_progress(progress, "sensitivity of")):
        if not result.ok:
            if isinstance(result.exception, QuantscopeError):
                raise result.exception
            raise QuantscopeError(f"the sensitivity run of {result.key} failed: {result.error}")
        values[result.key] = float(result.value)
    return values


def _value(values: dict[str, float], metric: Metric) -> float:
    if metric.name not in values:
        raise ConfigError(f"metric {metric.name!r} cannot be computed on these outputs")
    return values[metric.name]


def with_excluded(config: MethodConfig, names: Sequence[str]) -> MethodConfig:
    """``config`` with ``names`` added to the nodes it keeps in float."""
    ex = config.exclude
    merged = NodeSelector(
        names=tuple(dict.fromkeys((*ex.names, *names))), patterns=ex.patterns, op_types=ex.op_types
    )
    return dataclasses.replace(config, exclude=merged)
