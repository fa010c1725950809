"""The recommender: which variant of a :class:`Results` to pick, for which objective, and why the runner-up lost.

``tune`` chooses with it, ``sweep`` logs it, and every report stars what it returns, so they never
disagree. No choice rests on a difference inside the noise:

1. **Quality.** Candidates are the quantized variants within the quality budget (when
   ``Results.max_drop`` is set), or else those whose quality is indistinguishable from the best
   variant's: their 95 % intervals (Wilson for accuracy-like metrics, a bootstrap otherwise;
   :mod:`quantscope.analysis.stats`) overlap. One sample "better" than the rest is not better.
2. **Speed against float.** Latency is a paired, interleaved comparison with the float model
   (batch 1, one thread); a variant whose speed interval lies entirely below 1.0 is slower than
   float and is not recommended while any candidate is not. A codebook variant (cluster,
   ternary, binary) runs float arithmetic once ONNX Runtime has unpacked its weights at load:
   unmeasured, its speed counts as the same as float's.
3. **The objective.** ``"size"``: the smallest file, unless a variant at most
   :data:`SIZE_TIE` larger is clearly faster (speed intervals apart): a size win of a few
   percent does not beat a clear speed win. ``"latency"``: the fastest; variants whose speed
   intervals overlap the fastest one's are the same speed, and the smallest of them wins.
   Names break the last ties, so the choice is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from quantscope.analysis import stats
from quantscope.analysis.budget import allowed_drop, within_budget
from quantscope.analysis.results import LatencyResult, Results, VariantResult

Objective = Literal["size", "latency"]
OBJECTIVES: tuple[Objective, ...] = ("size", "latency")
SIZE_TIE = 0.05
"""Files within 5 % of the smallest count as the same size when one of them is clearly faster."""
CODEBOOK_METHODS = frozenset({"cluster", "ternary", "binary"})
"""Methods whose weights ORT unpacks to float at load: float arithmetic, float speed."""


@dataclass(frozen=True)
class Recommendation:
    name: str
    reason: str  # e.g. "the smallest variant within the quality budget"
    objective: str = "size"
    runner_up: str | None = None
    runner_up_reason: str = ""  # why the runner-up lost, one sentence


def latency_result(v: VariantResult, batch: int, threads: int | None = 1) -> LatencyResult | None:
    for lat in v.latency:
        if lat.batch == batch and lat.threads == threads:
            return lat
    return None


def latency_ms(v: VariantResult, batch: int, threads: int | None = 1) -> float | None:
    """The median latency measured at ``batch`` and ``threads``, if it was."""
    lat = latency_result(v, batch, threads)
    return lat.median_ms if lat is not None else None


UNPAIRED_NOISE = 1.05
"""Timings not paired with float (results written before schema 3) get this factor either way as their interval."""


def speed(
    results: Results, v: VariantResult, batch: int = 1, threads: int | None = 1
) -> tuple[float, float, float] | None:
    """Float time / this variant's time and its 95 % interval, or None when not known.

    Unmeasured codebook variants count as exactly float speed (their arithmetic is float's).
    """
    if v.kind == "float":
        return (1.0, 1.0, 1.0)
    lat = latency_result(v, batch, threads)
    if lat is not None and lat.speed is not None and lat.speed_low is not None and lat.speed_high is not None:
        return (lat.speed, lat.speed_low, lat.speed_high)
    base = latency_ms(results.reference, batch, threads) if results.reference is not None else None
    if lat is not None and base is not None and lat.median_ms > 0:
        point = base / lat.median_ms
        return (point, point / UNPAIRED_NOISE, point * UNPAIRED_NOISE)
    if v.method in CODEBOOK_METHODS:
        return (1.0, 1.0, 1.0)
    return None


def speed_verdict(results: Results, v: VariantResult, batch: int = 1, threads: int | None = 1) -> str:
    """``faster``, ``slower``, ``same``, ``noisy`` (too noisy to tell) or ``unknown``, against float."""
    s = speed(results, v, batch, threads)
    if s is None:
        return "unknown"
    base = latency_ms(results.reference, batch, threads) if results.reference is not None else None
    return stats.speed_verdict(s[1], s[2], s[0], reference_ms=base)


def not_slower_than_float(results: Results, v: VariantResult) -> bool:
    return speed_verdict(results, v) != "slower"


def quality_interval(results: Results, v: VariantResult) -> tuple[float, float] | None:
    iv = v.quality_interval.get(results.metric)
    return (iv[0], iv[1]) if iv is not None and len(iv) == 2 else None


def same_quality(results: Results, a: VariantResult, b: VariantResult) -> bool:
    """Whether the primary metric of ``a`` and ``b`` differ by no more than the noise."""
    qa, qb = a.quality.get(results.metric), b.quality.get(results.metric)
    if qa is None or qb is None:
        return False
    ia, ib = quality_interval(results, a), quality_interval(results, b)
    if ia is None or ib is None:
        return abs(qa - qb) <= 1e-9
    return stats.overlap(ia, ib)


def recommend(results: Results, objective: Objective | None = None) -> Recommendation | None:
    """The variant to pick (``objective`` defaults to ``results.objective``), or None when none qualifies."""
    objective = objective or results.objective  # type: ignore[assignment]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; choose 'size' or 'latency'")
    quantized = [v for v in results.variants if v.kind != "float" and results.drop(v) is not None]
    if not quantized:
        return None
    if allowed_drop(results) is not None:
        candidates = [v for v in quantized if within_budget(results, v)]
        pool = "within the quality budget"
        if not candidates:
            return None
    else:
        best = min(quantized, key=lambda v: (drop_key(results.drop(v)), v.name))
        candidates = [v for v in quantized if v is best or same_quality(results, v, best)]
        pool = ("of the variants closest to the float model (quality within the noise of the best)"
                if len(candidates) > 1 else "of the variants, the one closest to the float model")
    usable = [v for v in candidates if speed_verdict(results, v) != "slower"]
    if usable and len(usable) < len(candidates):
        pool += ", not slower than float"
    elif not usable:
        pool += " (all of them run slower than float here)"
    ranked = _Ranker(results).rank(usable or candidates, objective)
    pick, why = ranked[0]
    runner = next((v for v, _ in ranked[1:]), None)
    lost = ""
    if runner is not None:
        lost = _Ranker(results).why_lost(pick, runner, objective)
    elif len(candidates) < len(quantized):
        lost = "every other quantized variant " + ("misses the quality budget" if allowed_drop(results) is not None
                                                    else "loses measurably more quality")
    return Recommendation(pick.name, f"{why} {pool}" if why else pool, objective, runner.name if runner else None,
                          lost)


class _Ranker:
    """Orders candidates by an objective with the speed intervals of one :class:`Results`."""

    def __init__(self, results: Results) -> None:
        self.results = results

    def speed(self, v: VariantResult) -> tuple[float, float, float] | None:
        return speed(self.results, v)

    def interval(self, v: VariantResult) -> tuple[float, float] | None:
        s = self.speed(v)
        return (s[1], s[2]) if s is not None else None

    def point(self, v: VariantResult) -> float:
        s = self.speed(v)
        return s[0] if s is not None else -math.inf

    def clearly_faster(self, a: VariantResult, b: VariantResult) -> bool:
        """``a`` is faster than ``b`` beyond the noise: their speed intervals are apart."""
        ia, ib = self.interval(a), self.interval(b)
        return ia is not None and ib is not None and ia[0] > ib[1]

    def rank(self, pool: Sequence[VariantResult], objective: Objective) -> list[tuple[VariantResult, str]]:
        """``pool`` in order of preference for ``objective``; the first carries the reason it won."""
        by_size = sorted(pool, key=lambda v: (v.size_bytes, -_fidelity(v), v.name))
        if objective == "size":
            smallest = by_size[0]
            near = [v for v in by_size if v.size_bytes <= smallest.size_bytes * (1 + SIZE_TIE)]
            faster = [v for v in near if self.clearly_faster(v, smallest)]
            if faster:
                pick = max(faster, key=lambda v: (self.point(v), -v.size_bytes))
                why = f"optimised for size: within {SIZE_TIE:.0%} of the smallest and clearly faster, the pick"
                return [(pick, why)] + [(v, "") for v in by_size if v is not pick]
            return [(v, "optimised for size: the smallest" if i == 0 else "") for i, v in enumerate(by_size)]
        timed = [v for v in pool if self.speed(v) is not None]
        if not timed:
            return [(v, "optimised for speed, but no latency was measured: the smallest" if i == 0 else "")
                    for i, v in enumerate(by_size)]
        fastest = max(timed, key=lambda v: (self.point(v), -v.size_bytes))
        same = [v for v in by_size if v in timed and stats.overlap(self.interval(v), self.interval(fastest))]
        pick = same[0]
        why = "optimised for speed: the fastest" if pick is fastest else \
            "optimised for speed: as fast as the fastest (within the timing noise) and smaller, the fastest"
        rest = sorted((v for v in pool if v is not pick), key=lambda v: (-self.point(v), v.size_bytes, v.name))
        return [(pick, why)] + [(v, "") for v in rest]

    def why_lost(self, pick: VariantResult, runner: VariantResult, objective: Objective) -> str:
        size_pct = (runner.size_bytes / pick.size_bytes - 1) * 100 if pick.size_bytes else math.nan
        sp, sr = self.speed(pick), self.speed(runner)
        speeds = f" (speed vs float {_fmt_speed(sr)} against {_fmt_speed(sp)})" if sp or sr else ""
        if objective == "size":
            if runner.size_bytes <= pick.size_bytes and runner is not pick and self.clearly_faster(pick, runner):
                return (f"{runner.name} is {-size_pct:.1f} % smaller, a size win under {SIZE_TIE:.0%}, "
                        f"but {pick.name} is clearly faster{speeds}")
            if runner.size_bytes == pick.size_bytes:
                return f"{runner.name} is the same size, with lower fidelity (SQNR) or a later name"
            return f"{runner.name} is {size_pct:.1f} % larger" + (
                "" if self.clearly_faster(runner, pick) else " and not clearly faster") + speeds
        if sr is None:
            return f"{runner.name} has no latency measured"
        if stats.overlap(self.interval(runner), self.interval(pick)):
            return f"{runner.name} is the same speed within the timing noise{speeds} and {size_pct:.1f} % larger"
        return f"{runner.name} is clearly slower{speeds}"


def _fmt_speed(s: tuple[float, float, float] | None) -> str:
    return "unknown" if s is None else f"{s[0]:.2f}x [{s[1]:.2f}, {s[2]:.2f}]"


def _fidelity(v: VariantResult) -> float:
    sqnr = v.quality.get("sqnr_db")
    return sqnr if sqnr is not None and not math.isnan(sqnr) else -math.inf


def drop_key(d: float | None) -> float:
    """A drop as a sort key: unknown or NaN sorts last."""
    return math.inf if d is None or math.isnan(d) else d
