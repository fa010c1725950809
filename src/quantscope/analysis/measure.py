"""Measuring one variant: quality, size, latency, peak memory, energy, plan and per-layer error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from quantscope.analysis.energy import estimate_energy
from quantscope.analysis.evaldata import require_labels_fit
from quantscope.analysis.evaluate import Evaluator, measure_latency, measure_paired_latency
from quantscope.analysis.layers import layer_errors
from quantscope.analysis.memory import peak_memory
from quantscope.analysis.names import module_paths
from quantscope.analysis.options import FLOAT_NAME, AnalysisOptions, StepProgress
from quantscope.analysis.params import parameter_bytes
from quantscope.analysis.quality import Metric, quality, quality_interval
from quantscope.analysis.results import LatencyResult, PlanSummary, VariantResult
from quantscope.analysis.stats import NOISY_SPREAD, speed_verdict
from quantscope.analysis.variants import Variant
from quantscope.data import Dataset
from quantscope.errors import DataError, ModelError
from quantscope.io import Model, save
from quantscope.runtime import optimized_op_types


class Stepper:
    def __init__(self, progress: StepProgress | None, name: str, index: int, total: int) -> None:
        self.progress, self.name, self.index, self.total = progress, name, index, total

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress(f"{self.name}: {what}", self.index, self.total)


def measure_variant(
    v: Variant,
    float_model: Model,
    data: Dataset,
    labels: np.ndarray | None,
    metric: Metric,
    ref_outputs: list[np.ndarray] | None,
    feeds: dict[int, dict[str, np.ndarray]],
    opts: AnalysisOptions,
    tmp: Path,
    step: Stepper,
    extra_outputs: dict[str, int] | None = None,
) -> tuple[VariantResult, list[np.ndarray]]:
    """Measure one variant; quality on ``metric.output``, plus ``name[output]`` keys for ``extra_outputs``."""
    step("evaluating")
    outputs = Evaluator(v.model, batch_size=opts.eval_batch_size).predict(data)
    reference = outputs if ref_outputs is None else ref_outputs
    for a, b in zip(reference, outputs, strict=True):
        if a.shape != b.shape:
            raise ModelError(
                f"{v.name} returns an output of shape {b.shape} where the float model returns {a.shape}; "
                "compare a model only with variants of itself"
            )
    q = quality(reference, outputs, labels, metric)
    if metric.name not in q:
        require_labels_fit(labels, np.asarray(outputs[metric.output]), metric, v.name)
        raise DataError(
            f"metric {metric.name!r} cannot be computed on {v.name}'s output {metric.output}; "
            "choose another --metric or another --output"
        )
    interval = quality_interval(reference, outputs, labels, metric, q, seed=opts.seed)
    for out_name, index in (extra_outputs or {}).items():
        q.update({f"{k}[{out_name}]": x for k, x in quality(reference, outputs, labels, output=index).items()})
    path = v.path or save(v.model, tmp / f"{_safe(v.name)}.onnx", value_info=False)
    size = path.stat().st_size + sum(f.stat().st_size for f in v.model.data_files if f.is_file())
    warnings = list(v.warnings)
    latency: list[LatencyResult] = []
    if opts.latency:
        step("latency")
        latency = paired_latencies(v, float_model, feeds, opts)
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
            paths = module_paths(float_model)
            layers = [dataclasses.replace(e, module=paths.get(e.node, "")) for e in layers]
    return VariantResult(
        name=v.name,
        kind="float" if v.name == FLOAT_NAME else "onnx",
        path=str(v.path) if v.path is not None else None,
        method=v.method,
        config=v.config_dict,
        size_bytes=int(size),
        param_bytes=parameter_bytes(v.model),
        quality=q,
        quality_interval=interval,
        latency=latency,
        memory=memory,
        energy=energy,
        plan=plan,
        layers=layers,
        warnings=list(dict.fromkeys(warnings)),
    ), outputs



def paired_latencies(
    v: Variant, float_model: Model, feeds: dict[int, dict[str, np.ndarray]], opts: AnalysisOptions
) -> list[LatencyResult]:
    """Latency per batch and thread count; a quantized variant interleaved with the float model."""
    out: list[LatencyResult] = []
    for batch, feed in feeds.items():
        runs = opts.runs if batch == 1 else max(3, opts.runs // 3)
        for threads in opts.threads:
            if v.name == FLOAT_NAME:
                lat = measure_latency(v.model, feed, threads=threads, warmup=opts.warmup, runs=runs)
                out.append(LatencyResult(batch=batch, threads=threads, median_ms=lat.median_ms, p90_ms=lat.p90_ms,
                                         runs=lat.runs))
                continue
            paired = measure_paired_latency(float_model, v.model, feed, threads=threads, warmup=opts.warmup,
                                            runs=max(runs, 6), seed=opts.seed)
            lat = paired.variant
            out.append(LatencyResult(batch=batch, threads=threads, median_ms=lat.median_ms, p90_ms=lat.p90_ms,
                                     runs=lat.runs, speed=paired.speed, speed_low=paired.low,
                                     speed_high=paired.high))
    return out


def noise_notes(variants: list[VariantResult]) -> list[str]:
    """Notes for timings too noisy to tell a variant's speed from float's (the interval is too wide)."""
    noisy = sorted({
        f"{v.name} (batch {t.batch}, {t.threads or 'all'} thread(s))" for v in variants for t in v.latency
        if t.speed_low is not None and t.speed_high is not None
        and speed_verdict(t.speed_low, t.speed_high, t.speed) == "noisy"
    })
    if not noisy:
        return []
    return [
        "the machine was too noisy to tell the speed of " + ", ".join(noisy[:6]) + (" and others" if len(noisy) > 6
                                                                                    else "")
        + f" from float's (95 % interval wider than {NOISY_SPREAD}x): treat them as the same speed; re-run on a "
        "quieter machine or with more runs to tell"
    ]


def latency_feeds(data: Dataset, opts: AnalysisOptions) -> dict[int, dict[str, np.ndarray]]:
    """One fixed batch per batch size (capped at the data's size), shared by every variant."""
    sizes = sorted(set(opts.batch_sizes))
    if not opts.latency:
        sizes = [1]
    out: dict[int, dict[str, np.ndarray]] = {}
    for b in sizes:
        batch = next(iter(data.batches(b)))
        out.setdefault(batch.size, {k: np.ascontiguousarray(a) for k, a in batch.inputs.items()})
    return out


def _plan_summary(v: Variant, runtime_ops: dict[str, int]) -> PlanSummary | None:
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
