"""Results, plans and tuning outcomes as HTML for Jupyter (what their ``_repr_html_`` returns).

A notebook shows the report inline: the same tables and SVG plots as ``index.html``, in one
self-contained ``<div>`` (no script, no file or network request). The report's stylesheet is
scoped to that ``<div>`` so it does not restyle the notebook, and every name from the model or
the data is escaped.
"""

from __future__ import annotations

import re
from typing import Any

from quantscope.reporting.html import CSS, _e, _table, report_body

ROOT = "quantscope-nb"
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
MAX_PLAN_ROWS = 200


def scoped_css(css: str = CSS, root: str = ROOT) -> str:
    """``css`` with every selector limited to ``.root`` (``body`` and ``:root`` become it)."""

    def one(selector: str) -> str:
        s = selector.strip()
        if s in ("body", ":root", "html"):
            return f".{root}"
        return f".{root} {s}"

    rules = []
    for selectors, declarations in _RULE.findall(css):
        rules.append(", ".join(one(s) for s in selectors.split(",")) + " {" + declarations + "}")
    return "\n".join(rules)


def _wrap(inner: str) -> str:
    return f'<div class="{ROOT}"><style>{scoped_css()}</style>{inner}</div>'


def results_html(results: Any) -> str:
    """A :class:`~quantscope.analysis.results.Results` as the report, inline."""
    return _wrap(report_body(results, nav=False))


def plan_html(plan: Any) -> str:
    """A :class:`~quantscope.plan.QuantPlan`: what was quantized, what stayed float and why."""
    s = plan.summary()
    head = (f"<h2>quantization plan: {_e(plan.method)}</h2><p class=\"summary\">{s['quantized']} node(s) "
            f"quantized, {s['fused']} fused, {s['float']} left in float, of {s['nodes']}</p>")
    parts = [head]
    if s["quantized_by_op"]:
        parts.append("<h4>Quantized, by operator</h4>" + _table(["op", "nodes"], s["quantized_by_op"].items(),
                                                                   cls="quantized-ops"))
    if s["float_reasons"]:
        parts.append("<h4>Left in float, and why</h4>" + _table(
            ["reason", "nodes"], sorted(s["float_reasons"].items(), key=lambda kv: -kv[1]), cls="reasons"))
    decisions = plan.decisions[:MAX_PLAN_ROWS]
    if decisions:
        more = len(plan.decisions) - len(decisions)
        table = _table(["node", "op", "action", "reason"],
                       [(d.node, d.op_type, d.action, d.reason) for d in decisions], cls="decisions", left=4)
        parts.append(f"<details><summary>Every node ({len(plan.decisions)})</summary>{table}"
                     + (f'<p class="muted">and {more} more</p>' if more > 0 else "") + "</details>")
    for title, lines, cls in (("Warnings", plan.warnings, "warnings"), ("Notes", plan.notes, "notes")):
        if lines:
            parts.append(f"<h4>{title}</h4><ul class=\"{cls}\">" + "".join(f"<li>{_e(x)}</li>" for x in lines)
                         + "</ul>")
    return _wrap("".join(parts))


def tune_html(result: Any) -> str:
    """A :class:`~quantscope.analysis.tune.TuneResult`: the choice, why, and every candidate's report."""
    reasons = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
    kept = (f"<p>kept in float: {', '.join(_e(n) for n in result.float_nodes)}</p>" if result.float_nodes else "")
    head = (f'<h2>tune: chose {_e(result.name)}</h2><ul class="reasons">{reasons}</ul>{kept}')
    return _wrap(head + report_body(result.results, nav=False))
