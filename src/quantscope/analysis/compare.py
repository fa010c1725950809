"""``analyze``: the float model and its quantized variants measured side by side on the same data.

Per variant: task quality and fidelity against the float model, size on disk and parameter
bytes by dtype, latency (batch 1 and a larger batch, one thread and all threads, identical
session options), peak memory in a fresh process, estimated energy, the plan summary, the
per-layer error, and for chosen variants the per-layer sensitivity. The result is a
:class:`~quantscope.analysis.results.Results`; nothing is written to disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from quantscope.analysis.budget import check_max_drop, quality_gate
from quantscope.analysis.context import data_name, machine_info, model_info
from quantscope.analysis.evaldata import prepare_eval
from quantscope.analysis.measure import Stepper, latency_feeds, measure_variant, noise_notes
from quantscope.analysis.options import FLOAT_NAME, AnalysisOptions, StepProgress
from quantscope.analysis.params import parameter_bytes
from quantscope.analysis.quality import Metric, MetricFn
from quantscope.analysis.results import Results, VariantResult
from quantscope.analysis.sensitivity_pick import add_sensitivity
from quantscope.analysis.variants import VariantLike, check_outputs, normalize
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ModelError, QuantscopeError
from quantscope.io import Model, load
from quantscope.signals import temp_dir

logger = logging.getLogger(__name__)

__all__ = [
    "FLOAT_NAME",
    "AnalysisOptions",
    "StepProgress",
    "VariantLike",
    "analyze",
    "machine_info",
    "parameter_bytes",
    "quality_gate",
]


def analyze(
    model: Model | str | os.PathLike[str],
    variants: Mapping[str, VariantLike] | Sequence[VariantLike],
    data: Dataset,
    *,
    metric: str | MetricFn | Metric = "auto",
    metric_name: str | None = None,
    higher_is_better: bool = True,
    max_drop: float | None = None,
    calib: Dataset | None = None,
    options: AnalysisOptions | None = None,
    progress: StepProgress | None = None,
    notes: Sequence[str] = (),
    output: str | Sequence[str] | None = None,
) -> Results:
    """Measure ``model`` and each of ``variants`` on ``data``; the float model is a variant too.

    ``variants`` maps a name to a :class:`QuantizedModel`, a :class:`Model` or a path of a
    quantized .onnx file (its sidecar JSON, when present, gives the config and plan); a plain
    sequence is named after the files or methods. ``metric`` is ``"auto"`` (accuracy with
    labels, else top-1 agreement), a built-in name, or ``fn(outputs, labels) -> float``.
    ``calib`` lets sensitivity re-quantize methods that need calibration. ``max_drop`` is
    recorded as the quality budget (a fraction of the float value; see :func:`quality_gate`).
    ``output`` names the model output(s) to measure, the first being the primary one (default:
    the floating-point output with the most elements per sample; see
    :mod:`quantscope.analysis.outputs`); further outputs add ``metric[output]`` quality keys.

    Raises :class:`DataMismatchError` when ``data`` does not fit the model,
    :class:`NonFiniteDataError` for a NaN or infinity in it, :class:`DataError` for labels the
    metric cannot use (named, with the fix), :class:`EmptyDatasetError` for no samples, :class:`ModelError` when a variant's outputs
    differ from the float model's. A variant quantized from a different float model
    (fingerprint mismatch) is measured with a warning.
    """
    opts = options or AnalysisOptions()
    float_model = load(model) if isinstance(model, str | os.PathLike) else model
    if not isinstance(float_model, Model):
        raise ModelError(f"analyze() takes a quantscope Model or a path, not {type(model).__name__}")
    data = as_dataset(data, "evaluation data")  # arrays, dicts, feed lists, torch, tf.data
    calib = None if calib is None else as_dataset(calib, "calibration data")
    check_max_drop(max_drop)
    # names, shapes, dtypes, NaN/inf, labels: fails before any model runs
    setup = prepare_eval(float_model, data, metric, metric_name=metric_name, higher_is_better=higher_is_better,
                         output=output)
    bound, labels, primary, measured, indices = setup.data, setup.labels, setup.metric, setup.outputs, setup.indices
    extra = dict(zip(measured[1:], indices[1:], strict=True))
    items = normalize(float_model, variants)
    for v in items[1:]:
        check_outputs(float_model, v)
    n_samples = len(bound) if bound.num_samples is not None else None
    notes = list(notes)
    total = len(items)
    ref_outputs: list[np.ndarray] | None = None
    results: list[VariantResult] = []
    feeds = latency_feeds(bound, opts)
    with temp_dir(prefix="quantscope-analyze-") as tmp:
        for i, v in enumerate(items):
            step = Stepper(progress, v.name, i, total)
            try:
                vr, outputs = measure_variant(v, float_model, bound, labels, primary, ref_outputs, feeds, opts, Path(tmp),
                                              step, extra)
            except QuantscopeError as exc:
                if opts.strict or v.name == FLOAT_NAME:
                    raise
                notes.append(f"{v.name}: not measured: {exc}")
                logger.warning("variant %s not measured: %s", v.name, exc)
                continue
            if ref_outputs is None:
                ref_outputs = outputs
            results.append(vr)
    notes += noise_notes(results)
    if opts.sensitivity > 0:
        results = add_sensitivity(float_model, items, results, bound, calib, primary, opts, notes, progress,
                                  max_drop=max_drop)
    if progress is not None:
        progress("done", total, total)
    return Results(
        model=model_info(float_model),
        data={"name": data_name(data), "samples": n_samples, "labels": labels is not None},
        metric=primary.name,
        higher_is_better=primary.higher_is_better,
        variants=results,
        max_drop=max_drop,
        outputs=measured,
        machine={**machine_info(), "threads": [t if t is not None else "all" for t in opts.threads]},
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=notes,
    )
