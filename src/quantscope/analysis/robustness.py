"""Where a model breaks: quality under shifted data, per slice, and against the calibration data.

:func:`robustness` evaluates the float model and every quantized variant on the evaluation data
shifted by each shift of a modality (:mod:`quantscope.analysis.shifts`) at each severity, finds
the severity at which each variant falls below a threshold, measures every class and metadata
slice, and (given calibration data) how static-int8 depends on the distribution and the size of
its calibration set. :mod:`quantscope.analysis.limitations` turns the numbers into sentences.

The evaluation data is read into memory once (shifts such as the covariate ones look at the
whole set); one ONNX Runtime session per variant serves every shift and severity.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantscope.analysis import shifts as S
from quantscope.analysis.limitations import write_limitations
from quantscope.analysis.results import (
    CalibrationEffect,
    CalibrationSizePoint,
    Results,
    RobustnessResult,
    ShiftPoint,
    SliceResult,
)
from quantscope.calibrate import Progress
from quantscope.config import StaticInt8
from quantscope.data import Dataset
from quantscope.errors import ConfigError, DataError
from quantscope.io import Model, load
from quantscope.quantize import QuantizedModel, quantize
from quantscope.runtime import make_session, run

logger = logging.getLogger(__name__)

REFERENCE = "float"
"""The name under which the float model appears in every robustness result."""

DEFAULT_SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_CALIBRATION_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_CALIBRATION_SHIFTS = {
    "image": ("darker", "gaussian_noise"),
    "text": ("truncation",),
    "tabular": ("covariate_uniform", "covariate_gaussian", "covariate_skewed"),
}
MAX_CATEGORIES = 32  # a metadata array with more distinct values is sliced into quartiles

MetricFn = Callable[[list[np.ndarray], np.ndarray | None], float]
ModelLike = Model | QuantizedModel | str | os.PathLike[str]
ShiftsArg = Sequence[str | Callable[..., np.ndarray]] | Mapping[str, Callable[..., np.ndarray]] | None


# ---------------------------------------------------------------------------
# Data, models and metrics.


@dataclass(frozen=True)
class _Arrays:
    """The evaluation data in memory, bound to the model's input names and dtypes."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def dataset(self, inputs: dict[str, np.ndarray] | None = None) -> Dataset:
        return Dataset.from_arrays(self.inputs if inputs is None else inputs, labels=self.labels)


def _materialize(data: Dataset, model: Model) -> _Arrays:
    if not isinstance(data, Dataset):
        raise ConfigError(f"data must be a quantscope Dataset (Dataset.from_npz(...)), not {type(data).__name__}")
    inputs: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    meta: dict[str, list[np.ndarray]] = {}
    for batch in data.bind(model.inputs).batches(256):
        for k, v in batch.inputs.items():
            inputs.setdefault(k, []).append(np.asarray(v))
        if batch.labels is not None:
            labels.append(np.asarray(batch.labels))
        for k, v in batch.meta.items():
            meta.setdefault(k, []).append(np.asarray(v))
    return _Arrays(
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


class _Runner:
    """One session per model; runs arrays through it in batches."""

    def __init__(self, models: Mapping[str, Model], batch_size: int, threads: int | None) -> None:
        self.sessions = {name: make_session(m, threads=threads) for name, m in models.items()}
        self.batch_size = batch_size

    def outputs(self, name: str, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        session = self.sessions[name]
        n = len(next(iter(inputs.values())))
        chunks = [
            run(session, {k: v[i : i + self.batch_size] for k, v in inputs.items()})
            for i in range(0, n, self.batch_size)
        ]
        return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def _predicted(outputs: list[np.ndarray]) -> np.ndarray:
    """Predicted classes from the first output: argmax of scores, or integer labels as they are."""
    y = outputs[0]
    if y.dtype.kind in "iu" and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        return y.reshape(len(y))
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    raise ConfigError(
        f"the model's first output has shape {y.shape} and dtype {y.dtype}: not class scores or "
        "class indices; pass metric=a function(outputs, labels) -> float"
    )


@dataclass(frozen=True)
class _Metric:
    name: str
    fn: MetricFn | None  # None: accuracy of the predicted class against the target classes

    def score(self, outputs: list[np.ndarray], targets: np.ndarray | None, rows: np.ndarray | None = None) -> float:
        if rows is not None:
            outputs = [o[rows] for o in outputs]
            targets = None if targets is None else targets[rows]
        if self.fn is not None:
            return float(self.fn(outputs, targets))
        assert targets is not None
        pred = _predicted(outputs)
        if pred.shape != targets.shape:
            raise DataError(f"labels of shape {targets.shape} do not match the predictions {pred.shape}")
        return float(np.mean(pred == targets))


def _metric(metric: str | MetricFn, has_labels: bool) -> _Metric:
    if callable(metric):
        name = getattr(metric, "__name__", "custom")
        return _Metric("custom" if name == "<lambda>" else name, metric)
    if metric == "accuracy":
        if not has_labels:
            raise DataError(
                "metric 'accuracy' needs labels, but the evaluation data has none; store them under "
                "'labels' in the .npz, or use metric='agreement' (top-1 agreement with the float "
                "model's predictions on the unshifted data)"
            )
        return _Metric("accuracy", None)
    if metric == "agreement":
        return _Metric("agreement", None)
    raise ConfigError(f"unknown metric {metric!r}; use 'accuracy', 'agreement' or a function(outputs, labels)")


# ---------------------------------------------------------------------------
# Applying shifts to model inputs.


def _resolve_shifts(shifts: ShiftsArg, modality: str) -> list[S.ShiftSpec]:
    builtin = S.shifts_for(modality)
    if shifts is None:
        return list(builtin.values())
    if isinstance(shifts, Mapping):
        return [S.user_shift(str(name), fn, modality) for name, fn in shifts.items()]
    if isinstance(shifts, str):
        shifts = [shifts]
    specs = []
    for item in shifts:
        if isinstance(item, str):
            if item not in builtin:
                raise ConfigError(f"no {modality} shift named {item!r}; choose from {sorted(builtin)}")
            specs.append(builtin[item])
        elif callable(item):
            specs.append(S.user_shift(getattr(item, "__name__", "custom"), item, modality))
        else:
            raise ConfigError(f"a shift is a name or a function, not {type(item).__name__}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"shifts must be a non-empty list of distinct shifts, got {names}")
    return specs


def _call(fn: Callable[..., np.ndarray], x: np.ndarray, s: float, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
    """Call a shift with the info keywords it accepts (all of them if it takes ``**info``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        info = {k: v for k, v in info.items() if k in params}
    y = np.asarray(fn(x, s, rng, **info))
    if y.shape != x.shape:
        raise ConfigError(f"shift {getattr(fn, '__name__', fn)!r} changed the shape {x.shape} to {y.shape}")
    return y.astype(x.dtype, copy=False)


class _Shifter:
    """Which inputs a modality's shifts change, with the facts the shifts need."""

    def __init__(
        self,
        modality: str,
        arrays: _Arrays,
        *,
        inputs: Sequence[str] | None,
        layout: str | None,
        value_range: tuple[float, float] | None,
        pad_id: int | None,
    ) -> None:
        self.modality = modality
        names = list(arrays.inputs)
        if inputs is not None:
            unknown = [n for n in inputs if n not in names]
            if unknown:
                raise ConfigError(f"inputs {unknown} are not model inputs; the model takes {names}")
        self.mask_name: str | None = None
        self.info: dict[str, dict[str, Any]] = {}
        if modality == "text":
            ints = [n for n in names if arrays.inputs[n].dtype.kind in "iu"]
            masks = [n for n in ints if "mask" in n.lower()]
            self.mask_name = masks[0] if masks else None
            ids = list(inputs) if inputs is not None else [
                n for n in ints if n not in masks and not any(t in n.lower() for t in ("type", "segment", "position"))
            ]
            if len(ids) != 1:
                raise ConfigError(
                    f"text shifts change one input of token ids; found {ids or 'none'} among {names}; "
                    "name it with inputs=['input_ids']"
                )
            x = arrays.inputs[ids[0]]
            mask = arrays.inputs[self.mask_name] if self.mask_name else None
            pad = pad_id if pad_id is not None else _detect_pad(x, mask)
            self.info[ids[0]] = {"pad_id": pad, "vocab_size": int(x.max()) + 1}
        else:
            targets = list(inputs) if inputs is not None else [n for n in names if arrays.inputs[n].dtype.kind == "f"]
            if not targets:
                raise ConfigError(f"no floating-point input to shift among {names}; name them with inputs=[...]")
            for n in targets:
                x = arrays.inputs[n]
                if modality == "image":
                    self.info[n] = {
                        "layout": layout or S.detect_layout(x),
                        "value_range": value_range or S.detect_value_range(x),
                    }
                else:
                    self.info[n] = {"value_range": value_range}

    def apply(
        self, spec: S.ShiftSpec, severity: float, inputs: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        out = dict(inputs)
        for name, info in self.info.items():
            x = inputs[name]
            if self.modality == "text":
                mask = inputs[self.mask_name] if self.mask_name else None
                y = _call(spec.fn, x, severity, rng, {**info, "mask": mask})
                if self.mask_name and mask is not None:
                    out[self.mask_name] = S.derive_mask(mask, x, y, info["pad_id"]).astype(mask.dtype)
            else:
                y = _call(spec.fn, x, severity, rng, info)
            out[name] = y
        return out

    def lengths(self, arrays: _Arrays) -> np.ndarray | None:
        if self.modality != "text":
            return None
        name = next(iter(self.info))
        if self.mask_name:
            return (arrays.inputs[self.mask_name] != 0).sum(axis=1)
        return (arrays.inputs[name] != self.info[name]["pad_id"]).sum(axis=1)


def _detect_pad(ids: np.ndarray, mask: np.ndarray | None) -> int:
    if mask is not None and (mask == 0).any():
        values, counts = np.unique(ids[mask == 0], return_counts=True)
        return int(values[np.argmax(counts)])
    return 0


def _rng(seed: int, name: str, severity: float) -> np.random.Generator:
    """Independent of which other shifts run, so adding one changes no other result."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), round(severity * 10_000)])


# ---------------------------------------------------------------------------
# Slices.


def _slices(
    arrays: _Arrays, lengths: np.ndarray | None, which: Sequence[str] | None
) -> list[tuple[str, np.ndarray]]:
    available: dict[str, np.ndarray] = {}
    if arrays.labels is not None:
        available["label"] = arrays.labels
    for key, values in arrays.meta.items():
        if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
            available[key] = values.reshape(len(values))
        else:
            logger.info("metadata %r has shape %s; only 1-D metadata is sliced", key, values.shape)
    if lengths is not None:
        available["length"] = lengths
    if which is None:
        which = list(available)
    unknown = [w for w in which if w not in available]
    if unknown:
        raise ConfigError(f"cannot slice by {unknown}: the data has {sorted(available) or 'nothing to slice by'}")
    out: list[tuple[str, np.ndarray]] = []
    for key in which:
        values = available[key]
        if key == "length":
            cut = float(np.median(values))
            if values.min() < values.max():
                out.append((f"length ≤ {cut:g} tokens", values <= cut))
                out.append((f"length > {cut:g} tokens", values > cut))
            continue
        distinct = np.unique(values)
        if len(distinct) <= MAX_CATEGORIES or values.dtype.kind not in "fiu":
            out.extend((f"{key}={v}", values == v) for v in distinct)
        else:
            edges = np.unique(np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0]))
            for i, (a, b) in enumerate(itertools.pairwise(edges)):
                last = i == len(edges) - 2
                rows = (values >= a) & ((values <= b) if last else (values < b))
                out.append((f"{key} in [{a:.4g}, {b:.4g}{']' if last else ')'}", rows))
    return [(name, rows) for name, rows in out if rows.any()]


# ---------------------------------------------------------------------------
# The analysis.


def _variants(model: ModelLike, variants: Mapping[str, ModelLike] | None, reference: str) -> dict[str, Model]:
    models = {reference: as_model(model, "model")}
    for name, v in (variants or {}).items():
        if name == reference:
            raise ConfigError(f"the variant name {reference!r} is the float model's; rename the variant")
        models[str(name)] = as_model(v, f"variant {name!r}")
    return models


def _severities(severities: Sequence[float]) -> list[float]:
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
    metric: str | MetricFn = "accuracy",
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
) -> RobustnessResult:
    """Quality of the float model and each variant under shifted data, per slice and per calibration.

    ``variants`` maps names to quantized models; the float model is named ``reference``.
    ``shifts`` are names of the modality's built-in shifts, functions
    ``shift(x, severity, rng, **info)``, or a dict ``{name: function}``; None: every built-in
    shift of ``modality`` ("image", "text" or "tabular"). ``metric`` is ``"accuracy"`` (needs
    labels), ``"agreement"`` (top-1 agreement with the float model on the unshifted data) or a
    function ``(outputs, labels) -> float``; higher is better. ``threshold`` is the quality below
    which a variant counts as broken (default: 90 % of the float model's unshifted quality).
    ``slices`` names the label ("label"), metadata keys and, for text, "length" to slice by
    (None: all of them). With ``calibration`` data, static-int8 (``quantize_config``, default
    ``StaticInt8()``) is calibrated on it clean and under ``calibration_shifts`` and evaluated
    on the evaluation data under the same shifts (a matrix), and calibrated on subsets of
    ``calibration_sizes`` samples. Limitations are written for effects of at least
    ``min_effect`` (metric units) and above sampling noise.
    """
    modality = S.check_modality(modality)
    models = _variants(model, variants, reference)
    float_model = models[reference]
    arrays = _materialize(data, float_model)
    metric_ = _metric(metric, arrays.labels is not None)
    specs = _resolve_shifts(shifts, modality)
    grid = _severities(severities)
    shifter = _Shifter(modality, arrays, inputs=inputs, layout=layout, value_range=value_range, pad_id=pad_id)
    runner = _Runner(models, batch_size, threads)
    total = len(models) * (1 + len(specs) * (len(grid) - 1))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    clean = {name: runner.outputs(name, arrays.inputs) for name in models}
    for _ in models:
        step()
    targets = arrays.labels if metric_.name != "agreement" else _predicted(clean[reference])
    base = {name: metric_.score(out, targets) for name, out in clean.items()}
    if threshold is None:
        threshold = 0.9 * base[reference]

    points: list[ShiftPoint] = []
    for spec in specs:
        for s in grid:
            desc = S.describe(spec, s) if s > 0 else "unshifted"
            if s == 0.0:
                values = base
            else:
                shifted = shifter.apply(spec, s, arrays.inputs, _rng(seed, spec.name, s))
                values = {}
                for name in models:
                    values[name] = metric_.score(runner.outputs(name, shifted), targets)
                    step()
            points.extend(
                ShiftPoint(shift=spec.name, severity=s, variant=name, quality={metric_.name: v}, description=desc)
                for name, v in values.items()
            )
    breaking = _breaking_points(points, threshold)

    slice_results: list[SliceResult] = []
    for slice_name, rows in _slices(arrays, shifter.lengths(arrays), slices):
        idx = np.flatnonzero(rows)
        for name in models:
            slice_results.append(
                SliceResult(
                    slice=slice_name, variant=name, samples=len(idx),
                    quality={metric_.name: metric_.score(clean[name], targets, idx)},
                )
            )
    order = {name: i for i, name in enumerate(models)}
    slice_results.sort(key=lambda r: (order[r.variant], r.quality[metric_.name]))

    effect = None
    sizes: list[CalibrationSizePoint] = []
    if calibration is not None:
        effect, sizes = _calibration_studies(
            float_model, calibration, arrays, shifter, metric, modality,
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


def _breaking_points(points: list[ShiftPoint], threshold: float) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for p in sorted(points, key=lambda p: p.severity):
        entry = out.setdefault(p.shift, {})
        entry.setdefault(p.variant, None)
        value = next(iter(p.quality.values()))
        if entry[p.variant] is None and value < threshold:
            entry[p.variant] = p.severity
    return out


# ---------------------------------------------------------------------------
# Calibration: which data, how much.


def _static_config(config: StaticInt8 | None, samples: int) -> StaticInt8:
    config = config if config is not None else StaticInt8()
    if not isinstance(config, StaticInt8):
        raise ConfigError(f"the calibration studies quantize with StaticInt8, not {type(config).__name__}")
    return dataclasses.replace(config, num_samples=samples)


def _count(data: Dataset) -> int:
    n = data.num_samples
    return n if n is not None else sum(len(b) for b in data.batches(256))


def calibration_effect(
    model: ModelLike,
    distributions: Mapping[str, Dataset],
    *,
    targets: Mapping[str, Dataset] | None = None,
    metric: str | MetricFn = "accuracy",
    config: StaticInt8 | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> CalibrationEffect:
    """static-int8 calibrated on each source distribution, evaluated on each target.

    ``targets`` defaults to ``distributions`` (each quantized model is then also scored on its
    own calibration data; pass held-out targets to avoid that). Every sample of a source
    calibrates. With ``metric="agreement"`` the reference on each target is the float model.
    """
    float_model = as_model(model, "model")
    if not distributions:
        raise ConfigError("calibration_effect needs at least one source distribution")
    targets = distributions if targets is None else targets
    evaluated = {name: _materialize(d, float_model) for name, d in targets.items()}
    runner = _Runner({REFERENCE: float_model}, batch_size, threads)
    float_outputs = {name: runner.outputs(REFERENCE, a.inputs) for name, a in evaluated.items()}
    scores: dict[str, tuple[_Metric, np.ndarray | None]] = {}
    for name, a in evaluated.items():
        m = _metric(metric, a.labels is not None)
        scores[name] = (m, _predicted(float_outputs[name]) if m.name == "agreement" else a.labels)
    float_values = [scores[t][0].score(float_outputs[t], scores[t][1]) for t in evaluated]
    values: list[list[float]] = []
    for source, calib in distributions.items():
        q = quantize(float_model, _static_config(config, _count(calib)), calib)
        run_q = _Runner({source: q.model}, batch_size, threads)
        values.append([scores[t][0].score(run_q.outputs(source, a.inputs), scores[t][1]) for t, a in evaluated.items()])
        logger.info("calibrated on %s: %s", source, values[-1])
    return CalibrationEffect(
        sources=list(distributions), targets=list(evaluated), metric=scores[next(iter(scores))][0].name,
        values=values, float_values=float_values,
    )


def calibration_size(
    model: ModelLike,
    calibration: Dataset,
    data: Dataset,
    *,
    sizes: Sequence[int] = DEFAULT_CALIBRATION_SIZES,
    metric: str | MetricFn = "accuracy",
    config: StaticInt8 | None = None,
    seed: int = 0,
    batch_size: int = 64,
    threads: int | None = None,
) -> list[CalibrationSizePoint]:
    """Quality of static-int8 calibrated on seeded subsets of ``sizes`` samples (capped by the data)."""
    float_model = as_model(model, "model")
    available = _count(calibration)
    wanted = sorted({int(s) for s in sizes if int(s) >= 1})
    if not wanted:
        raise ConfigError(f"calibration sizes must be positive integers, got {list(sizes)}")
    chosen = sorted({min(s, available) for s in wanted})
    arrays = _materialize(data, float_model)
    m = _metric(metric, arrays.labels is not None)
    targets = arrays.labels
    if m.name == "agreement":
        targets = _predicted(_Runner({REFERENCE: float_model}, batch_size, threads).outputs(REFERENCE, arrays.inputs))
    out = []
    for n in chosen:
        subset = calibration.take(n, seed=seed)
        q = quantize(float_model, _static_config(config, n), subset)
        outputs = _Runner({"q": q.model}, batch_size, threads).outputs("q", arrays.inputs)
        out.append(CalibrationSizePoint(samples=n, quality={m.name: m.score(outputs, targets)}))
    return out


def _calibration_studies(
    float_model: Model,
    calibration: Dataset,
    arrays: _Arrays,
    shifter: _Shifter,
    metric: str | MetricFn,
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
    specs = _resolve_shifts(list(names), modality) if names else []
    calib = _materialize(calibration, float_model)
    sources = {"clean": calib.dataset()}
    targets = {"clean": arrays.dataset()}
    for spec in specs:
        rng_seed = seed + 1  # the calibration data is shifted with other draws than the evaluation data
        sources[spec.name] = calib.dataset(shifter.apply(spec, severity, calib.inputs, _rng(rng_seed, spec.name, severity)))
        targets[spec.name] = arrays.dataset(shifter.apply(spec, severity, arrays.inputs, _rng(seed, spec.name, severity)))
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


# ---------------------------------------------------------------------------
# For sweep --robustness.


def robustness_for(
    results: Results,
    model: ModelLike,
    variants: Mapping[str, ModelLike],
    data: Dataset,
    **options: Any,
) -> Results:
    """``results`` with ``robustness`` set: :func:`robustness` over the same model and variants.

    ``options`` are :func:`robustness`'s keywords (``modality`` is required); ``metric``
    defaults to the results' metric when it is one robustness understands, and the float model
    keeps the name it has in ``results``.
    """
    if "modality" not in options:
        raise ConfigError("robustness needs the data's modality: 'image', 'text' or 'tabular'")
    if "metric" not in options and results.metric in ("accuracy", "agreement"):
        options["metric"] = results.metric
    ref = results.reference
    options.setdefault("reference", ref.name if ref is not None else REFERENCE)
    named = {name: v for name, v in variants.items() if name != options["reference"]}
    return dataclasses.replace(results, robustness=robustness(model, named, data, **options))


__all__ = [
    "DEFAULT_CALIBRATION_SIZES",
    "DEFAULT_SEVERITIES",
    "REFERENCE",
    "calibration_effect",
    "calibration_size",
    "robustness",
    "robustness_for",
]
