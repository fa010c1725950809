"""The robustness study: every model under every shift and severity, per slice, and breaking points."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quantscope.analysis import shifts as S
from quantscope.analysis.evaldata import checked_labels
from quantscope.analysis.evaluate import Evaluator
from quantscope.analysis.limitations import write_limitations
from quantscope.analysis.outputs import choose_outputs, output_indices
from quantscope.analysis.quality import METRICS
from quantscope.analysis.results import (
    CalibrationSizePoint,
    Results,
    RobustnessResult,
    ShiftPoint,
    SliceResult,
)
from quantscope.analysis.robustness.calibration import (
    DEFAULT_CALIBRATION_SIZES,
    calibration_studies,
)
from quantscope.analysis.robustness.cells import Cell, CellContext, run_cells
from quantscope.analysis.robustness.data import (
    REFERENCE,
    MetricArg,
    ModelLike,
    as_model,
    materialize,
    robustness_metric,
    score,
)
from quantscope.analysis.robustness.shifting import Shifter, ShiftsArg, resolve_shifts, shift_rng
from quantscope.analysis.robustness.slices import slices_of
from quantscope.calibrate import Progress
from quantscope.config import StaticInt8
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ConfigError
from quantscope.io import Model

DEFAULT_SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def named_models(model: ModelLike, variants: Mapping[str, ModelLike] | None, reference: str) -> dict[str, Model]:
    models = {reference: as_model(model, "model")}
    for name, v in (variants or {}).items():
        if name == reference:
            raise ConfigError(f"the variant name {reference!r} is the float model's; rename the variant")
        models[str(name)] = as_model(v, f"variant {name!r}")
    return models


def severity_grid(severities: Sequence[float]) -> list[float]:
    values = sorted({S.check_severity(s) for s in severities})
    if not values:
        raise ConfigError("severities must hold at least one value in [0, 1]")
    return values if values[0] == 0.0 else [0.0, *values]


def robustness(
    model: ModelLike,
    variants: Mapping[str, ModelLike] | None,
    data: Dataset,
    *,
    modality: str,
    metric: MetricArg = "accuracy",
    shifts: ShiftsArg = None,
    severities: Sequence[float] = DEFAULT_SEVERITIES,
    threshold: float | None = None,
    slices: Sequence[str] | None = None,
    seed: int = 0,
    inputs: Sequence[str] | None = None,
    layout: str | None = None,
    value_range: tuple[float, float] | None = None,
    pad_id: int | None = None,
    calibration: Dataset | None = None,
    calibration_shifts: Sequence[str] | None = None,
    calibration_severity: float = 0.75,
    calibration_sizes: Sequence[int] | None = DEFAULT_CALIBRATION_SIZES,
    quantize_config: StaticInt8 | None = None,
    min_effect: float = 0.05,
    reference: str = REFERENCE,
    batch_size: int = 64,
    threads: int | None = None,
    progress: Progress | None = None,
    output: str | Sequence[str] | None = None,
    executor: Any = None,
) -> RobustnessResult:
    """Quality of the float model and each variant under shifted data, per slice and per calibration.

    ``variants`` maps names to quantized models; the float model is named ``reference``.
    ``shifts`` are names of the modality's built-in shifts, functions
    ``shift(x, severity, rng, **info)``, or a dict ``{name: function}``; None: every built-in
    shift of ``modality`` ("image", "text" or "tabular"). ``metric`` is a name of the metric
    registry (:mod:`quantscope.analysis.quality`) where higher is better: ``"accuracy"`` (needs
    labels), ``"agreement"`` (top-1 agreement with the float model on the unshifted data),
    ``"cosine"``, ``"sqnr_db"``, ...; or a function ``(outputs, labels) -> float``, higher is better. ``threshold`` is the quality below
    which a variant counts as broken (default: 90 % of the float model's unshifted quality).
    ``slices`` names the label ("label"), metadata keys and, for text, "length" to slice by
    (None: all of them). With ``calibration`` data, static-int8 (``quantize_config``, default
    ``StaticInt8()``) is calibrated on it clean and under ``calibration_shifts`` and evaluated
    on the evaluation data under the same shifts (a matrix), and calibrated on subsets of
    ``calibration_sizes`` samples. ``output`` names the model output the metric is computed on
    (default: the floating-point output with the most elements per sample; the first of several). Limitations are written for effects of at least
    ``min_effect`` (metric units) and above sampling noise. ``executor`` (see
    :mod:`quantscope.execution`): every cell of the grid (shift × severity × model) is one job
    there; None: all in this process, one session per model.
    """
    data = as_dataset(data, "evaluation data")
    modality = S.check_modality(modality)
    models = named_models(model, variants, reference)
    float_model = models[reference]
    arrays = materialize(data, float_model)
    measured = output_indices(float_model, choose_outputs(float_model, output))[0]
    metric_ = robustness_metric(metric, arrays.labels is not None, output=measured)
    arrays = dataclasses.replace(arrays, labels=checked_labels(float_model, arrays.labels, metric_))
    specs = resolve_shifts(shifts, modality)
    grid = severity_grid(severities)
    shifter = Shifter(modality, arrays, inputs=inputs, layout=layout, value_range=value_range, pad_id=pad_id)
    runners = {name: Evaluator(m, batch_size=batch_size, threads=threads) for name, m in models.items()}
    total = len(models) * (1 + len(specs) * (len(grid) - 1))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    clean = {name: runner.run(arrays.inputs) for name, runner in runners.items()}
    for _ in models:
        step()
    ref, labels = clean[reference], arrays.labels  # fidelity is measured against the float model, unshifted
    base = {name: score(metric_, ref, out, labels) for name, out in clean.items()}
    if threshold is None:
        threshold = 0.9 * base[reference]

    remote: dict[Cell, float] = {}
    if executor is not None:
        context = CellContext(shifter, arrays, {spec.name: spec for spec in specs}, ref, metric_, seed, batch_size,
                              threads)
        cells = [(spec.name, s, name) for spec in specs for s in grid if s > 0 for name in models]
        remote = run_cells(executor, context, models, cells, step)
    points: list[ShiftPoint] = []
    for spec in specs:
        for s in grid:
            desc = S.describe(spec, s) if s > 0 else "unshifted"
            if s == 0.0:
                values = base
            elif executor is not None:
                values = {name: remote[(spec.name, s, name)] for name in models}
            else:
                shifted = shifter.apply(spec, s, arrays.inputs, shift_rng(seed, spec.name, s))
                values = {}
                for name, runner in runners.items():
                    values[name] = score(metric_, ref, runner.run(shifted), labels)
                    step()
            points.extend(
                ShiftPoint(shift=spec.name, severity=s, variant=name, quality={metric_.name: v}, description=desc)
                for name, v in values.items()
            )
    breaking = breaking_points(points, threshold)

    slice_results: list[SliceResult] = []
    for slice_name, rows in slices_of(arrays, shifter.lengths(arrays), slices):
        idx = np.flatnonzero(rows)
        for name in models:
            slice_results.append(
                SliceResult(
                    slice=slice_name, variant=name, samples=len(idx),
                    quality={metric_.name: score(metric_, ref, clean[name], labels, idx)},
                )
            )
    order = {name: i for i, name in enumerate(models)}
    slice_results.sort(key=lambda r: (order[r.variant], r.quality[metric_.name]))

    effect = None
    sizes: list[CalibrationSizePoint] = []
    if calibration is not None:
        effect, sizes = calibration_studies(
            float_model, calibration, arrays, shifter, metric_, modality,
            calibration_shifts, calibration_severity, calibration_sizes, quantize_config, seed,
            batch_size, threads,
        )

    result = RobustnessResult(
        metric=metric_.name,
        threshold=float(threshold),
        shifts=points,
        breaking_points=breaking,
        slices=slice_results,
        calibration_effect=effect,
        calibration_size=sizes,
        samples=len(arrays),
    )
    return dataclasses.replace(
        result, limitations=write_limitations(result, reference=reference, min_effect=min_effect)
    )


def breaking_points(points: list[ShiftPoint], threshold: float) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for p in sorted(points, key=lambda p: p.severity):
        entry = out.setdefault(p.shift, {})
        entry.setdefault(p.variant, None)
        value = next(iter(p.quality.values()))
        if entry[p.variant] is None and value < threshold:
            entry[p.variant] = p.severity
    return out



def robustness_for(
    results: Results,
    model: ModelLike,
    variants: Mapping[str, ModelLike],
    data: Dataset,
    **options: Any,
) -> Results:
    """``results`` with ``robustness`` set: :func:`robustness` over the same model and variants.

    ``options`` are :func:`robustness`'s keywords (``modality`` is required); ``metric``
    defaults to the results' metric when it is a registered metric where higher is better, and the float model
    keeps the name it has in ``results``.
    """
    if "modality" not in options:
        raise ConfigError("robustness needs the data's modality: 'image', 'text' or 'tabular'")
    known = METRICS.get(results.metric)
    if "metric" not in options and known is not None and known.higher_is_better:
        options["metric"] = results.metric
    ref = results.reference
    options.setdefault("reference", ref.name if ref is not None else REFERENCE)
    if results.outputs:
        options.setdefault("output", results.outputs[0])
    named = {name: v for name, v in variants.items() if name != options["reference"]}
    return dataclasses.replace(results, robustness=robustness(model, named, data, **options))

