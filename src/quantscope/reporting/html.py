"""``index.html``: one self-contained page (inline CSS, inline SVG plots, no script, no URL).

Every string from the results (model, variant, node, slice names, notes) is HTML-escaped: cells are
escaped by :func:`_table` unless wrapped in :class:`Raw`, which only this module creates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from quantscope.analysis.results import Results, VariantResult
from quantscope.reporting import _format as f
from quantscope.reporting import plots
from quantscope.reporting.energy_sources import source as energy_source

CSS = """
:root { --fg:#1d2330; --muted:#5b6575; --line:#d9dee7; --accent:#1f6feb; --good:#e8f6ec;
        --best:#c9efd4; --bad:#fdecea; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1320px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin-top: 36px;
     border-bottom: 2px solid var(--line); padding-bottom: 4px; } h3 { font-size: 15px; }
nav { font-size: 13px; margin: 8px 0 16px; } nav a { margin-right: 12px; color: var(--accent); }
.muted, figcaption, .legend { color: var(--muted); font-size: 12.5px; }
.summary { background: #f3f6fb; border-left: 4px solid var(--accent); padding: 10px 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; font-size: 12.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
td.l, th.l { text-align: left; } td.wrap { white-space: normal; text-align: left; }
tr.within td { background: var(--good); } tr.best td { background: var(--best); font-weight: 600; }
tr.float td { font-style: italic; } tr.over td.q { color: #b3261e; }
figure.plot { margin: 12px 0 20px; } figure.plot svg { max-width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 8px 24px; }
details { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
ul.warnings li { color: #8a4b00; } footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
.planrow { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
h4 { margin: 8px 0 2px; font-size: 13.5px; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
"""


class Raw(str):
    """HTML this module wrote itself: inserted as is. Anything else is escaped."""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _cell(value: object) -> str:
    return value if isinstance(value, Raw) else _e(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str = "",
           row_classes: Sequence[str] | None = None, left: int = 1) -> str:
    """A table; the first ``left`` columns are left-aligned."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{_cell(h)}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        rc = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(
            f'<td class="{"l" if i < left else ""}">{_cell(c)}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr{rc}>{cells}</tr>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _figure(svg: str | None, caption: str, name: str) -> str:
    if svg is None:
        return ""
    return (f'<figure class="plot" data-plot="{_e(name)}">{svg}'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


SECTIONS = [
    ("variants", "Variants"),
    ("tradeoffs", "Trade-offs"),
    ("layers", "Per-layer error"),
    ("sensitivity", "Sensitivity"),
    ("plans", "Plans"),
    ("energy", "Energy"),
    ("robustness", "Robustness and limitations"),
    ("notes", "Notes and warnings"),
]


def render_html(results: Results) -> str:
    """The whole page as one string."""
    name = str(results.model.get("name") or results.model.get("path") or "model")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>quantscope report: {_e(name)}</title><style>{CSS}</style></head><body>"
        f"{report_body(results)}</body></html>\n"
    )


def report_body(results: Results, *, nav: bool = True) -> str:
    """The report's header, sections and footer (the page's body; a notebook shows it inline)."""
    name = str(results.model.get("name") or results.model.get("path") or "model")
    parts = {
        "variants": _variants(results),
        "tradeoffs": _tradeoffs(results),
        "layers": _layers(results),
        "sensitivity": _sensitivity(results),
        "plans": _plans(results),
        "energy": _energy(results),
        "robustness": _robustness(results) if results.robustness is not None else "",
        "notes": _notes(results),
    }
    present = [(sid, title) for sid, title in SECTIONS if parts[sid]]
    links = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in present)
    data = results.data
    subtitle = (f"{data.get('name', 'data')}: {data.get('samples', '?')} samples"
                f"{', with labels' if data.get('labels') else ''}; primary metric "
                f"{results.metric} ({'higher' if results.higher_is_better else 'lower'} is better)"
                f"{'; created ' + str(results.created) if results.created else ''}")
    body = "".join(_section(sid, title, parts[sid]) for sid, title in present)
    return (
        f"<header><h1>quantscope report: {_e(name)}</h1><p class=\"muted\">{_e(subtitle)}</p>"
        f'<p class="summary" id="summary">{_e(f.summary_sentence(results))}</p>'
        + (f'<p class="muted" id="timing-setting">{_e(f.timing_setting(results))}</p>' if f.timing_setting(results)
           else "")
        + (f"<nav>{links}</nav>" if nav else "")
        + f"</header><main>{body}</main>{_footer(results)}"
    )


# --- sections ----------------------------------------------------------------------------


def _variants(results: Results) -> str:
    m = results.metric
    n = f.large_batch(results)
    n_all = f.large_batch(results, None)
    inside = f.within_budget(results)
    best = f.best_variant(results)
    extra = [k for k in dict.fromkeys(q for v in results.variants for q in v.quality) if k != m][:3]
    headers = ["", "variant", "method", m, "vs float", *extra, "size", "smaller",
               "b1, 1 thread", "speed vs float", f"b{n}, 1 thread" if n else "bN, 1 thread",
               f"all threads, b1 / b{n_all or 'N'}", "peak memory", "energy"]
    rows, classes = [], []
    allowed = f.budget(results)
    for v in results.variants:
        is_best = best is not None and best[0] == v.name
        mark = ("★ " if is_best else "") + ("✓" if v.name in inside else "")
        ratio = f.size_ratio(results, v)
        params = ", ".join(f"{k} {f.fmt_bytes(b)}" for k, b in v.param_bytes.items()) or "-"
        rows.append([
            mark, v.name, v.method or "float",
            f.fmt_quality(m, f.quality(results, v)),
            f.fmt_drop(m, results.drop(v), results.higher_is_better) if v.kind != "float" else "",
            *[f.fmt_quality(k, v.quality.get(k)) for k in extra],
            Raw(f'<span title="parameters: {_e(params)}">{_e(f.fmt_bytes(v.size_bytes))}</span>'),
            f"{ratio:.2f}×" if ratio is not None else "-",
            f.fmt_ms(f.latency_ms(v, 1)),
            f.speed_cell(results, v) if v.latency or v.kind != "float" else "-",
            f.fmt_ms(f.latency_ms(v, n)) if n else "-",
            _pair(f.latency_ms(v, 1, None), f.latency_ms(v, n_all, None) if n_all else None),
            f"{v.memory.peak_rss_mb:.0f} MiB (+{v.memory.model_rss_mb:.0f})" if v.memory else "-",
            f"{v.energy.total_uj:.3g} µJ" if v.energy else "-",
        ])
        over = allowed is not None and v.kind != "float" and v.name not in inside
        classes.append("best" if is_best else "within" if v.name in inside
                       else "float" if v.kind == "float" else "over" if over else "")
    legend = ["★ " + best[1] if best else "no variant is recommended"]
    if allowed is not None:
        legend.append(f"✓ within the budget: a drop of at most {results.max_drop:.2%} of the "
                      f"float {m} ({f.fmt_quality(m, allowed) if not f.is_fraction(m) else f'{allowed * 100:.2f} pp'})")
    legend.append("latency: median over repeated runs after warm-up, the same session options for "
                  "every variant; speed vs float: float time / variant time at batch 1, 1 thread, timed "
                  "in interleaved rounds with float, with its 95 % interval (▼: slower than float; 'same' "
                  "when the interval includes 1); peak memory: resident set of a fresh process after loading and "
                  "running (+ the part the model added)")
    if all(v.name.startswith(v.method or "float") for v in results.variants):
        for row in rows:  # the names already say the method: an empty column is dropped below
            row[2] = ""
    headers, rows = f.drop_empty_columns(headers, rows, keep=2)
    table = _table(headers, rows, cls="variants", row_classes=classes,
                   left=3 if "method" in headers else 2)
    return table + f'<p class="legend">{_e("; ".join(legend))}.</p>'


def _pair(a: float | None, b: float | None) -> str:
    if a is None and b is None:
        return "-"
    return f"{f.fmt_ms(a).removesuffix(' ms')} / {f.fmt_ms(b)}"


def _tradeoffs(results: Results) -> str:
    figs = [
        _figure(plots.tradeoff(results, "size"), f"{results.metric} against size on disk. Circled: "
                "the Pareto front (no other variant is both smaller and better); ★ the float model.",
                "quality-vs-size"),
        _figure(plots.tradeoff(results, "latency"), f"{results.metric} against latency at batch 1, "
                "1 thread. Circled: the Pareto front; ★ the float model.", "quality-vs-latency"),
    ]
    body = "".join(figs)
    if not body:
        return ""
    front = _front_names(results)
    text = f'<p>Pareto front by size: {_e(", ".join(front))}.</p>' if front else ""
    return text + f'<div class="grid">{body}</div>'


def _front_names(results: Results) -> list[str]:
    pts = [(v, v.size_bytes, f.quality(results, v)) for v in results.variants]
    pts = [(v, x, q) for v, x, q in pts if q is not None]
    idx = f.pareto_front([(float(x), float(q)) for _, x, q in pts], results.higher_is_better)
    return [pts[i][0].name for i in idx]


def _figure_grid(results: Results, draw: Callable[[VariantResult], str | None],
                 caption: Callable[[VariantResult], str], anchor: str, intro: str) -> str:
    """One figure per variant that ``draw`` has a chart for, after ``intro``; "" when there is none."""
    figs = [_figure(svg, caption(v), f"{anchor}-{v.name}") for v in results.variants if (svg := draw(v)) is not None]
    return intro + f'<div class="grid">{"".join(figs)}</div>' if figs else ""


def _layers(results: Results) -> str:
    def caption(v: VariantResult) -> str:
        worst = f.worst_layers(v, 1)[0]
        return (f"{v.name}: {_count(len(v.layers), 'tensor')}, worst first; worst "
                f"{f.layer_name(worst.tensor, worst.module)} at "
                f"{f.fmt_sqnr(worst.sqnr_db)}, median {f.fmt_sqnr(f.median_sqnr(v))}.")

    return _figure_grid(
        results, plots.layer_sqnr, caption, "sqnr",
        "<p>Signal-to-quantization-noise ratio of each tensor of a quantized model against the "
        "float model's tensor of the same name, on the same inputs. Below ~20 dB a tensor "
        "carries visible error; the first bars are the layers to keep in float.</p>",
    )


def _sensitivity(results: Results) -> str:
    return _figure_grid(
        results, plots.sensitivity,
        lambda v: (f"{v.name}: {_count(len(v.sensitivity), 'measurement')}, most harmful first (red: "
                   "quantizing this node costs quality)."),
        "sensitivity",
        "<p>The metric when only one node is quantized (<em>only</em>, against the float "
        "model) or when all but one are (<em>all-but</em>, against the fully quantized model).</p>",
    )


def _plans(results: Results) -> str:
    out = []
    best = f.best_variant(results)
    few = sum(v.plan is not None for v in results.variants) <= 4  # else open only the best
    for v in results.variants:
        p = v.plan
        if p is None:
            continue
        q_ops = ", ".join(f"{op} {n}" for op, n in p.quantized_ops.items()) or "none"
        head = (f"{v.name}: {p.method}, quantized {p.quantized} node(s) ({q_ops}), fused "
                f"{p.fused}, left {p.float} in float")
        blocks = []
        if p.float_reasons:
            blocks.append("<div><h4>Left in float, and why</h4>" + _table(
                ["reason", "nodes"], sorted(p.float_reasons.items(), key=lambda kv: -kv[1]),
                cls="reasons") + "</div>")
        if p.runtime_ops:
            blocks.append("<div><h4>Kernels ONNX Runtime runs</h4>" + _table(
                ["op", "count"], sorted(p.runtime_ops.items(), key=lambda kv: -kv[1]),
                cls="kernels") + "</div>")
        inner = f'<div class="planrow">{"".join(blocks)}</div>'  # its warnings: under Notes, once
        if v.config:
            inner += ('<p class="muted">config: <code>'
                      + _e(json.dumps(v.config, sort_keys=True)) + "</code></p>")
        opened = " open" if few or (best is not None and best[0] == v.name) else ""
        out.append(f'<details class="plan"{opened}><summary>{_e(head)}</summary>{inner}</details>')
    if not out:
        return ""
    return ("<p>What each method did to the graph, from its plan: the nodes left in float with "
            "the reason, and the kernels ONNX Runtime's optimizer chose for the written model "
            "(QLinear*/QGemm/MatMulInteger are integer kernels; DequantizeLinear feeding a float op "
            "means the arithmetic stays float). Click a variant to open its plan.</p>"
            + "".join(out))


def _energy(results: Results) -> str:
    measured = [v for v in results.variants if v.energy is not None]
    if not measured:
        return ""
    ref = results.reference
    ref_e = ref.energy.total_uj if ref is not None and ref.energy is not None else None
    rows = []
    for v in measured:
        e = v.energy
        assert e is not None  # narrowed by ``measured``
        total, arithmetic, dram, sram = f.energy_split(e)
        macs = ", ".join(f"{k.removesuffix(' mac')} {f.fmt_num(n)}" for k, n in e.ops.items() if k.endswith(" mac"))
        rows.append([v.name, f"{total:.3g}", f"{ref_e / total:.2f}×" if ref_e and total > 0 else "-",
                     f"{arithmetic:.3g}", f"{dram:.3g}", f"{sram:.3g}", macs or "-"])
    table = _table(["variant", "µJ per inference", "less than float", "arithmetic", "weights (DRAM)",
                    "activations (SRAM)", "MACs by precision"], rows, cls="energy")
    table += ('<p class="legend">Priced on the graph ONNX Runtime runs on this machine, each node in the precision '
              "of its kernel; the full operation counts are in results.json.</p>")
    tables = sorted({v.energy.table for v in measured})  # type: ignore[union-attr]
    src = []
    for name in tables:
        s = energy_source(name)
        if s is None:
            src.append(f"<p>Energy table <code>{_e(name)}</code> (not described by this renderer).</p>")
            continue
        src.append(f"<h3>Source: {_e(s.name)}</h3><p>{_e(s.citation)}</p>")
        src.append(_table(["operation", "energy"], s.rows, cls="energy-source"))
        src.append("<h3>Assumptions</h3><ul>" + "".join(f"<li>{_e(a)}</li>" for a in s.assumptions)
                   + "</ul>")
    return table + "".join(src)


def _robustness(results: Results) -> str:
    rob = results.robustness
    assert rob is not None
    m = rob.metric
    out = []
    if rob.limitations:
        out.append('<h3>Limitations</h3><ol class="limitations">'
                   + "".join(f"<li>{_e(s)}</li>" for s in rob.limitations) + "</ol>")
    if rob.shifts:
        thr = f"; dotted: the threshold {f.fmt_quality(m, rob.threshold)}" if rob.threshold is not None else ""
        out.append("<h3>Quality under shifted data</h3>" + _figure(
            plots.robustness_curves(results),
            f"{m} against the severity of each shift (0 = unshifted); one line per variant, the float "
            f"model in bold black{thr}.", "robustness-curves"))
    if rob.breaking_points:
        variants = list(dict.fromkeys(n for row in rob.breaking_points.values() for n in row))
        rows = [[shift, *[_severity(row.get(n)) for n in variants]]
                for shift, row in rob.breaking_points.items()]
        thr = f.fmt_quality(m, rob.threshold) if rob.threshold is not None else "the threshold"
        out.append(f"<h3>Breaking points</h3><p class=\"muted\">The lowest severity at which {_e(m)} "
                   f"falls below {_e(thr)}.</p>" + _table(["shift", *variants], rows, cls="breaking"))
    worst = _worst_slices(results)
    if worst:
        out.append("<h3>Worst slices</h3>" + _table(
            ["slice", "variant", "samples", m, "float on the slice", "vs float"], worst,
            cls="slices", left=2))
    eff = rob.calibration_effect
    if eff is not None:
        floats = ", ".join(f"{t} {f.fmt_quality(eff.metric, x)}" for t, x in
                           zip(eff.targets, eff.float_values, strict=False))
        out.append("<h3>Calibration data against evaluation data</h3>" + _figure(
            plots.calibration_heatmap(results),
            f"static-int8 calibrated on each row's data, evaluated on each column's; the float model "
            f"scores {floats}.", "calibration-effect"))
    if rob.calibration_size:
        out.append("<h3>Calibration set size</h3>" + _figure(
            plots.calibration_size(results), f"{m} against the number of calibration samples; "
            "dashed: the float model.", "calibration-size"))
    return "".join(out)


def _severity(s: float | None) -> str:
    return "never" if s is None else f"{s:g}"


def _worst_slices(results: Results, n: int = 10) -> list[list[object]]:
    rob = results.robustness
    assert rob is not None
    m = rob.metric
    ref = results.reference
    base = {s.slice: s.quality.get(m) for s in rob.slices if ref is not None and s.variant == ref.name}
    sign = 1.0 if results.higher_is_better else -1.0
    scored = []
    for s in rob.slices:
        if ref is not None and s.variant == ref.name:
            continue
        q = s.quality.get(m)
        if q is None or math.isnan(q):
            continue
        b = base.get(s.slice)
        drop = sign * (b - q) if b is not None else None
        scored.append((-(drop if drop is not None else -math.inf), sign * q, s, b, drop))
    scored.sort(key=lambda t: (t[0], t[1], t[2].slice, t[2].variant))
    return [[s.slice, s.variant, s.samples, f.fmt_quality(m, s.quality.get(m)),
             f.fmt_quality(m, b), f.fmt_drop(m, drop, results.higher_is_better)] for _, _, s, b, drop in scored[:n]]


def _notes(results: Results) -> str:
    items = f.notes_and_warnings(results)
    if not items:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{_e(s)}</li>" for s in items) + "</ul>"


def _footer(results: Results) -> str:
    rows = _flatten(results.machine)
    model = results.model
    rows += [("model fingerprint", str(model.get("fingerprint", "-"))),
             ("model path", str(model.get("path", "-")))]
    kv = "".join(f"<span>{_e(k)}</span><span>{_e(v)}</span>" for k, v in rows)
    return (f'<footer id="machine"><h2>Machine and versions</h2><div class="kv">{kv}</div>'
            "<p>Written by quantscope; the numbers come from results.json beside this page.</p>"
            "</footer>")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + " ")
        elif isinstance(v, list | tuple):
            out.append((key, ", ".join(map(str, v))))
        else:
            out.append((key, str(v)))
    return out
