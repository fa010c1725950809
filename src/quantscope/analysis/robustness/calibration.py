"""How static-int8 depends on its calibration data: which distribution, and how many samples."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from quantscope.analysis import shifts as S
from quantscope.analysis.evaluate import Evaluator
from quantscope.analysis.results import CalibrationEffect, CalibrationSizePoint
from quantscope.analysis.robustness.data import (
    EvalArrays,
    MetricArg,
    ModelLike,
    as_model,
    count_samples,
    materialize,
    robustness_metric,
    score,
)
from quantscope.analysis.robustness.shifting import Shifter, resolve_shifts, shift_rng
from quantscope.config import StaticInt8
from quantscope.data import Dataset
from quantscope.errors import ConfigError
from quantscope.io import Model
from quantscope.quantization import quantize

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_CALIBRATION_SHIFTS = {
    "image": ("darker", "gaussian_noise"),
    "text": ("truncation",),
    "tabular": ("covariate_uniform", "covariate_gaussian", "covariate_skewed"),
}


def static_config(config: StaticInt8 | None, samples: int) -> StaticInt8:
    config = config if config is not None else StaticInt8()
    if not isinstance(config, StaticInt8):
        raise ConfigError(f"the calibration studies quantize with StaticInt8, not {type(config).__name__}")
    return dataclasses.replace(config, num_samples=samples)



def calibration_effect(
    model: ModelLike,
    distributions: Mapping[str, Dataset],
    *,
    targets: Mapping[str, Dataset] | None = None,
    metric: MetricArg = "accuracy",
    config: StaticInt8 | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> CalibrationEffect:
    """static-int8 calibrated on each source distribution, evaluated on each target.

    ``targets`` defaults to ``distributions`` (each quantized model is then also scored on its
    own calibration data; pass held-out targets to avoid that). Every sample of a source
    calibrates. Fidelity metrics (``"agreement"``, ...) compare with the float model on each target.
    """
    float_model = as_model(model, "model")
    if not distributions:
        raise ConfigError("calibration_effect needs at least one source distribution")
    targets = distributions if targets is None else targets
    evaluated = {name: materialize(d, float_model) for name, d in targets.items()}
    float_outputs = {name: Evaluator(float_model, batch_size=batch_size, threads=threads).run(a.inputs)
                     for name, a in evaluated.items()}
    metrics = {name: robustness_metric(metric, a.labels is not None) for name, a in evaluated.items()}

    def scores(outputs: dict[str, list[np.ndarray]]) -> list[float]:
        return [score(metrics[t], float_outputs[t], outputs[t], a.labels) for t, a in evaluated.items()]

    float_values = scores(float_outputs)
    values: list[list[float]] = []
    for source, calib in distributions.items():
        q = Evaluator(quantize(float_model, static_config(config, count_samples(calib)), calib).model,
                      batch_size=batch_size, threads=threads)
        values.append(scores({t: q.run(a.inputs) for t, a in evaluated.items()}))
        logger.info("calibrated on %s: %s", source, values[-1])
    return CalibrationEffect(
        sources=list(distributions), targets=list(evaluated), metric=next(iter(metrics.values())).name,
        values=values, float_values=float_values,
    )


def calibration_size(
    model: ModelLike, calibration: Dataset, data: Dataset, *, sizes: Sequence[int] = DEFAULT_CALIBRATION_SIZES,
    metric: MetricArg = "accuracy", config: StaticInt8 | None = None, seed: int = 0, batch_size: int = 64,
    threads: int | None = None,
) -> list[CalibrationSizePoint]:
    """Quality of static-int8 calibrated on seeded subsets of ``sizes`` samples (capped by the data)."""
    float_model = as_model(model, "model")
    available = count_samples(calibration)
    wanted = sorted({int(s) for s in sizes if int(s) >= 1})
    if not wanted:
        raise ConfigError(f"calibration sizes must be positive integers, got {list(sizes)}")
    chosen = sorted({min(s, available) for s in wanted})
    arrays = materialize(data, float_model)
    m = robustness_metric(metric, arrays.labels is not None)
    reference = Evaluator(float_model, batch_size=batch_size, threads=threads).run(arrays.inputs)
    out = []
    for n in chosen:
        q = quantize(float_model, static_config(config, n), calibration.take(n, seed=seed))
        outputs = Evaluator(q.model, batch_size=batch_size, threads=threads).run(arrays.inputs)
        out.append(CalibrationSizePoint(samples=n, quality={m.name: score(m, reference, outputs, arrays.labels)}))
    return out


def calibration_studies(
    float_model: Model,
    calibration: Dataset,
    arrays: EvalArrays,
    shifter: Shifter,
    metric: MetricArg,
    modality: str,
    names: Sequence[str] | None,
    severity: float,
    sizes: Sequence[int] | None,
    config: StaticInt8 | None,
    seed: int,
    batch_size: int,
    threads: int | None,
) -> tuple[CalibrationEffect, list[CalibrationSizePoint]]:
    severity = S.check_severity(severity)
    names = DEFAULT_CALIBRATION_SHIFTS[modality] if names is None else names
    specs = resolve_shifts(list(names), modality) if names else []
    calib = materialize(calibration, float_model)
    sources = {"clean": calib.dataset()}
    targets = {"clean": arrays.dataset()}
    for spec in specs:
        rng_seed = seed + 1  # the calibration data is shifted with other draws than the evaluation data
        sources[spec.name] = calib.dataset(shifter.apply(spec, severity, calib.inputs, shift_rng(rng_seed, spec.name, severity)))
        targets[spec.name] = arrays.dataset(shifter.apply(spec, severity, arrays.inputs, shift_rng(seed, spec.name, severity)))
    effect = calibration_effect(
        float_model, sources, targets=targets, metric=metric, config=config, batch_size=batch_size, threads=threads
    )
    points = (
        calibration_size(
            float_model, calibration, arrays.dataset(), sizes=sizes, metric=metric, config=config, seed=seed,
            batch_size=batch_size, threads=threads,
        )
        if sizes
        else []
    )
    return effect, points

