"""The quality budget: one rule for whether a variant stays within ``max_drop`` of the float model.

``max_drop`` is a fraction of the float model's value of the primary metric (0.01 = 1 %); the
allowed drop in the metric's units is ``max_drop * |float value|`` (``max_drop`` itself when that
value is 0 or not finite). A variant is within the budget when its drop against the float model
(positive = worse, whichever way the metric points) is at most the allowed drop. ``analyze``'s
quality gate, ``tune`` and every report use these functions and nothing else.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from quantscope.errors import ConfigError, QualityGateError

if TYPE_CHECKING:
    from quantscope.analysis.results import Results, VariantResult


def check_max_drop(max_drop: float | None) -> float | None:
    """``max_drop`` itself when it is a fraction in [0, 1) (or None); :class:`ConfigError` otherwise."""
    if max_drop is not None and (
        isinstance(max_drop, bool) or not isinstance(max_drop, int | float) or not 0 <= max_drop < 1
    ):
        raise ConfigError(f"max_drop={max_drop!r} must be a fraction in [0, 1), e.g. 0.01 for 1 %")
    return max_drop


def quality_drop(reference: float, value: float, higher_is_better: bool = True) -> float:
    """Quality lost against the reference, in the metric's units (positive = worse)."""
    d = reference - value
    return d if higher_is_better else -d


def fits(drop: float | None, allowed: float) -> bool:
    """Whether a measured drop (metric units) is inside an allowed drop (metric units)."""
    return drop is not None and drop <= allowed


def allowed_drop(results: Results, max_drop: float | None = None) -> float | None:
    """The budget in metric units (``max_drop`` defaults to ``results.max_drop``).

    None when there is no budget or no float model value to take the fraction of.
    """
    budget = results.max_drop if max_drop is None else max_drop
    ref = results.reference
    if budget is None or ref is None or results.metric not in ref.quality:
        return None
    base = abs(ref.quality[results.metric])
    return budget * base if base > 0 and math.isfinite(base) else budget


def require_allowed_drop(results: Results, max_drop: float | None = None) -> float:
    """:func:`allowed_drop`, or :class:`QualityGateError` when it cannot be computed."""
    allowed = allowed_drop(results, max_drop)
    if allowed is None:
        raise QualityGateError(f"no float model result to compare against for metric {results.metric!r}")
    return allowed


def within_budget(results: Results, variant: VariantResult, max_drop: float | None = None) -> bool:
    """Whether ``variant`` (a quantized variant of ``results``) stays within the budget."""
    allowed = allowed_drop(results, max_drop)
    return allowed is not None and variant.kind != "float" and fits(results.drop(variant), allowed)


def variants_within_budget(results: Results, max_drop: float | None = None) -> list[VariantResult]:
    """The quantized variants of ``results`` within the budget, in their order."""
    return [v for v in results.variants if within_budget(results, v, max_drop)]


def quality_gate(results: Results, max_drop: float | None = None) -> list[VariantResult]:
    """The quantized variants within the budget; :class:`QualityGateError` when there are none.

    Without a budget (``max_drop`` and ``results.max_drop`` both None) every quantized variant passes.
    """
    budget = results.max_drop if max_drop is None else max_drop
    if budget is None:
        return [v for v in results.variants if v.kind != "float"]
    allowed = require_allowed_drop(results, budget)
    ok = variants_within_budget(results, budget)
    if not ok:
        drops = ", ".join(
            f"{v.name} {d:+.4g}" for v in results.variants if v.kind != "float" and (d := results.drop(v)) is not None
        )
        raise QualityGateError(
            f"no quantized variant stays within the quality budget: {results.metric} may drop by at most "
            f"{budget:.2%} of the float value ({allowed:.4g}); drops: {drops or 'none measured'}. "
            "Try another method or calibrator (quantscope sweep), exclude the most sensitive layers, "
            "or relax --max-drop"
        )
    return ok
