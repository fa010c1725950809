"""Shared by every renderer: number formats, the quality budget, the best variant, Pareto fronts.

The budget and the recommended variant come from :mod:`quantscope.analysis.budget` and
:mod:`quantscope.analysis.recommend`, the rules ``tune`` and the quality gate use.

Pure functions over :class:`~quantscope.analysis.results.Results`; no rendering library here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from quantscope.analysis.budget import allowed_drop, variants_within_budget
from quantscope.analysis.recommend import latency_ms as latency_ms  # used by every renderer
from quantscope.analysis.recommend import recommend, speed, speed_verdict
from quantscope.analysis.results import EnergyResult, LayerError, Results, VariantResult

# metrics in [0, 1] shown as percentages, their drops in percentage points
FRACTION_METRICS = frozenset({"accuracy", "top1", "top5", "agreement", "f1", "precision", "recall"})


def is_fraction(metric: str) -> bool:
    return metric in FRACTION_METRICS or metric.startswith("top")


def fmt_quality(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if is_fraction(metric):
        return f"{value:.2%}"
    if metric.endswith("_db"):
        return f"{value:.1f} dB"
    return f"{value:.4g}"


def fmt_drop(metric: str, drop: float | None, higher_is_better: bool = True) -> str:
    """A quality drop (positive = worse) shown as the change of the metric's value: ``-0.40 pp``.

    For a lower-is-better metric a drop is a rise of the value, so it shows with a ``+``.
    """
    if drop is None:
        return "-"
    change = (0.0 - drop) if higher_is_better else (drop + 0.0)  # no "-0.00"
    if not math.isfinite(change):
        return str(change)
    if is_fraction(metric):
        return f"{change * 100:+.2f} pp"
    return f"{change:+.4g}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


def fmt_num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} ms" if value < 100 else f"{value:,.0f} ms"


def fmt_sqnr(value: float) -> str:
    return f"{value:.1f} dB" if math.isfinite(value) else ("exact" if value > 0 else str(value))


def drop_empty_columns(
    headers: Sequence[str], rows: Sequence[Sequence[object]], keep: int = 2
) -> tuple[list[str], list[list[object]]]:
    """Remove the columns (after the first ``keep``) in which nothing was measured ("-" or "")."""
    cols = [i for i in range(len(headers))
            if i < keep or any(str(r[i]) not in ("-", "") for r in rows)]
    return [headers[i] for i in cols], [[r[i] for i in cols] for r in rows]


# --- what was measured --------------------------------------------------------------------


def large_batch(results: Results, threads: int | None = 1) -> int | None:
    """The largest batch any variant was timed at (besides 1) with ``threads``."""
    sizes = {lat.batch for v in results.variants for lat in v.latency if lat.threads == threads}
    sizes.discard(1)
    return max(sizes) if sizes else None


def quality(results: Results, v: VariantResult) -> float | None:
    return v.quality.get(results.metric)


def size_ratio(results: Results, v: VariantResult) -> float | None:
    """How many times smaller than the float model on disk."""
    ref = results.reference
    if ref is None or v.size_bytes <= 0:
        return None
    return ref.size_bytes / v.size_bytes


def budget(results: Results) -> float | None:
    """The allowed drop in metric units (:func:`quantscope.analysis.budget.allowed_drop`)."""
    return allowed_drop(results)


def within_budget(results: Results) -> set[str]:
    """Names of the variants within the budget (:mod:`quantscope.analysis.budget`)."""
    return {v.name for v in variants_within_budget(results)}


def best_variant(results: Results) -> tuple[str, str] | None:
    """The variant to recommend and why (:func:`quantscope.analysis.recommend.recommend`)."""
    pick = recommend(results)
    return None if pick is None else (pick.name, pick.reason)


def speed_cell(results: Results, v: VariantResult) -> str:
    """Speed against float at batch 1, 1 thread, as the table shows it: a slower variant is marked ▼."""
    if v.kind == "float":
        return "1×"
    s = speed(results, v)
    if s is None:
        return "-"
    verdict = speed_verdict(results, v)
    lat = next((t for t in v.latency if t.batch == 1 and t.threads == 1), None)
    if lat is None or lat.speed is None:  # not timed: codebook variants run float arithmetic
        return "same as float (float arithmetic)" if verdict == "same" else f"{s[0]:.2f}×"
    text = f"{s[0]:.2f}× [{s[1]:.2f}–{s[2]:.2f}]"
    return {"slower": f"▼ {text} slower", "same": f"{text} same", "noisy": f"{text} too noisy to tell"}.get(
        verdict, text)


def speed_sentence(results: Results, v: VariantResult) -> str:
    s = speed(results, v)
    verdict = speed_verdict(results, v)
    if s is None:
        return ""
    interval = f" (95 % interval {s[1]:.2f}–{s[2]:.2f}×)" if s[1] != s[2] else ""
    return {
        "same": f"the same speed as float at batch 1, 1 thread{interval}",
        "noisy": f"no measurable speed difference at batch 1, 1 thread: the machine was too noisy to tell{interval}",
        "slower": f"{s[0]:.2f}× the float speed at batch 1, 1 thread: slower than float{interval}",
    }.get(verdict, f"{s[0]:.2f}× the float speed at batch 1, 1 thread{interval}")


def notes_and_warnings(results: Results) -> list[str]:
    """The run's notes, then every variant's warnings (its plan's included), each text once.

    A warning several variants share is listed once, with their names.
    """
    by_text: dict[str, list[str]] = {}
    for v in results.variants:
        texts = [*v.warnings, *(v.plan.warnings if v.plan is not None else [])]
        for w in dict.fromkeys(texts):
            by_text.setdefault(w, []).append(v.name)
    notes = list(dict.fromkeys(results.notes))
    return notes + [f"{', '.join(names)}: {w}" for w, names in by_text.items()]


def timing_setting(results: Results) -> str:
    """Which machine, CPU features, ONNX Runtime version and thread counts the timings come from."""
    from quantscope.execution.machine import where_timed

    m = results.machine
    if any(v.measured_on for v in results.variants):  # timed on workers: say which, and what compares
        return ("Latency is paired with float (interleaved rounds, in one process per variant) and shown with "
                f"its 95 % interval. {where_timed(results.variants)}")
    if not m:
        return ""
    threads = m.get("threads")
    thread_text = ", ".join(f"{t} thread(s)" if t != "all" else f"all {m.get('cores', '?')} cores"
                            for t in threads) if threads else "as configured"
    flags = ", ".join(m.get("flags") or []) or "none detected"
    versions = m.get("versions") or {}
    return (f"Timings from {m.get('cpu', 'an unknown CPU')} ({m.get('cores', '?')} cores; CPU features: {flags}), "
            f"ONNX Runtime {versions.get('onnxruntime', '?')}, {thread_text}; latency is paired with float "
            "(interleaved rounds) and shown with its 95 % interval.")


def energy_split(energy: EnergyResult) -> tuple[float, float, float, float]:
    """Total, arithmetic, weight traffic (DRAM) and activation traffic (SRAM), in µJ: a table that fits a page."""
    dram = energy.by_component.get("DRAM", 0.0)
    sram = energy.by_component.get("SRAM", 0.0)
    return energy.total_uj, energy.total_uj - dram - sram, dram, sram


def layer_name(node: str, module: str = "") -> str:
    """A node as the report names it: its module path from the exporter's metadata when known."""
    return f"{module} ({node})" if module and module != node else node


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of points not dominated by another: lower cost (x) and better quality (y).

    Returned in order of increasing cost. Points with a non-finite coordinate are never on it.
    """
    sign = 1.0 if higher_is_better else -1.0
    idx = [
        i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)
    ]
    idx.sort(key=lambda i: (points[i][0], -sign * points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in idx:
        q = sign * points[i][1]
        if q > best:
            front.append(i)
            best = q
    return front


def worst_layers(v: VariantResult, n: int | None = None) -> list[LayerError]:
    """Tensors by SQNR, worst first; NaN (non-finite outputs) counts as the worst of all."""
    ranked = sorted(v.layers, key=lambda e: (sqnr_key(e.sqnr_db), e.tensor))
    return ranked if n is None else ranked[:n]


def median_sqnr(v: VariantResult) -> float:
    values = sorted(sqnr_key(e.sqnr_db) for e in v.layers)
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def sqnr_key(sqnr_db: float) -> float:
    """Sort key putting the worst SQNR first, NaN (non-finite outputs) before everything."""
    return -math.inf if math.isnan(sqnr_db) else sqnr_db


def ranked_sensitivity(v: VariantResult) -> list:
    """Sensitivity entries, most harmful first (the largest quality loss)."""
    return sorted(v.sensitivity, key=lambda s: (s.mode, _harm(s.delta, s.mode), s.node))


def _harm(delta: float, mode: str) -> float:
    # "only": delta = value - float; negative is harmful. "all-but": value - fully quantized;
    # positive means leaving this node in float recovers quality, so the node is harmful.
    if math.isnan(delta):
        return -math.inf
    return delta if mode == "only" else -delta


def summary_sentence(results: Results) -> str:
    """One plain sentence: what to pick, or that nothing fits the budget."""
    ref = results.reference
    best = best_variant(results)
    allowed = budget(results)
    m = results.metric
    head = ""
    if ref is not None and m in ref.quality:
        head = f"The float model scores {fmt_quality(m, ref.quality[m])} {m}. "
    if best is None:
        if allowed is not None:
            return head + (
                f"No quantized variant stays within the budget (a drop of at most "
                f"{results.max_drop:.2%} of the float {m}); see the per-layer error and "
                "sensitivity sections for the layers to keep in float."
            )
        return head + "No quantized variant was measured against the float model."
    name, why = best
    v = results.variant(name)
    ratio = size_ratio(results, v)
    parts = [f"{fmt_quality(m, quality(results, v))} {m} ({fmt_drop(m, results.drop(v), results.higher_is_better)})"]
    if ratio is not None:
        parts.append(f"{ratio:.1f}× smaller")
    sentence = speed_sentence(results, v)
    if sentence:
        parts.append(sentence)
    pick = recommend(results)
    runner = f" Runner-up: {pick.runner_up_reason}." if pick is not None and pick.runner_up_reason else ""
    return head + f"Recommended: {name}, {why}: " + ", ".join(parts) + "." + runner
