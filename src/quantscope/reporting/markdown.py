"""``summary.md``: the report in Markdown: summary, tables, worst layers, plans, robustness."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from quantscope.analysis.results import Results
from quantscope.reporting import _format as f
from quantscope.reporting.energy_sources import source as energy_source

WORST = 5


def md_escape(value: object) -> str:
    """Text safe inside a Markdown table cell: no HTML, no column breaks, no line breaks."""
    s = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    for ch in "*_[]":
        s = s.replace(ch, "\\" + ch)
    return " ".join(s.split())


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], right_from: int = 1) -> str:
    head = "| " + " | ".join(md_escape(h) for h in headers) + " |"
    rule = "|" + "|".join(":--" if i < right_from else "--:" for i in range(len(headers))) + "|"
    body = ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def render_markdown(results: Results) -> str:
    name = results.model.get("name") or results.model.get("path") or "model"
    data = results.data
    out = [
        f"# quantscope report: {md_escape(name)}",
        "",
        f"{md_escape(data.get('name', 'data'))}: {data.get('samples', '?')} samples; primary metric "
        f"{md_escape(results.metric)} ({'higher' if results.higher_is_better else 'lower'} is better)."
        + (f" Created {md_escape(results.created)}." if results.created else ""),
        "",
        md_escape(f.summary_sentence(results)),
        "",
    ]
    if f.timing_setting(results):
        out += [md_escape(f.timing_setting(results)), ""]
    out += _variants(results)
    out += _layers(results)
    out += _sensitivity(results)
    out += _plans(results)
    out += _energy(results)
    if results.robustness is not None:
        out += _robustness(results)
    out += _notes(results)
    out += ["## Machine and versions", ""]
    out += [f"- {md_escape(k)}: {md_escape(v)}" for k, v in _flat(results.machine)]
    return "\n".join(out).rstrip() + "\n"


def _variants(results: Results) -> list[str]:
    m = results.metric
    n = f.large_batch(results)
    inside = f.within_budget(results)
    best = f.best_variant(results)
    rows = []
    for v in results.variants:
        ratio = f.size_ratio(results, v)
        mark = ("★" if best and best[0] == v.name else "") + ("✓" if v.name in inside else "")
        rows.append([
            mark, v.name, v.method or "float", f.fmt_quality(m, f.quality(results, v)),
            f.fmt_drop(m, results.drop(v), results.higher_is_better) if v.kind != "float" else "",
            f.fmt_bytes(v.size_bytes), f"{ratio:.2f}×" if ratio is not None else "-",
            f.fmt_ms(f.latency_ms(v, 1)), f.speed_cell(results, v) if v.latency or v.kind != "float" else "-",
            f.fmt_ms(f.latency_ms(v, n)) if n else "-",
            f"{v.memory.peak_rss_mb:.0f} MiB" if v.memory else "-",
            f"{v.energy.total_uj:.3g} µJ" if v.energy else "-",
        ])
    legend = [f"★ {best[1]}" if best else "no variant is recommended"]
    if f.budget(results) is not None:
        legend.append(f"✓ within the budget (a drop of at most {results.max_drop:.2%} of the float {m})")
    legend.append("latency: median, 1 thread; speed: float time / variant time at batch 1, 1 thread, paired "
                  "with float, with its 95 % interval (▼: slower than float)")
    return [
        "## Variants", "",
        _table(*f.drop_empty_columns(["", "variant", "method", m, "vs float", "size", "smaller",
                                      "b1", "speed vs float", f"b{n}" if n else "bN", "peak memory", "energy"],
                                     rows, keep=4), right_from=3),
        "", md_escape("; ".join(legend)) + ".", "",
        "Pareto front by size: " + md_escape(", ".join(_front(results)) or "-") + ".", "",
    ]


def _front(results: Results) -> list[str]:
    pts = [(v, f.quality(results, v)) for v in results.variants]
    pts = [(v, q) for v, q in pts if q is not None]
    idx = f.pareto_front([(float(v.size_bytes), q) for v, q in pts], results.higher_is_better)
    return [pts[i][0].name for i in idx]


def _layers(results: Results) -> list[str]:
    rows = []
    for v in results.variants:
        for e in f.worst_layers(v, WORST):
            rows.append([v.name, f.layer_name(e.tensor, e.module), e.op_type, f.fmt_sqnr(e.sqnr_db)])
    if not rows:
        return []
    return ["## Per-layer error", "", f"The {WORST} tensors with the lowest SQNR against float, per variant.",
            "", _table(["variant", "tensor", "op", "SQNR"], rows, right_from=3), ""]


def _sensitivity(results: Results) -> list[str]:
    rows = []
    for v in results.variants:
        for s in f.ranked_sensitivity(v)[:WORST]:
            rows.append([v.name, f.layer_name(s.node, s.module), s.op_type, s.mode, f.fmt_quality(s.metric, s.value),
                         f"{s.delta:+.4g}"])
    if not rows:
        return []
    return ["## Sensitivity", "", "Most harmful nodes first: 'only' = just this node quantized "
            "(delta against float), 'all-but' = all other nodes quantized (delta against fully "
            "quantized).", "",
            _table(["variant", "node", "op", "mode", "value", "delta"], rows, right_from=4), ""]


def _plans(results: Results) -> list[str]:
    out: list[str] = []
    for v in results.variants:
        p = v.plan
        if p is None:
            continue
        q_ops = ", ".join(f"{op} {n}" for op, n in p.quantized_ops.items()) or "none"
        out += [f"### {md_escape(v.name)}", "",
                md_escape(f"{p.method}: quantized {p.quantized} node(s) ({q_ops}), fused {p.fused}, "
                          f"left {p.float} in float."), ""]
        out += [f"- float x{n}: {md_escape(r)}" for r, n in
                sorted(p.float_reasons.items(), key=lambda kv: -kv[1])]
        if p.runtime_ops:
            out.append("- ONNX Runtime kernels: " + md_escape(
                ", ".join(f"{op} {n}" for op, n in sorted(p.runtime_ops.items(), key=lambda kv: -kv[1]))))
        out.append("")
    return ["## Plans", "", *out] if out else []


def _energy(results: Results) -> list[str]:
    measured = [v for v in results.variants if v.energy is not None]
    if not measured:
        return []
    rows = [[v.name, *(f"{x:.3g}" for x in f.energy_split(v.energy))] for v in measured]  # type: ignore[arg-type]
    out = ["## Energy (estimated)", "", "Microjoules per inference, priced on the graph ONNX Runtime runs.", "",
           _table(["variant", "total", "arithmetic", "weights (DRAM)", "activations (SRAM)"], rows), ""]
    for name in sorted({v.energy.table for v in measured}):  # type: ignore[union-attr]
        s = energy_source(name)
        if s is None:
            out += [f"Energy table: {md_escape(name)}.", ""]
            continue
        out += [f"Source: {md_escape(s.citation)}", ""]
        out += [f"- {md_escape(a)}" for a in s.assumptions]
        out.append("")
    return out


def _robustness(results: Results) -> list[str]:
    rob = results.robustness
    assert rob is not None
    m = rob.metric
    out = ["## Robustness and limitations", ""]
    if rob.limitations:
        out += [f"{i}. {md_escape(s)}" for i, s in enumerate(rob.limitations, 1)]
        out.append("")
    if rob.breaking_points:
        variants = list(dict.fromkeys(n for row in rob.breaking_points.values() for n in row))
        rows = [[shift, *["never" if row.get(n) is None else f"{row[n]:g}" for n in variants]]
                for shift, row in rob.breaking_points.items()]
        thr = f.fmt_quality(m, rob.threshold) if rob.threshold is not None else "the threshold"
        out += [f"Breaking points: the lowest severity at which {md_escape(m)} falls below "
                f"{md_escape(thr)}.", "", _table(["shift", *variants], rows), ""]
    if rob.slices:
        worst = sorted((s for s in rob.slices if not math.isnan(s.quality.get(m, math.nan))),
                       key=lambda s: (s.quality[m] if results.higher_is_better else -s.quality[m],
                                      s.slice, s.variant))[:WORST]
        out += ["Worst slices:", "", _table(["slice", "variant", "samples", m], [
            [s.slice, s.variant, s.samples, f.fmt_quality(m, s.quality[m])] for s in worst],
            right_from=2), ""]
    eff = rob.calibration_effect
    if eff is not None:
        rows = [[src, *[f.fmt_quality(eff.metric, x) for x in row]]
                for src, row in zip(eff.sources, eff.values, strict=False)]
        rows.append(["(float)", *[f.fmt_quality(eff.metric, x) for x in eff.float_values]])
        out += ["Calibrated on (rows) × evaluated on (columns):", "",
                _table(["calibrated on", *eff.targets], rows), ""]
    if rob.calibration_size:
        pts = sorted(rob.calibration_size, key=lambda p: p.samples)
        out += ["Calibration set size: " + md_escape(", ".join(
            f"{p.samples} → {f.fmt_quality(m, p.quality.get(m))}" for p in pts)) + ".", ""]
    return out


def _notes(results: Results) -> list[str]:
    items = f.notes_and_warnings(results)
    if not items:
        return []
    return ["## Notes and warnings", "", *[f"- {md_escape(s)}" for s in items], ""]


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k} ")
        else:
            out.append((f"{prefix}{k}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)))
    return out
