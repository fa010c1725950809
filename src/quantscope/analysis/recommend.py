"""The recommender: which variant of a :class:`Results` to pick, and why, in one rule.

``tune`` chooses with it, and every report stars what it returns, so the two never disagree.

Candidates are the quantized variants within the quality budget (when ``Results.max_drop`` is
set) or else those tied for the smallest drop against float. Among them, one that is not slower
than float (batch 1, 1 thread, 5 % tolerance for timing noise) wins over one that is: a smaller
file that runs slower is rarely what a deployment wants. Then, by the objective: ``"size"``
takes the smallest file, then the highest SQNR against float (timing noise must not pick
between variants of the same size), then the fastest; ``"latency"`` takes the fastest, then the
smallest file. Names break the last ties, so the choice is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from quantscope.analysis.budget import allowed_drop, within_budget
from quantscope.analysis.results import Results, VariantResult

Objective = Literal["size", "latency"]
OBJECTIVES: tuple[Objective, ...] = ("size", "latency")
NOISE = 1.05  # a variant up to 5 % slower than float counts as "not slower" (timing noise)


@dataclass(frozen=True)
class Recommendation:
    name: str
    reason: str  # e.g. "the smallest variant within the quality budget"


def latency_ms(v: VariantResult, batch: int, threads: int | None = 1) -> float | None:
    """The median latency measured at ``batch`` and ``threads``, if it was."""
    for lat in v.latency:
        if lat.batch == batch and lat.threads == threads:
            return lat.median_ms
    return None


def not_slower_than_float(results: Results, v: VariantResult) -> bool:
    ref = results.reference
    mine, base = latency_ms(v, 1), latency_ms(ref, 1) if ref is not None else None
    return mine is None or base is None or mine <= base * NOISE


def recommend(results: Results, objective: Objective | None = None) -> Recommendation | None:
    """The variant to pick (``objective`` defaults to ``results.objective``), or None when none qualifies."""
    objective = objective or results.objective
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; choose 'size' or 'latency'")
    quantized = [v for v in results.variants if v.kind != "float" and results.drop(v) is not None]
    if not quantized:
        return None
    what = "the fastest" if objective == "latency" else "the smallest"
    if allowed_drop(results) is not None:
        candidates = [v for v in quantized if within_budget(results, v)]
        if not candidates:
            return None
        what += " variant within the quality budget"
    else:
        least = min(drop_key(results.drop(v)) for v in quantized)
        candidates = [v for v in quantized if drop_key(results.drop(v)) <= least + 1e-9]
        what += " of the variants closest to the float model"
    fast = [v for v in candidates if not_slower_than_float(results, v)]
    pick = min(fast or candidates, key=_order(objective))
    if fast and len(fast) < len(candidates):
        what += " that is not slower than float"
    elif not fast:
        what += " (all of them run slower than float here)"
    return Recommendation(pick.name, what)


def drop_key(d: float | None) -> float:
    """A drop as a sort key: unknown or NaN sorts last."""
    return math.inf if d is None or math.isnan(d) else d


def _order(objective: Objective) -> Callable[[VariantResult], tuple[float, float, float, str]]:
    def key(v: VariantResult) -> tuple[float, float, float, str]:
        latency = latency_ms(v, 1) or math.inf
        if objective == "latency":
            return (latency, v.size_bytes, -_fidelity(v), v.name)
        return (v.size_bytes, -_fidelity(v), latency, v.name)

    return key


def _fidelity(v: VariantResult) -> float:
    sqnr = v.quality.get("sqnr_db")
    return sqnr if sqnr is not None and not math.isnan(sqnr) else -math.inf
