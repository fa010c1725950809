"""Hand-written SVG horizontal bar charts: per-layer SQNR and sensitivity, one per variant.

A report has two of these per variant, so they are drawn directly (milliseconds each) instead of
through matplotlib's text layout. Every string is XML-escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

ROW = 16  # px per bar
LABEL_W = 300  # px for the bar labels
PLOT_W = 340  # px for the bars
PAD = 8


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    colors: Sequence[str],
    *,
    xlabel: str,
    title: str,
    texts: Sequence[str] | None = None,
) -> str:
    """Bars from a zero line, first label at the top; ``texts`` are printed beside each bar."""
    if not (len(labels) == len(values) == len(colors)) or not labels:
        raise ValueError("hbar_chart needs one label, value and colour per bar, and at least one bar")
    finite = [v for v in values if math.isfinite(v)]
    lo = min([0.0, *finite])
    hi = max([0.0, *finite])
    if hi == lo:
        hi = lo + 1.0
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def x(v: float) -> float:
        return LABEL_W + (v - lo) / (hi - lo) * PLOT_W

    top = 22
    height = top + ROW * len(labels) + 42
    width = LABEL_W + PLOT_W + 70
    out = [
        f'<svg class="bars" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<g font-family="sans-serif" font-size="10" fill="#222">',
    ]
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 4}" '
                   f'y2="{top + ROW * len(labels)}" stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{top + ROW * len(labels) + 14}" '
                   f'text-anchor="middle">{_fmt_tick(t)}</text>')
    for i, (lab, v, c) in enumerate(zip(labels, values, colors, strict=True)):
        y = top + i * ROW
        v0 = v if math.isfinite(v) else (hi if v > 0 else lo)
        x0, x1 = sorted((x(0.0), x(v0)))
        out.append(f'<text x="{LABEL_W - 6}" y="{y + ROW - 4}" text-anchor="end">'
                   f"{escape(_short(lab))}</text>")
        out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.5):.1f}" '
                   f'height="{ROW - 4}" fill="{escape(c)}"><title>{escape(lab)}: '
                   f"{escape(texts[i] if texts else f'{v:g}')}</title></rect>")
        if texts:
            out.append(f'<text x="{max(x1, x(0.0)) + 4:.1f}" y="{y + ROW - 4}" '
                       f'font-size="9" fill="#555">{escape(texts[i])}</text>')
    out.append(f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{top - 4}" '
               f'y2="{top + ROW * len(labels)}" stroke="#333"/>')
    out.append(f'<text x="{LABEL_W + PLOT_W / 2}" y="{height - 8}" text-anchor="middle">'
               f"{escape(xlabel)}</text>")
    out.append(f'<text x="{PAD}" y="14" font-weight="bold">{escape(title)}</text>')
    out.append("</g></svg>")
    return "".join(out)


def _short(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _fmt_tick(t: float) -> str:
    return f"{t + 0.0:g}"  # no "-0"
