"""The report's plots, drawn with matplotlib's object API (no pyplot) as inline SVG strings.

Text stays text (``svg.fonttype = none``) so the files are small and searchable; every label that
comes from user data is passed through :func:`label` so ``$`` cannot start matplotlib's mathtext.
rcParams are changed only inside ``rc_context``, so nothing leaks into the caller's matplotlib.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from quantscope.analysis.results import Results, VariantResult
from quantscope.reporting import _format as f
from quantscope.reporting.svgbars import hbar_chart

MAX_BARS = 20
_RC = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def label(text: str, limit: int = 48) -> str:
    """A user string made safe for matplotlib text (no mathtext) and short enough to read."""
    text = text if len(text) <= limit else "…" + text[-(limit - 1) :]
    return text.replace("\\", "\\\\").replace("$", r"\$")


def colors(results: Results) -> dict[str, str]:
    """One colour per variant, the same in every plot (tab10; beyond ten, :func:`markers` tells them apart)."""
    cmap = matplotlib.colormaps["tab10"]
    return {v.name: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, v in enumerate(results.variants)}


MARKERS = ("o", "s", "D", "^", "P", "X")


def markers(results: Results) -> dict[str, str]:
    """One marker per variant: the first ten circles, then a new shape for every ten more."""
    return {v.name: MARKERS[(i // 10) % len(MARKERS)] for i, v in enumerate(results.variants)}


def to_svg(fig: Figure, salt: str) -> str:
    """Serialize ``fig`` as an ``<svg>`` element for inlining (ids made unique by ``salt``)."""
    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->|<metadata>.*?</metadata>", "", svg, flags=re.S)
    # inline SVG in HTML needs no namespace declarations; dropping them keeps the page URL-free
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=2)
    # matplotlib numbers its element ids per figure (figure_1, axes_1, ...): prefix them so
    # the plots sharing one page never share an id
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", salt)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    return svg.strip()


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def tradeoff(results: Results, axis: str) -> str | None:
    """Quality against size (``axis="size"``) or batch-1 latency (``"latency"``), Pareto front marked.

    Variants far below the rest (e.g. a collapsed ternary model) are drawn on the lower edge with
    their value in the legend, so they do not squash the interesting region.
    """
    m = results.metric
    pts: list[tuple[VariantResult, float, float]] = []
    for v in results.variants:
        q = f.quality(results, v)
        x = v.size_bytes / 1e6 if axis == "size" else f.latency_ms(v, 1)
        if q is not None and x is not None and math.isfinite(q) and x > 0:
            pts.append((v, x, q))
    if len(pts) < 2:
        return None
    palette, shapes = colors(results), markers(results)
    sign = 1.0 if results.higher_is_better else -1.0
    lo, hi = _quality_window(results, [q for _, _, q in pts])
    with matplotlib.rc_context(_RC):
        fig = _figure(7.2, 3.8)
        ax = fig.add_subplot()
        front = f.pareto_front([(x, q) for _, x, q in pts], results.higher_is_better)
        fx = [pts[i][1] for i in front]
        fy = [min(max(pts[i][2], lo), hi) for i in front]
        ax.step(fx, fy, where="post", color="#555", lw=1.2, ls="--", label="Pareto front", zorder=1)
        ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="#555", lw=1.2, zorder=2)
        for v, x, q in pts:
            is_float = v.kind == "float"
            clipped = q < lo or q > hi
            name = label(v.name, 28) + (" (float)" if is_float else "")
            if clipped:
                name += f" [{f.fmt_quality(m, q)}, off scale]"
            ax.scatter([x], [min(max(q, lo), hi)], s=160 if is_float else 50,
                       marker="*" if is_float else ("v" if sign * q < sign * lo else shapes[v.name]),
                       color="#000" if is_float else palette[v.name], zorder=3, label=name)
            span = _latency_span(results, v) if axis == "latency" else None
            if span is not None:  # the 95 % interval of the paired timing
                ax.plot(span, [min(max(q, lo), hi)] * 2, color=palette[v.name], lw=1, alpha=0.6, zorder=2)
        allowed = f.budget(results)
        ref = results.reference
        if allowed is not None and ref is not None:
            floor = ref.quality[m] - sign * allowed
            ax.axhline(floor, color="#c00", lw=0.8, ls=":", label="quality budget")
        pad = (hi - lo) * 0.04 or max(abs(hi) * 0.01, 1e-3)  # every variant may score the same
        ax.set_ylim(lo - pad, hi + pad)
        xs = [x for _, x, _ in pts]
        if max(xs) / min(xs) > 8:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("size on disk (MB)" if axis == "size" else "latency, batch 1, 1 thread (ms)")
        ax.set_ylabel(label(m))
        fig.legend(loc="outside right upper", fontsize=7, frameon=False)
        return to_svg(fig, f"tradeoff-{axis}")


def _latency_span(results: Results, v: VariantResult) -> tuple[float, float] | None:
    """The batch-1 latency interval implied by the paired speed interval against float."""
    ref = results.reference
    lat = next((t for t in v.latency if t.batch == 1 and t.threads == 1), None)
    base = f.latency_ms(ref, 1) if ref is not None else None
    if lat is None or base is None or not lat.speed_low or not lat.speed_high:
        return None
    return base / lat.speed_high, base / lat.speed_low


def _plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks as plain numbers (0.2, not 2×10⁻¹); minor labels only within one decade."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 10:
        axis.set_minor_formatter(plain)
    else:
        axis.set_minor_formatter(NullFormatter())


def _quality_window(results: Results, qs: list[float]) -> tuple[float, float]:
    """The y range to show: all values, unless a few lie far beyond the float model's neighbourhood."""
    lo, hi = min(qs), max(qs)
    ref = results.reference
    if ref is None or results.metric not in ref.quality:
        return lo, hi
    r = ref.quality[results.metric]
    allowed = f.budget(results) or 0.0
    reach = max(4 * allowed, 0.05 * abs(r), 1e-9)
    near = [q for q in qs if abs(q - r) <= reach]
    if len(near) >= len(qs) / 2 and len(near) < len(qs):
        return min([*near, r - reach]), max([*near, r])
    return lo, hi


def layer_sqnr(v: VariantResult) -> str | None:
    """Horizontal bars of per-tensor SQNR, worst at the top (at most ``MAX_BARS``)."""
    layers = f.worst_layers(v, MAX_BARS)
    if not layers:
        return None
    values = [e.sqnr_db if not math.isnan(e.sqnr_db) else -math.inf for e in layers]
    more = f" (worst {len(layers)} of {len(v.layers)})" if len(v.layers) > len(layers) else ""
    return hbar_chart(
        [f"{f.layer_name(e.tensor, e.module)} ({e.op_type})" for e in layers],
        values,
        ["#c0392b" if x < 20 else "#e67e22" if x < 30 else "#2e86c1" for x in values],
        xlabel="SQNR against float (dB); red < 20 dB, orange < 30 dB",
        title=f"{v.name}: per-tensor SQNR{more}",
        texts=[f.fmt_sqnr(e.sqnr_db) for e in layers],
    )


def sensitivity(v: VariantResult) -> str | None:
    """Quality change per node quantized alone (or kept float alone), most harmful at the top."""
    entries = f.ranked_sensitivity(v)[:MAX_BARS]
    if not entries:
        return None
    metric = entries[0].metric
    scale = 100.0 if f.is_fraction(metric) else 1.0
    unit = " (pp)" if scale == 100.0 else ""
    return hbar_chart(
        [f"{f.layer_name(s.node, s.module)} ({s.op_type}) [{s.mode}]" for s in entries],
        [s.delta * scale for s in entries],
        ["#c0392b" if f._harm(s.delta, s.mode) < 0 else "#27ae60" for s in entries],
        xlabel=f"change in {metric}{unit}: 'only' against float, 'all-but' against fully quantized",
        title=f"{v.name}: per-node sensitivity",
        texts=[f"{s.delta * scale:+.3g}{unit.strip(' ()') and ' pp'}" for s in entries],
    )


def robustness_curves(results: Results) -> str | None:
    """Quality against severity, one panel per shift, one line per variant."""
    rob = results.robustness
    if rob is None or not rob.shifts:
        return None
    shifts = list(dict.fromkeys(p.shift for p in rob.shifts))
    palette = colors(results)
    ncols = min(3, len(shifts))
    nrows = math.ceil(len(shifts) / ncols)
    with matplotlib.rc_context(_RC):
        fig = _figure(3.2 * ncols, 2.6 * nrows + 0.4)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for k, shift in enumerate(shifts):
            ax = axes[k // ncols][k % ncols]
            names = list(dict.fromkeys(p.variant for p in rob.shifts if p.shift == shift))
            for name in names:
                pts = sorted((p.severity, p.quality.get(rob.metric, math.nan)) for p in rob.shifts
                             if p.shift == shift and p.variant == name)
                is_float = results.reference is not None and name == results.reference.name
                ax.plot([s for s, _ in pts], [q for _, q in pts], marker="o", ms=3,
                        lw=2.2 if is_float else 1.2, color="#000" if is_float else palette.get(name),
                        label=label(name, 28))
            if rob.threshold is not None:
                ax.axhline(rob.threshold, color="#c00", lw=0.8, ls=":")
            ax.set_title(label(shift), fontsize=9)
            ax.set_xlabel("severity")
        for k in range(len(shifts), nrows * ncols):
            axes[k // ncols][k % ncols].set_visible(False)
        axes[0][0].set_ylabel(label(rob.metric))
        handles, labels_ = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels_, loc="outside lower center", ncols=min(4, len(labels_)), fontsize=8)
        return to_svg(fig, "robustness-curves")


def calibration_heatmap(results: Results) -> str | None:
    rob = results.robustness
    eff = rob.calibration_effect if rob is not None else None
    if eff is None or not eff.values:
        return None
    scale = 100.0 if f.is_fraction(eff.metric) else 1.0
    with matplotlib.rc_context(_RC):
        fig = _figure(1.6 + 1.1 * len(eff.targets), 1.2 + 0.6 * len(eff.sources))
        ax = fig.add_subplot()
        ax.grid(False)
        img = ax.imshow([[x * scale for x in row] for row in eff.values], cmap="viridis", aspect="auto")
        for i, row in enumerate(eff.values):
            for j, x in enumerate(row):
                ax.text(j, i, f"{x * scale:.1f}" if scale == 100.0 else f"{x:.3g}",
                        ha="center", va="center", fontsize=8,
                        color="k" if img.norm(x * scale) > 0.6 else "w")
        ax.set_xticks(range(len(eff.targets)), [label(t, 16) for t in eff.targets])
        ax.set_yticks(range(len(eff.sources)), [label(s, 16) for s in eff.sources])
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("calibrated on")
        fig.colorbar(img, ax=ax, label=label(eff.metric + (" (%)" if scale == 100.0 else "")))
        return to_svg(fig, "calibration-effect")


def calibration_size(results: Results) -> str | None:
    rob = results.robustness
    if rob is None or len(rob.calibration_size) < 2:
        return None
    pts = sorted((p.samples, p.quality.get(rob.metric, math.nan)) for p in rob.calibration_size)
    with matplotlib.rc_context(_RC):
        fig = _figure(5.0, 3.0)
        ax = fig.add_subplot()
        ax.plot([s for s, _ in pts], [q for _, q in pts], marker="o", color="#2e86c1")
        if pts[-1][0] / max(pts[0][0], 1) > 8:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        ref = results.reference
        if ref is not None and rob.metric in ref.quality:
            ax.axhline(ref.quality[rob.metric], color="#000", lw=1.0, ls="--", label="float")
            ax.legend(fontsize=8)
        ax.set_xlabel("calibration samples")
        ax.set_ylabel(label(rob.metric))
        return to_svg(fig, "calibration-size")


