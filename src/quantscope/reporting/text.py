"""The terminal report: a rich table of variants, then the worst layers. The CLI prints it."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from quantscope.analysis.results import Results
from quantscope.reporting import _format as f


def render_text(results: Results) -> Group:
    """Renderables for a terminal: the variants table, the worst layers, the summary sentence."""
    parts: list[object] = [variants_table(results)]
    layers = worst_layers_table(results)
    if layers is not None:
        parts.append(layers)
    parts.append(Text(f.summary_sentence(results)))
    if f.timing_setting(results):
        parts.append(Text(f.timing_setting(results), style="dim"))
    return Group(*parts)  # type: ignore[arg-type]


def variants_table(results: Results) -> Table:
    """Variants × (quality, drop, size, latency at 1 thread, peak memory, energy); units in headers."""
    m = results.metric
    n = f.large_batch(results)
    inside = f.within_budget(results)
    best = f.best_variant(results)
    allowed = f.budget(results)
    caption = ["★ " + best[1] if best else "no recommended variant"]
    if allowed is not None:
        caption.append(f"✓ within the budget (drop ≤ {results.max_drop:.2%} of float {m})")
    caption.append("Δ: change against float; ×: times smaller; latency: median, 1 thread; speed: float time / "
                   "variant time, paired, 95 % interval (▼ slower than float)")
    table = Table(
        title=escape(f"{results.model.get('name', 'model')}: {results.data.get('samples', '?')} samples"),
        caption=escape("; ".join(caption)),
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    drop_unit = "pp" if f.is_fraction(m) else ""
    headers = ["variant", m, f"Δ {drop_unit}".strip(), "size", "×", "b1 ms", "speed",
               f"b{n} ms" if n else "bN ms", "MiB", "µJ"]
    rows: list[list[object]] = []
    styles: list[str | None] = []
    for v in results.variants:
        mark = ("★" if best and best[0] == v.name else "") + ("✓" if v.name in inside else "")
        ratio = f.size_ratio(results, v)
        b1, bn = f.latency_ms(v, 1), f.latency_ms(v, n) if n else None
        drop = results.drop(v)
        styles.append("bold green" if best and best[0] == v.name else None)
        rows.append([
            escape(f"{mark} {v.name}" if mark else v.name),
            f.fmt_quality(m, f.quality(results, v)),
            f.fmt_drop(m, drop, results.higher_is_better).removesuffix(" pp") if v.kind != "float" else "",
            f.fmt_bytes(v.size_bytes),
            f"{ratio:.1f}×" if ratio is not None else "-",
            f"{b1:.3g}" if b1 is not None else "-",
            f.speed_cell(results, v) if v.kind != "float" and v.latency else "",
            f"{bn:.3g}" if bn is not None else "-",
            f"{v.memory.peak_rss_mb:.0f}" if v.memory else "-",
            f"{v.energy.total_uj:.3g}" if v.energy else "-",
        ])
    headers, rows = f.drop_empty_columns(headers, rows, keep=2)
    table.add_column("variant", justify="left", min_width=10)
    for name in headers[1:]:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*map(str, row), style=style)
    return table


def worst_layers_table(results: Results) -> Table | None:
    """One row per quantized variant: its worst tensor, and the median over all its tensors."""
    rows = [v for v in results.variants if v.layers]
    if not rows:
        return None
    table = Table(title="worst tensor of each variant (SQNR against float)", box=box.SIMPLE_HEAD,
                  padding=(0, 1), collapse_padding=True, pad_edge=False)
    for name, justify in (("variant", "left"), ("worst tensor", "left"), ("op", "left"),
                          ("SQNR", "right"), ("median", "right"), ("tensors", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for v in rows:
        worst = f.worst_layers(v, 1)[0]
        table.add_row(escape(v.name), escape(worst.tensor), escape(worst.op_type),
                      f.fmt_sqnr(worst.sqnr_db), f.fmt_sqnr(f.median_sqnr(v)), str(len(v.layers)))
    return table
