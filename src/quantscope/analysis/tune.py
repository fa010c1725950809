"""``tune``: the smallest (or fastest) configuration whose quality stays inside a budget, and why.

1. Sweep the candidate methods (static-int8 with every calibrator, dynamic-int8, weight-int4,
   weight-int8, float16, cluster-4 and cluster-8; ternary and binary never meet a real budget and
   are skipped)
   and measure quality, size and the batch-1, one-thread latency (paired with float).
2. If some candidates are within the budget, pick one with the recommender
   (:mod:`quantscope.analysis.recommend`: by the objective, preferring variants not slower than
   float), the same rule the report uses to star a variant.
3. Otherwise take the most promising int8 candidate (the smallest drop among those that shrink
   the model) and keep its most sensitive nodes in float, one more at a time, re-measuring after
   each, until the budget is met or ``max_float_nodes`` are float. Nodes are ranked by how much
   quality each buys back when it alone is left in float (all-but sensitivity), measured for the
   nodes whose own per-layer error is largest (the error of the candidate as its config makes it,
   every algorithm it enables applied). Once the budget is met with two or more float nodes, each is
   tried back in int8 (:mod:`quantscope.analysis.tune_prune`) and stays float only when the
   variant needs it to meet the budget; ``TuneResult.exclusions`` says what each one buys back.
4. If nothing meets the budget, :class:`QualityGateError` names the closest configuration.

Every candidate measured, the float-node steps included, is in ``TuneResult.results``; the
``reasons`` are plain sentences built from those numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from quantscope.analysis import sweep_workers
from quantscope.analysis.budget import (
    check_max_drop,
    fits,
    require_allowed_drop,
    variants_within_budget,
)
from quantscope.analysis.compare import AnalysisOptions, StepProgress, analyze
from quantscope.analysis.evaldata import prepare_eval
from quantscope.analysis.layers import layer_errors, worst_nodes
from quantscope.analysis.quality import Metric, MetricFn
from quantscope.analysis.recommend import (
    OBJECTIVES,
    Objective,
    Recommendation,
    drop_key,
    latency_ms,
    recommend,
    speed_verdict,
)
from quantscope.analysis.results import Results, VariantResult
from quantscope.analysis.sensitivity import candidates, layer_sensitivity, with_excluded
from quantscope.analysis.sweep import all_failed_error, sweep, sweep_configs
from quantscope.analysis.tune_prune import FloatNode, prune
from quantscope.config import MethodConfig
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ConfigError, QualityGateError, QuantscopeError
from quantscope.execution.executors import executor_from_options
from quantscope.execution.jobs import quantize_many
from quantscope.io import Model
from quantscope.quantization import QuantizedModel, quantize

logger = logging.getLogger(__name__)

NEVER_WIN = frozenset({"ternary", "binary"})
INT8_METHODS = ("static-int8", "dynamic-int8", "weight-int8")
DEFAULT_CANDIDATES = (
    "static-int8/minmax", "static-int8/percentile", "static-int8/entropy", "static-int8/mse",
    "dynamic-int8", "weight-int4", "weight-int8", "float16", "cluster-4", "cluster-8",
)


@dataclass(frozen=True, kw_only=True)
class TuneResult:
    """The chosen configuration, the model it makes, every candidate measured, and why."""

    name: str  # the chosen variant's name in ``results``
    config: MethodConfig  # its ``exclude.names`` holds the nodes kept in float, if any
    quantized: QuantizedModel
    results: Results  # every candidate measured (max_drop set to the budget)
    reasons: list[str]
    float_nodes: tuple[str, ...] = ()  # nodes kept in float by the greedy step, in the order added
    exclusions: tuple[FloatNode, ...] = ()  # every node the greedy step made float: what it buys, if it stayed

    def _repr_html_(self) -> str:
        """The choice, its reasons and the candidates' report, inline in a notebook."""
        from quantscope.reporting.notebook import tune_html

        return tune_html(self)


def tune_configs(methods: Sequence[str] | None = None, *, seed: int = 0) -> dict[str, MethodConfig]:
    """The named candidate configs: :data:`DEFAULT_CANDIDATES`, or every sweep config of ``methods``.

    Ternary and binary are left out of the default set (they lose too much to meet a budget);
    naming them in ``methods`` includes them.
    """
    if methods is None:
        everything = sweep_configs(None, seed=seed)
        return {name: everything[name] for name in DEFAULT_CANDIDATES if name in everything}
    return sweep_configs(methods, seed=seed)


def _for_objective(configs: dict[str, MethodConfig], objective: str) -> dict[str, MethodConfig]:
    """Candidates that plan for tune's own objective: for ``size``, static-int8 writes every region int8
    (no speed search: tune measures each candidate itself, and the choice stays deterministic)."""
    wanted = "size" if objective == "size" else "speed"
    return {name: dataclasses.replace(c, objective=wanted) if any(f.name == "objective" for f in dataclasses.fields(c))
            else c for name, c in configs.items()}


def tune(
    model: Model,
    calib: Dataset | None,
    data: Dataset,
    *,
    max_drop: float,
    objective: Objective = "size",
    methods: Sequence[str] | dict[str, MethodConfig] | None = None,
    metric: str | MetricFn | Metric = "auto",
    options: AnalysisOptions | None = None,
    max_float_nodes: int = 8,
    seed: int = 0,
    progress: StepProgress | None = None,
    output: str | Sequence[str] | None = None,
    executor: Any = None,
) -> TuneResult:
    """The smallest (``objective="size"``) or fastest (``"latency"``) configuration within ``max_drop``.

    ``max_drop`` is a fraction of the float model's value of the primary metric (0.01 = 1 %).
    ``methods`` limits the candidates (names as in :func:`tune_configs`, or named configs);
    ``options`` overrides how much is measured (default: quality and size, plus batch-1
    one-thread latency paired with float; no memory, energy or sweep sensitivity).
    Deterministic for a seed. Raises :class:`QualityGateError` when no candidate, even with up
    to ``max_float_nodes`` nodes kept in float, stays within the budget. ``output`` names the
    model output(s) to measure (see :func:`quantscope.analysis.compare.analyze`).

    ``executor`` (a ``distributed.Client`` or any ``concurrent.futures.Executor``, see
    :mod:`quantscope.execution`): the candidates are swept there (:func:`sweep`), the node
    rankings run there, and the float-node steps are quantized there ahead of time, then
    measured in order with the same early stop. None: everything runs in this process.
    """
    data, calib = as_dataset(data, "evaluation data"), None if calib is None else as_dataset(calib, "calibration data")
    if max_drop is None:
        raise ConfigError("max_drop=None: tune needs a quality budget, a fraction in [0, 1) such as 0.01 for 1 %")
    check_max_drop(max_drop)
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r}; choose 'size' or 'latency'")
    if isinstance(max_float_nodes, bool) or not isinstance(max_float_nodes, int) or max_float_nodes < 0:
        raise ConfigError(f"max_float_nodes={max_float_nodes!r} must be an integer >= 0")
    configs = methods if isinstance(methods, dict) else _for_objective(tune_configs(methods, seed=seed), objective)
    opts = _options(options, objective, seed)
    if not isinstance(model, Model):
        raise ConfigError(f"tune() takes a quantscope Model (from quantscope.load), not {type(model).__name__}")
    setup = prepare_eval(model, data, metric, output=output)  # data, NaN/inf, labels: before any work
    measured, primary = setup.outputs, setup.metric
    if executor is not None:
        executor = executor_from_options(executor=executor)
    results = sweep(model, calib, data, methods=configs, metric=primary, max_drop=max_drop, options=opts,
                    seed=seed, progress=progress, output=measured, executor=executor)
    results = dataclasses.replace(results, objective=objective)
    allowed = allowed_drop(results)
    reasons = [_budget_sentence(results, allowed)]
    measured = [v for v in results.variants if v.kind != "float" and results.drop(v) is not None]
    if not any(v.kind != "float" for v in results.variants):  # every candidate failed: not a quality verdict
        raise all_failed_error(results.notes)
    if not measured:
        raise QualityGateError(
            f"no candidate could be quantized and measured on this model ({'; '.join(results.notes) or 'no notes'}); "
            "check the model with quantscope inspect"
        )
    inside = variants_within_budget(results)
    reasons += [_failed_sentence(results, v, allowed) for v in measured if v not in inside]
    recommended = recommend(results)
    if recommended is not None:
        pick = results.variant(recommended.name)
        reasons.append(_chosen_sentence(results, pick, recommended))
        config = configs[pick.name]
        q = quantize(model, config, calib if config.needs_calibration else None)
        return TuneResult(name=pick.name, config=config, quantized=q, results=results, reasons=reasons)
    base = _most_promising(results, measured)
    config = configs[base.name]
    if config.needs_calibration and calib is None:  # sweep skipped it; cannot happen when it was measured
        raise ConfigError(f"{base.name} needs calibration data")
    reasons.append(
        f"No candidate met the budget; {base.name} shrinks the model and loses the least "
        f"({_fmt(results.drop(base))}), so its most sensitive nodes are kept in float one at a time."
    )
    return _greedy(model, calib, data, results, base, config, allowed, reasons, primary, opts,
                   max_float_nodes, progress, executor)


def allowed_drop(results: Results) -> float:
    """The budget in metric units (:func:`quantscope.analysis.budget.require_allowed_drop`)."""
    return require_allowed_drop(results)


def _options(options: AnalysisOptions | None, objective: Objective, seed: int) -> AnalysisOptions:
    if options is not None:
        return dataclasses.replace(options, seed=seed, strict=False, sensitivity=0)
    # latency is measured for the size objective too: a size win of a few percent must not beat a
    # clear speed win (the recommender weighs both)
    return AnalysisOptions(
        latency=True, batch_sizes=(1,), threads=(1,), warmup=3, runs=15, memory=False,
        energy=False, layers=True, sensitivity=0, seed=seed, strict=False,
    )


# --- choosing -------------------------------------------------------------------------------------


def _latency(v: VariantResult) -> float:
    return latency_ms(v, 1) or math.inf


def _most_promising(results: Results, measured: Sequence[VariantResult]) -> VariantResult:
    """The compressing int8 candidate with the smallest drop (else any compressing one, else any)."""
    ref = results.reference
    float_size = ref.size_bytes if ref is not None else math.inf
    shrinking = [v for v in measured if v.size_bytes < float_size and v.config is not None]
    int8 = [v for v in shrinking if v.method in INT8_METHODS]
    pool = int8 or shrinking or list(measured)
    return min(pool, key=lambda v: (drop_key(results.drop(v)), v.size_bytes, v.name))


# --- keeping nodes in float ---------------------------------------------------------------------------


def _greedy(
    model: Model,
    calib: Dataset | None,
    data: Dataset,
    results: Results,
    base: VariantResult,
    config: MethodConfig,
    allowed: float,
    reasons: list[str],
    metric: Metric,
    opts: AnalysisOptions,
    max_float_nodes: int,
    progress: StepProgress | None,
    executor: Any = None,
) -> TuneResult:
    cal = calib if config.needs_calibration else None
    full = quantize(model, config, cal)
    order = _rank_nodes(model, full, base, data, cal, metric, opts, max_float_nodes, progress, executor)
    trials = _trials(executor, model, config, cal, order[:max_float_nodes])
    variants = list(results.variants)
    best: tuple[float, VariantResult] = (drop_key(results.drop(base)), base)
    previous = results.drop(base)
    kept: list[str] = []
    step_gains: list[float | None] = []

    def measure(name: str, q: QuantizedModel) -> VariantResult:
        here = opts if executor is None else dataclasses.replace(opts, latency=False)
        one = analyze(model, {name: q}, data, metric=metric, max_drop=results.max_drop, calib=calib,
                      options=here, output=results.outputs or None)
        if executor is not None and opts.latency:
            one = sweep_workers.timed(executor, one, model, {name: q}, data, opts, None, names=(name,))
        return one.variant(name)

    def build(nodes: Sequence[str]) -> tuple[MethodConfig, QuantizedModel]:
        cfg = with_excluded(config, nodes)
        return cfg, quantize(model, cfg, cal)

    for k, node in enumerate(order[:max_float_nodes], start=1):
        if progress is not None:
            progress(f"keeping {node} in float", k - 1, min(len(order), max_float_nodes))
        kept.append(node)
        cfg, q = next(trials)
        if isinstance(q, QuantscopeError):  # e.g. nothing left to quantize
            exc = q
            kept.pop()
            reasons.append(f"Keeping {node} in float as well leaves nothing to gain: {exc}")
            logger.info("tune: stopped adding float nodes at %s: %s", node, exc)
            break
        name = f"{base.name}+{k}float"
        vr = measure(name, q)
        variants.append(vr)
        merged = dataclasses.replace(results, variants=variants)
        drop = merged.drop(vr)
        reasons.append(
            f"Keeping {node} ({_op(full, node)}) in float took the drop from {_fmt(previous)} to {_fmt(drop)} "
            f"({_bought(previous, drop)})."
        )
        step_gains.append(None if previous is None or drop is None else previous - drop)
        previous = drop
        if drop_key(drop) < best[0]:
            best = (drop_key(drop), vr)
        if fits(drop, allowed):
            exclusions = (FloatNode(node, step_gains[0], True),) if k == 1 else ()
            if k >= 2:
                pruned = prune(results=results, base=base, nodes=kept, step_gains=step_gains,
                               chosen=(name, cfg, q, vr), allowed=allowed, build=build, measure=measure)
                variants.extend(pruned.measured)
                merged = dataclasses.replace(results, variants=variants)
                reasons.extend(pruned.reasons)
                kept, exclusions = list(pruned.nodes), pruned.float_nodes
                name, cfg, q, vr = pruned.name, pruned.config, pruned.quantized, pruned.variant
                drop = merged.drop(vr)
            ref = merged.reference
            reasons.append(
                f"Chose {name}: {base.name} with {len(kept)} node(s) kept in float ({', '.join(kept)}), drop {_fmt(drop)} "
                f"within the budget {_fmt(allowed)}, {_size(vr.size_bytes)} on disk"
                + (f" ({ref.size_bytes / vr.size_bytes:.2f}x smaller than float)" if ref and vr.size_bytes else "")
                + "."
            )
            if progress is not None:
                progress("tuned", k, k)
            return TuneResult(name=name, config=cfg, quantized=q, results=merged, reasons=reasons,
                              float_nodes=tuple(kept), exclusions=exclusions)
    final = dataclasses.replace(results, variants=variants)
    closest = min((v for v in variants if v.kind != "float"), key=lambda v: drop_key(final.drop(v)))
    err = QualityGateError(
        f"no configuration stays within the quality budget: {final.metric} may drop by at most "
        f"{final.max_drop:.2%} of the float value ({_fmt(allowed)}); the closest is {closest.name} with a drop of "
        f"{_fmt(final.drop(closest))} (after keeping up to {len(kept)} node(s) of {base.name} in float). "
        "Relax --max-drop, allow more float nodes, or try other methods"
    )
    err.results = final  # type: ignore[attr-defined]  # lets the CLI still write the report
    err.reasons = reasons  # type: ignore[attr-defined]
    raise err


def _rank_nodes(
    model: Model,
    full: QuantizedModel,
    base: VariantResult,
    data: Dataset,
    calib: Dataset | None,
    metric: Metric,
    opts: AnalysisOptions,
    max_float_nodes: int,
    progress: StepProgress | None,
    executor: Any = None,
) -> list[str]:
    """Quantized nodes, the one whose float version buys back the most quality first.

    The nodes adding the most per-layer error are measured (``2 * max_float_nodes`` of them, at
    least 8) with all-but sensitivity; nodes that buy back nothing follow in per-layer-error order.
    """
    plan = full.plan
    # the per-layer error of the candidate as its config makes it (every algorithm it enables applied)
    errors = base.layers or layer_errors(model, full.model, data, plan=plan, samples=opts.layer_samples,
                                         seed=opts.seed)
    ranked = worst_nodes(errors, [d.node for d in plan.quantized_nodes], model)
    nodes = candidates(plan, ranked, max(2 * max_float_nodes, 8))
    if not nodes:
        return []
    sens = layer_sensitivity(
        model, full.config, plan, data, metric=metric, calib=calib, nodes=nodes, mode="all-but", full=full.model,
        samples=opts.sensitivity_samples, seed=opts.seed, progress=progress, executor=executor,
    )
    sign = 1.0 if metric.higher_is_better else -1.0
    gain = {s.node: sign * s.delta for s in sens}
    helpful = sorted((n for n in nodes if gain.get(n, 0.0) > 0), key=lambda n: (-gain[n], nodes.index(n)))
    return helpful + [n for n in nodes if n not in helpful]


def _trials(
    executor: Any, model: Model, config: MethodConfig, calib: Dataset | None, nodes: Sequence[str]
) -> Iterator[tuple[MethodConfig, QuantizedModel | QuantscopeError]]:
    """``config`` with the first k of ``nodes`` kept in float, quantized, for k = 1, 2, ...

    In this process: one at a time, as they are asked for. On an executor: all at once (the
    steps after an early stop are wasted, but none waits for the one before). A method's own
    error is yielded, not raised (the caller stops there); any other failure is raised.
    """
    configs = {f"{k} float": with_excluded(config, nodes[:k]) for k in range(1, len(nodes) + 1)}
    if executor is None:
        for cfg in configs.values():
            try:
                yield cfg, quantize(model, cfg, calib)
            except QuantscopeError as exc:
                yield cfg, exc
        return
    done = quantize_many(executor, model, configs, calib)
    for key, cfg in configs.items():
        result = done[key]
        if result.ok:
            yield cfg, result.value
        elif isinstance(result.exception, QuantscopeError):
            yield cfg, result.exception
        else:
            raise result.exception or QuantscopeError(f"quantizing with {key} node(s) failed: {result.error}")


def _op(q: QuantizedModel, node: str) -> str:
    return next((d.op_type for d in q.plan.decisions if d.node == node), "node")


# --- sentences ----------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.4g}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _bought(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "not measurable"
    gain = before - after
    return f"bought back {gain:.4g}" if gain > 0 else f"bought back nothing ({gain:+.4g})"


def _budget_sentence(results: Results, allowed: float) -> str:
    ref = results.reference
    value = ref.quality[results.metric] if ref is not None else float("nan")
    return (
        f"Budget: {results.metric} may drop by at most {results.max_drop:.2%} of the float model's "
        f"{value:.4g}, i.e. {_fmt(allowed)}."
    )


def _failed_sentence(results: Results, v: VariantResult, allowed: float) -> str:
    drop = results.drop(v)
    return f"{v.name} misses the budget: drop {_fmt(drop)}, {_fmt(drop_key(drop) - allowed)} over."


def _chosen_sentence(results: Results, pick: VariantResult, rec: Recommendation) -> str:
    ref = results.reference
    facts = [f"drop {_fmt(results.drop(pick))}", f"{_size(pick.size_bytes)} on disk"]
    if ref is not None and pick.size_bytes:
        facts[-1] += f" ({ref.size_bytes / pick.size_bytes:.2f}x smaller than float's {_size(ref.size_bytes)})"
    if math.isfinite(_latency(pick)):
        facts.append(f"{_latency(pick):.3g} ms at batch 1, 1 thread ({speed_verdict(results, pick)} against float)")
    text = f"Chose {pick.name} ({rec.reason}): {', '.join(facts)}"
    return text + (f"; runner-up: {rec.runner_up_reason}." if rec.runner_up_reason else "; no other candidate met the budget.")
