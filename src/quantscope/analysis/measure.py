"""Measuring one variant: quality, size, latency, peak memory, energy, plan and per-layer error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantscope.analysis.energy import estimate_energy
from quantscope.analysis.evaluate import Evaluator, measure_latency
from quantscope.analysis.layers import layer_errors
from quantscope.analysis.memory import peak_memory
from quantscope.analysis.options import FLOAT_NAME, AnalysisOptions, StepProgress
from quantscope.analysis.params import parameter_bytes
from quantscope.analysis.quality import Metric, quality
from quantscope.analysis.results import LatencyResult, PlanSummary, VariantResult
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
) -> tuple[VariantResult, list[np.ndarray]]:
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
