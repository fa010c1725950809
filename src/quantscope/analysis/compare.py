"""``analyze``: the float model and its quantized variants measured side by side on the same data.

Per variant: task quality and fidelity against the float model, size on disk and parameter
bytes by dtype, latency (batch 1 and a larger batch, one thread and all threads, identical
session options), peak memory in a fresh process, estimated energy, the plan summary, the
per-layer error, and for chosen variants the per-layer sensitivity. The result is a
:class:`~quantscope.analysis.results.Results`; nothing is written to disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.analysis.energy import estimate_energy
from quantscope.analysis.evaluate import measure_latency, predict
from quantscope.analysis.layers import layer_errors, worst_nodes
from quantscope.analysis.memory import peak_memory
from quantscope.analysis.quality import Metric, MetricFn, quality, resolve_metric
from quantscope.analysis.results import LatencyResult, PlanSummary, Results, VariantResult
from quantscope.analysis.sensitivity import Mode, candidates, layer_sensitivity
from quantscope.config import MethodConfig, config_from_dict
from quantscope.data import Dataset
from quantscope.errors import ConfigError, DataError, ModelError, QualityGateError, QuantscopeError
from quantscope.io import Model, load, save
from quantscope.plan import QuantPlan
from quantscope.quantize import QuantizedModel, library_versions, sidecar_path
from quantscope.runtime import cpu_flags, int16_saturation_risk, optimized_op_types

logger = logging.getLogger(__name__)

VariantLike = QuantizedModel | Model | str | os.PathLike[str]
StepProgress = Callable[[str, int, int], None]
"""Called as ``progress(what is being done, steps done, steps in total)``."""

FLOAT_NAME = "float"
_CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


@dataclass(frozen=True, kw_only=True)
class AnalysisOptions:
    """What to measure, and how much it may cost.

    ``sensitivity`` is the number of nodes measured per sensitivity variant (0 turns it off);
    ``sensitivity_variants`` names them (None: the quantized variant that loses the most
    quality, when its method can be re-run).
    """

    latency: bool = True
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int | None, ...] = (1, None)
    warmup: int = 5
    runs: int = 30
    memory: bool = True
    memory_batch: int = 1
    energy: bool = True
    layers: bool = True
    layer_samples: int = 32
    sensitivity: int = 5
    sensitivity_samples: int = 128
    sensitivity_mode: Mode = "only"
    sensitivity_variants: tuple[str, ...] | None = None
    calib_samples: int = 64
    eval_batch_size: int = 32
    seed: int = 0
    strict: bool = True  # False: a variant that fails to run is dropped with a note instead of raising

    def __post_init__(self) -> None:
        for name in ("warmup", "layer_samples", "sensitivity", "sensitivity_samples", "calib_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r} must be an integer >= 0")
        for name in ("runs", "memory_batch", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "threads", tuple(self.threads))
        if not self.batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch_sizes={self.batch_sizes!r} must be integers >= 1")
        if any(t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1) for t in self.threads):
            raise ConfigError(f"threads={self.threads!r} must be integers >= 1 or None (all cores)")
        if self.sensitivity_mode not in ("only", "all-but"):
            raise ConfigError(f"sensitivity_mode={self.sensitivity_mode!r}; choose 'only' or 'all-but'")
        if self.sensitivity_variants is not None:
            object.__setattr__(self, "sensitivity_variants", tuple(self.sensitivity_variants))


@dataclass
class _Variant:
    name: str
    model: Model
    path: Path | None
    config: MethodConfig | None = None
    config_dict: dict[str, Any] | None = None
    plan: QuantPlan | None = None
    method: str | None = None
    warnings: list[str] = field(default_factory=list)


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
) -> Results:
    """Measure ``model`` and each of ``variants`` on ``data``; the float model is a variant too.

    ``variants`` maps a name to a :class:`QuantizedModel`, a :class:`Model` or a path of a
    quantized .onnx file (its sidecar JSON, when present, gives the config and plan); a plain
    sequence is named after the files or methods. ``metric`` is ``"auto"`` (accuracy with
    labels, else top-1 agreement), a built-in name, or ``fn(outputs, labels) -> float``.
    ``calib`` lets sensitivity re-quantize methods that need calibration. ``max_drop`` is
    recorded as the quality budget (a fraction of the float value; see :func:`quality_gate`).

    Raises :class:`DataMismatchError` when ``data`` does not fit the model,
    :class:`EmptyDatasetError` for no samples, :class:`ModelError` when a variant's outputs
    differ from the float model's. A variant quantized from a different float model
    (fingerprint mismatch) is measured with a warning.
    """
    opts = options or AnalysisOptions()
    float_model = load(model) if isinstance(model, str | os.PathLike) else model
    if not isinstance(float_model, Model):
        raise ModelError(f"analyze() takes a quantscope Model or a path, not {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise DataError(f"analyze() takes the evaluation data as a quantscope Dataset, not {type(data).__name__}")
    if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, int | float) or not 0 <= max_drop < 1):
        raise ConfigError(f"max_drop={max_drop!r} must be a fraction in [0, 1), e.g. 0.01 for 1 %")
    bound = data.bind(float_model.inputs)  # names, shapes, dtypes; fails before any work
    labels = bound.labels
    primary = resolve_metric(metric, has_labels=labels is not None, name=metric_name, higher_is_better=higher_is_better)
    items = _normalize(float_model, variants)
    for v in items[1:]:
        _check_outputs(float_model, v)
    n_samples = len(bound) if bound.num_samples is not None else None
    notes = list(notes)
    total = len(items)
    ref_outputs: list[np.ndarray] | None = None
    results: list[VariantResult] = []
    feeds = _latency_feeds(bound, opts)
    with tempfile.TemporaryDirectory(prefix="quantscope-analyze-") as tmp:
        for i, v in enumerate(items):
            step = _Stepper(progress, v.name, i, total)
            try:
                vr, outputs = _measure(v, float_model, bound, labels, primary, ref_outputs, feeds, opts, Path(tmp), step)
            except QuantscopeError as exc:
                if opts.strict or v.name == FLOAT_NAME:
                    raise
                notes.append(f"{v.name}: not measured: {exc}")
                logger.warning("variant %s not measured: %s", v.name, exc)
                continue
            if ref_outputs is None:
                ref_outputs = outputs
            results.append(vr)
    if opts.sensitivity > 0:
        results = _add_sensitivity(float_model, items, results, bound, calib, primary, opts, notes, progress)
    if progress is not None:
        progress("done", total, total)
    return Results(
        model=_model_info(float_model),
        data={"name": _data_name(data), "samples": n_samples, "labels": labels is not None},
        metric=primary.name,
        higher_is_better=primary.higher_is_better,
        variants=results,
        max_drop=max_drop,
        machine=machine_info(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=notes,
    )


def quality_gate(results: Results, max_drop: float | None = None) -> list[VariantResult]:
    """The quantized variants within the budget; :class:`QualityGateError` when there are none.

    The budget is ``max_drop`` (default: ``results.max_drop``) times the float model's value
    of the primary metric, in the metric's units (``max_drop`` itself when that value is 0).
    """
    budget = results.max_drop if max_drop is None else max_drop
    if budget is None:
        return [v for v in results.variants if v.kind != "float"]
    ref = results.reference
    if ref is None or results.metric not in ref.quality:
        raise QualityGateError(f"no float model result to compare against for metric {results.metric!r}")
    base = abs(ref.quality[results.metric])
    absolute = budget * base if base > 0 and math.isfinite(base) else budget
    ok = results.within_budget(absolute)
    if not ok:
        drops = ", ".join(
            f"{v.name} {d:+.4g}" for v in results.variants if v.kind != "float" and (d := results.drop(v)) is not None
        )
        raise QualityGateError(
            f"no quantized variant stays within the quality budget: {results.metric} may drop by at most "
            f"{budget:.2%} of the float value ({absolute:.4g}); drops: {drops or 'none measured'}. "
            "Try another method or calibrator (quantscope sweep), exclude the most sensitive layers, "
            "or relax --max-drop"
        )
    return ok


# --- variants ------------------------------------------------------------------------------


def _normalize(float_model: Model, variants: Mapping[str, VariantLike] | Sequence[VariantLike]) -> list[_Variant]:
    if isinstance(variants, Mapping):
        pairs = [(str(k), v) for k, v in variants.items()]
    elif isinstance(variants, str | os.PathLike | QuantizedModel | Model):
        raise ConfigError("analyze() takes a mapping {name: variant} or a list of variants, not one variant")
    else:
        pairs = [(None, v) for v in variants]
    out = [_Variant(FLOAT_NAME, float_model, _file(float_model), method=None)]
    used = {FLOAT_NAME}
    for name, item in pairs:
        v = _variant(name, item, float_model)
        if v.name in used:
            if name is not None:
                raise ConfigError(f"two variants are named {v.name!r} ({FLOAT_NAME!r} is the float model); rename one")
            k = 2
            while f"{v.name}-{k}" in used:
                k += 1
            v.name = f"{v.name}-{k}"
        used.add(v.name)
        out.append(v)
    return out


def _variant(name: str | None, item: VariantLike, float_model: Model) -> _Variant:
    if isinstance(item, QuantizedModel):
        v = _Variant(name or item.config.method, item.model, None, item.config, item.config.to_dict(), item.plan,
                     item.config.method)
        _check_fingerprint(v, item.source_fingerprint, float_model)
        return v
    if isinstance(item, str | os.PathLike):
        item = load(item)
    if not isinstance(item, Model):
        raise ConfigError(f"a variant must be a QuantizedModel, a Model or a path, not {type(item).__name__}")
    path = _file(item)
    v = _Variant(name or _name_from_path(path, float_model), item, path)
    v.method = item.ir.metadata_props.get("quantscope.method")
    if path is not None and sidecar_path(path).is_file():
        _read_sidecar(v, sidecar_path(path), float_model)
    return v


def _read_sidecar(v: _Variant, path: Path, float_model: Model) -> None:
    try:
        side = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        v.warnings.append(f"cannot read the sidecar {path.name}: {exc}")
        return
    cfg = side.get("config")
    if isinstance(cfg, dict):
        v.config_dict = cfg
        v.method = cfg.get("method", v.method)
        try:
            v.config = config_from_dict(cfg)
        except QuantscopeError as exc:
            v.warnings.append(f"the sidecar's config cannot be rebuilt ({exc}); sensitivity is not measured")
    if isinstance(side.get("plan"), dict):
        try:
            v.plan = QuantPlan.from_dict(side["plan"])
        except (KeyError, TypeError) as exc:
            v.warnings.append(f"the sidecar's plan cannot be read ({exc})")
    source = side.get("source") or {}
    _check_fingerprint(v, source.get("fingerprint"), float_model)


def _check_fingerprint(v: _Variant, source: str | None, float_model: Model) -> None:
    if source and float_model.fingerprint and source != float_model.fingerprint:
        msg = (
            f"{v.name} was quantized from a different float model (fingerprint {source[:19]}..., "
            f"this float model is {float_model.fingerprint[:19]}...); the comparison may be meaningless: "
            "pass the float model it was made from"
        )
        v.warnings.append(msg)
        logger.warning("%s", msg)


def _file(model: Model) -> Path | None:
    return model.path if model.path is not None and Path(model.path).is_file() else None


def _name_from_path(path: Path | None, float_model: Model) -> str:
    if path is None:
        return "variant"
    stem = path.stem
    base = float_model.path.stem if float_model.path is not None else None
    if base and stem.startswith(base + ".") and len(stem) > len(base) + 1:
        return stem[len(base) + 1:]
    return stem


def _check_outputs(float_model: Model, v: _Variant) -> None:
    f_out, q_out = float_model.outputs, v.model.outputs
    if len(f_out) != len(q_out):
        raise ModelError(
            f"{v.name} has {len(q_out)} output(s) but the float model has {len(f_out)}; "
            "compare a model only with variants of itself"
        )
    for a, b in zip(f_out, q_out, strict=True):
        if a.shape is None or b.shape is None:
            continue
        if len(a.shape) != len(b.shape) or any(
            isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a.shape, b.shape, strict=True)
        ):
            raise ModelError(
                f"{v.name}'s output {b.describe()} differs in shape from the float model's {a.describe()}; "
                "compare a model only with variants of itself"
            )


# --- measuring one variant ---------------------------------------------------------------------


class _Stepper:
    def __init__(self, progress: StepProgress | None, name: str, index: int, total: int) -> None:
        self.progress, self.name, self.index, self.total = progress, name, index, total

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress(f"{self.name}: {what}", self.index, self.total)


def _measure(
    v: _Variant,
    float_model: Model,
    data: Dataset,
    labels: np.ndarray | None,
    metric: Metric,
    ref_outputs: list[np.ndarray] | None,
    feeds: dict[int, dict[str, np.ndarray]],
    opts: AnalysisOptions,
    tmp: Path,
    step: _Stepper,
) -> tuple[VariantResult, list[np.ndarray]]:
    step("evaluating")
    outputs = predict(v.model, data, batch_size=opts.eval_batch_size)
    reference = outputs if ref_outputs is None else ref_outputs
    for a, b in zip(reference, outputs, strict=True):
        if a.shape != b.shape:
            raise ModelError(
                f"{v.name} returns an output of shape {b.shape} where the float model returns {a.shape}; "
                "compare a model only with variants of itself"
            )
    q = quality(reference, outputs, labels, metric)
    if metric.name not in q:
        raise DataError(f"metric {metric.name!r} cannot be computed on {v.name}'s outputs; choose another --metric")
    path = v.path or save(v.model, tmp / f"{_safe(v.name)}.onnx", value_info=False)
    size = path.stat().st_size + sum(f.stat().st_size for f in v.model.data_files if f.is_file())
    warnings = list(v.warnings)
    latency: list[LatencyResult] = []
    if opts.latency:
        step("latency")
        for batch, feed in feeds.items():
            for threads in opts.threads:
                lat = measure_latency(v.model, feed, threads=threads, warmup=opts.warmup,
                                      runs=opts.runs if batch == 1 else max(3, opts.runs // 3))
                latency.append(LatencyResult(batch=batch, threads=threads, median_ms=lat.median_ms,
                                             p90_ms=lat.p90_ms, runs=lat.runs))
    memory = None
    if opts.memory:
        step("peak memory")
        one = next(iter(data.batches(opts.memory_batch))).inputs
        memory = peak_memory(path, one, threads=1)
    energy = None
    if opts.energy:
        step("energy")
        energy = estimate_energy(v.model, feeds[min(feeds)])
    plan = None
    layers = []
    if v.name != FLOAT_NAME:
        step("plan")
        runtime_ops = optimized_op_types(v.model)
        plan = _plan_summary(v, runtime_ops)
        if plan is not None:
            warnings.extend(plan.warnings)
        if opts.layers:
            step("per-layer error")
            layers = layer_errors(float_model, v.model, data, plan=v.plan, samples=opts.layer_samples,
                                  seed=opts.seed)
    return VariantResult(
        name=v.name,
        kind="float" if v.name == FLOAT_NAME else "onnx",
        path=str(v.path) if v.path is not None else None,
        method=v.method,
        config=v.config_dict,
        size_bytes=int(size),
        param_bytes=parameter_bytes(v.model),
        quality=q,
        latency=latency,
        memory=memory,
        energy=energy,
        plan=plan,
        layers=layers,
        warnings=list(dict.fromkeys(warnings)),
    ), outputs


def parameter_bytes(model: Model) -> dict[str, int]:
    """Initializer bytes by NumPy-style dtype name (``float32``, ``int8``, ``uint4``, ...)."""
    out: dict[str, int] = {}
    for value in model.ir.graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue
        try:
            name = np.dtype(tensor.dtype.numpy()).name
        except (TypeError, ValueError, NotImplementedError):
            name = tensor.dtype.name.lower()
        out[name] = out.get(name, 0) + int(tensor.nbytes)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _latency_feeds(data: Dataset, opts: AnalysisOptions) -> dict[int, dict[str, np.ndarray]]:
    """One fixed batch per batch size (capped at the data's size), shared by every variant."""
    sizes = sorted(set(opts.batch_sizes))
    if not opts.latency:
        sizes = [1]
    out: dict[int, dict[str, np.ndarray]] = {}
    for b in sizes:
        batch = next(iter(data.batches(b)))
        out.setdefault(batch.size, {k: np.ascontiguousarray(a) for k, a in batch.inputs.items()})
    return out


def _plan_summary(v: _Variant, runtime_ops: dict[str, int]) -> PlanSummary | None:
    if v.plan is None:
        return PlanSummary(method=v.method or "unknown", quantized=0, fused=0, float=0, float_reasons={},
                           quantized_ops={}, runtime_ops=runtime_ops,
                           warnings=["no plan: the model has no quantscope sidecar JSON beside it"])
    s = v.plan.summary()
    return PlanSummary(
        method=v.plan.method, quantized=s["quantized"], fused=s["fused"], float=s["float"],
        float_reasons=s["float_reasons"], quantized_ops=s["quantized_by_op"], runtime_ops=runtime_ops,
        warnings=list(v.plan.warnings),
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "variant"


# --- sensitivity -------------------------------------------------------------------------------


def _add_sensitivity(
    float_model: Model,
    items: list[_Variant],
    results: list[VariantResult],
    data: Dataset,
    calib: Dataset | None,
    metric: Metric,
    opts: AnalysisOptions,
    notes: list[str],
    progress: StepProgress | None,
) -> list[VariantResult]:
    by_name = {v.name: v for v in items}
    measured = {r.name: r for r in results}
    if opts.sensitivity_variants is not None:
        unknown = [n for n in opts.sensitivity_variants if n not in by_name]
        if unknown:
            raise ConfigError(f"sensitivity_variants {unknown} are not variants; have {sorted(by_name)}")
        chosen = [n for n in opts.sensitivity_variants if n in measured]
    else:
        chosen = _auto_sensitivity_variant(items, results, metric, calib)
    out = list(results)
    for name in chosen:
        v = by_name[name]
        if v.config is None or v.plan is None:
            notes.append(f"sensitivity of {name} not measured: its config and plan are unknown (no sidecar JSON)")
            continue
        if v.config.needs_calibration and calib is None:
            notes.append(f"sensitivity of {name} not measured: {v.config.method} needs calibration data (--calib)")
            continue
        ranked = worst_nodes(measured[name].layers, [d.node for d in v.plan.quantized_nodes], float_model)
        nodes = candidates(v.plan, ranked, opts.sensitivity)
        if not nodes:
            continue
        cal = calib.take(opts.calib_samples, seed=opts.seed) if calib is not None else None

        def step(what: str, done: int, total: int, _name: str = name) -> None:
            if progress is not None:
                progress(f"{_name}: {what}", done, total)

        try:
            sens = layer_sensitivity(
                float_model, v.config, v.plan, data, metric=metric, calib=cal, nodes=nodes,
                mode=opts.sensitivity_mode, samples=opts.sensitivity_samples, seed=opts.seed, progress=step,
            )
        except QuantscopeError as exc:
            if opts.strict and opts.sensitivity_variants is not None:
                raise
            notes.append(f"sensitivity of {name} not measured: {exc}")
            logger.warning("sensitivity of %s not measured: %s", name, exc)
            continue
        out = [
            VariantResult(**{**_fields(r), "sensitivity": sens}) if r.name == name else r for r in out
        ]
    return out


def _auto_sensitivity_variant(
    items: list[_Variant], results: list[VariantResult], metric: Metric, calib: Dataset | None
) -> list[str]:
    """The measured, re-quantizable variant that loses the most quality (if any loses some)."""
    ref = next((r for r in results if r.kind == "float"), None)
    if ref is None or metric.name not in ref.quality:
        return []
    by_name = {v.name: v for v in items}
    best: tuple[float, str] | None = None
    for r in results:
        v = by_name[r.name]
        if r.kind == "float" or v.config is None or v.plan is None or metric.name not in r.quality:
            continue
        if v.config.needs_calibration and calib is None:
            continue
        drop = ref.quality[metric.name] - r.quality[metric.name]
        if not metric.higher_is_better:
            drop = -drop
        if drop > 0 and (best is None or drop > best[0]):
            best = (drop, r.name)
    return [best[1]] if best else []


def _fields(r: VariantResult) -> dict[str, Any]:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}


# --- context -----------------------------------------------------------------------------------


def _model_info(model: Model) -> dict[str, Any]:
    return {
        "name": model.path.stem if model.path is not None else (model.ir.graph.name or "model"),
        "path": str(model.path) if model.path is not None else None,
        "fingerprint": model.fingerprint,
        "inputs": [s.to_dict() for s in model.inputs],
        "outputs": [s.to_dict() for s in model.outputs],
        "opset": model.opset,
        "parameters": model.parameter_count(),
    }


def _data_name(data: Dataset) -> str:
    text = repr(data)
    return text[len("Dataset("):-1] if text.startswith("Dataset(") else text


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": [f for f in _CPU_FLAGS if f in flags],
        "int8_dot_in_int16": int16_saturation_risk(),
        "platform": platform.platform(),
        "versions": library_versions(),
    }
