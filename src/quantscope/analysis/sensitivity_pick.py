"""Sensitivity inside ``analyze``: which variants to measure it for, and attaching it to their results.

By default: the int8 variant the recommender would pick among the int8 variants (the one a user
is likely to deploy), else the variant that loses the most; ``sensitivity_variants`` names others.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from quantscope.analysis.budget import quality_drop
from quantscope.analysis.layers import worst_nodes
from quantscope.analysis.names import module_paths
from quantscope.analysis.options import AnalysisOptions, StepProgress
from quantscope.analysis.quality import Metric
from quantscope.analysis.recommend import recommend
from quantscope.analysis.results import Results, VariantResult
from quantscope.analysis.sensitivity import candidates, layer_sensitivity
from quantscope.analysis.variants import Variant
from quantscope.data import Dataset
from quantscope.errors import ConfigError, QuantscopeError
from quantscope.io import Model

logger = logging.getLogger(__name__)


def add_sensitivity(
    float_model: Model,
    items: list[Variant],
    results: list[VariantResult],
    data: Dataset,
    calib: Dataset | None,
    metric: Metric,
    opts: AnalysisOptions,
    notes: list[str],
    progress: StepProgress | None,
    max_drop: float | None = None,
    executor: Any = None,
) -> list[VariantResult]:
    """``results`` with the per-layer sensitivity of the chosen variants (``executor``: each
    node's run is a job there, see :func:`~quantscope.analysis.sensitivity.layer_sensitivity`)."""
    by_name = {v.name: v for v in items}
    measured = {r.name: r for r in results}
    if opts.sensitivity_variants is not None:
        unknown = [n for n in opts.sensitivity_variants if n not in by_name]
        if unknown:
            raise ConfigError(f"sensitivity_variants {unknown} are not variants; have {sorted(by_name)}")
        chosen = [n for n in opts.sensitivity_variants if n in measured]
    else:
        chosen = auto_sensitivity_variant(items, results, metric, calib, max_drop)
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
                executor=executor,
            )
        except QuantscopeError as exc:
            if opts.strict and opts.sensitivity_variants is not None:
                raise
            notes.append(f"sensitivity of {name} not measured: {exc}")
            logger.warning("sensitivity of %s not measured: %s", name, exc)
            continue
        paths = module_paths(float_model)
        sens = [dataclasses.replace(e, module=paths.get(e.node, "")) for e in sens]
        out = [
            dataclasses.replace(r, sensitivity=sens) if r.name == name else r for r in out
        ]
    return out


INT8_METHODS = frozenset({"static-int8", "dynamic-int8", "weight-int8"})


def auto_sensitivity_variant(
    items: list[Variant], results: list[VariantResult], metric: Metric, calib: Dataset | None,
    max_drop: float | None = None,
) -> list[str]:
    """The int8 variant the recommender picks among the int8 variants (the one a user deploys, so its
    sensitive layers matter most); without int8 variants, the re-quantizable variant that loses most."""
    ref = next((r for r in results if r.kind == "float"), None)
    if ref is None or metric.name not in ref.quality:
        return []
    by_name = {v.name: v for v in items}

    def usable(r: VariantResult) -> bool:
        v = by_name[r.name]
        return (r.kind != "float" and v.config is not None and v.plan is not None and metric.name in r.quality
                and not (v.config.needs_calibration and calib is None))

    int8 = [r for r in results if usable(r) and r.method in INT8_METHODS]
    if int8:
        view = Results(model={}, data={}, metric=metric.name, higher_is_better=metric.higher_is_better,
                       variants=[ref, *int8], max_drop=max_drop)
        pick = recommend(view) or (recommend(dataclasses.replace(view, max_drop=None)) if max_drop else None)
        if pick is not None:
            return [pick.name]
    best: tuple[float, str] | None = None
    for r in results:
        if not usable(r):
            continue
        drop = quality_drop(ref.quality[metric.name], r.quality[metric.name], metric.higher_is_better)
        if drop > 0 and (best is None or drop > best[0]):
            best = (drop, r.name)
    return [best[1]] if best else []
