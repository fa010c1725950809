"""The Limitations section: plain sentences written from a :class:`RobustnessResult`'s numbers.

Nothing here is canned: every number in a sentence comes from the result, and a sentence is
written only for an effect of at least ``min_effect`` (a drop in quality, in the metric's units;
5 points of accuracy by default) or ``min_gap`` (a difference between the float model and a
quantized variant; 2 points by default). For proportions (accuracy, agreement) both sizes are
raised to the sampling noise of the measurement when the number of samples is known: twice the
standard error of a difference of two proportions, ``2 * sqrt(2 p (1 - p) / n)``. Sentences are
ordered by the size of their effect, largest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from quantscope.analysis.results import RobustnessResult

PROPORTIONS = frozenset({"accuracy", "agreement", "top5"})
MAX_SLICE_SENTENCES = 5  # per kind: the worst slices only


@dataclass(frozen=True)
class _Fmt:
    metric: str

    @property
    def proportion(self) -> bool:
        return self.metric in PROPORTIONS

    def value(self, v: float) -> str:
        return f"{100 * v:.0f} %" if self.proportion else f"{v:.3g}"

    def diff(self, d: float) -> str:
        if not self.proportion:
            return f"{abs(d):.3g}"
        p = round(100 * abs(d))
        return "1 point" if p == 1 else f"{p} points"

    def gap(self, high: float, low: float) -> str:
        """``high - low`` as the reader computes it from the two values as printed."""
        if not self.proportion:
            return self.diff(high - low)
        return self.diff((round(100 * high) - round(100 * low)) / 100)

    @property
    def name(self) -> str:
        return "agreement with the float model" if self.metric == "agreement" else self.metric


def _margin(fmt: _Fmt, p: float, n: int | None, floor: float) -> float:
    if not fmt.proportion or not n:
        return floor
    p = min(max(p, 0.0), 1.0)
    return max(floor, 2.0 * math.sqrt(2.0 * p * (1.0 - p) / n))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def write_limitations(
    result: RobustnessResult,
    *,
    reference: str = "float",
    min_effect: float = 0.05,
    min_gap: float = 0.02,
) -> list[str]:
    """Sentences about the largest effects in ``result``, most severe first."""
    fmt = _Fmt(result.metric)
    n = result.samples
    found: list[tuple[float, str]] = []
    found += _shift_sentences(result, fmt, reference, n, min_effect, min_gap)
    found += _slice_sentences(result, fmt, reference, min_effect, min_gap)
    found += _calibration_sentences(result, fmt, n, min_effect)
    found.sort(key=lambda item: -item[0])
    return [_cap(text) for _, text in found]


def _table(result: RobustnessResult) -> dict[str, dict[str, dict[float, float]]]:
    """shift -> variant -> severity -> quality."""
    table: dict[str, dict[str, dict[float, float]]] = {}
    for p in result.shifts:
        if result.metric in p.quality:
            table.setdefault(p.shift, {}).setdefault(p.variant, {})[p.severity] = p.quality[result.metric]
    return table


def _descriptions(result: RobustnessResult) -> dict[tuple[str, float], str]:
    return {(p.shift, p.severity): p.description or f"{p.shift} is at severity {p.severity:g}" for p in result.shifts}


def _worst(curve: dict[float, float]) -> tuple[float, float]:
    """(severity, drop) of the largest drop from severity 0; the lowest severity on ties."""
    clean = curve[0.0]
    sev = min(curve, key=lambda s: (curve[s], s))
    return sev, clean - curve[sev]


def _shift_sentences(
    result: RobustnessResult, fmt: _Fmt, reference: str, n: int | None, min_effect: float, min_gap: float
) -> Iterable[tuple[float, str]]:
    desc = _descriptions(result)
    for shift, curves in _table(result).items():
        ref = curves.get(reference)
        if ref is None or 0.0 not in ref:
            continue
        others = {v: c for v, c in curves.items() if v != reference and 0.0 in c}
        sev, drop = _worst(ref)
        if drop >= _margin(fmt, ref[0.0], n, min_effect):
            text = f"{fmt.name} falls from {fmt.value(ref[0.0])} to {fmt.value(ref[sev])} when {desc[shift, sev]}"
            key = drop
            bp = result.breaking_points.get(shift, {}).get(reference)
            if bp is not None and bp < sev and result.threshold is not None:
                text += f" (below {fmt.value(result.threshold)} already when {desc[shift, bp]})"
            for variant, curve in others.items():
                if sev not in curve:
                    continue
                extra = (curve[0.0] - curve[sev]) - drop
                if abs(extra) >= _margin(fmt, ref[sev], n, min_gap):
                    more = "more" if extra > 0 else "less"
                    text += f"; {variant} loses {fmt.diff(extra)} {more} than {reference} there"
                    key = max(key, drop + extra)
            yield key, text
        for variant, curve in others.items():
            vsev, vdrop = _worst(curve)
            extra = vdrop - (ref[0.0] - ref.get(vsev, ref[0.0]))
            if vsev in ref and vdrop >= _margin(fmt, curve[0.0], n, min_effect) and (
                drop < _margin(fmt, ref[0.0], n, min_effect)
            ) and extra >= _margin(fmt, curve[vsev], n, min_gap):
                yield vdrop, (
                    f"{variant}'s {fmt.name} falls from {fmt.value(curve[0.0])} to {fmt.value(curve[vsev])} "
                    f"when {desc[shift, vsev]}, while {reference} stays at {fmt.value(ref[vsev])}"
                )
        yield from _breaking_sentences(result, fmt, shift, curves, reference, desc, n, min_gap)


def _breaking_sentences(
    result: RobustnessResult,
    fmt: _Fmt,
    shift: str,
    curves: dict[str, dict[float, float]],
    reference: str,
    desc: dict[tuple[str, float], str],
    n: int | None,
    min_gap: float,
) -> Iterable[tuple[float, str]]:
    points = result.breaking_points.get(shift, {})
    if result.threshold is None or reference not in curves:
        return
    ref_bp = points.get(reference)
    for variant, bp in points.items():
        if variant == reference or bp is None or bp == 0.0 or (ref_bp is not None and ref_bp <= bp):
            continue
        ref_there = curves[reference].get(bp)
        mine = curves.get(variant, {}).get(bp)
        if ref_there is None or mine is None or ref_there - mine < _margin(fmt, ref_there, n, min_gap):
            continue
        then = (
            f"{reference} only when {desc[shift, ref_bp]}"
            if ref_bp is not None
            else f"{reference} stays above it over the whole range tested"
        )
        yield ref_there - mine, (
            f"{variant} falls below the {fmt.value(result.threshold)} threshold already when "
            f"{desc[shift, bp]} ({fmt.value(mine)} against {fmt.value(ref_there)} for {reference}); {then}"
        )


def _slice_sentences(
    result: RobustnessResult, fmt: _Fmt, reference: str, min_effect: float, min_gap: float
) -> Iterable[tuple[float, str]]:
    overall: dict[str, float] = {}
    for p in result.shifts:
        if p.severity == 0.0 and result.metric in p.quality:
            overall[p.variant] = p.quality[result.metric]
    if reference not in overall:
        return
    base = overall[reference]
    by_slice: dict[str, dict[str, tuple[float, int]]] = {}
    for r in result.slices:
        if result.metric in r.quality:
            by_slice.setdefault(r.slice, {})[r.variant] = (r.quality[result.metric], r.samples)
    weak: list[tuple[float, str]] = []
    worse: dict[str, list[tuple[float, str]]] = {}
    for name, values in by_slice.items():
        if reference not in values:
            continue
        ref_value, count = values[reference]
        gap = base - ref_value
        if gap >= _margin(fmt, ref_value, count, min_effect):
            weak.append((gap, f"{fmt.name} on {name} is {fmt.value(ref_value)} against {fmt.value(base)} "
                              f"overall ({count} samples)"))
        for variant, (value, _) in values.items():
            if variant == reference or variant not in overall:
                continue
            loss_overall = base - overall[variant]
            extra = (ref_value - value) - loss_overall
            if extra >= _margin(fmt, value, count, min_gap):
                worse.setdefault(variant, []).append((extra, (
                    f"{variant} loses {fmt.gap(ref_value, value)} against {reference} on {name} "
                    f"({fmt.value(value)} against {fmt.value(ref_value)}), {fmt.diff(extra)} more than overall"
                )))
    for items in (weak, *worse.values()):
        yield from sorted(items, key=lambda item: -item[0])[:MAX_SLICE_SENTENCES]


def _calibration_sentences(
    result: RobustnessResult, fmt: _Fmt, n: int | None, min_effect: float
) -> Iterable[tuple[float, str]]:
    effect = result.calibration_effect
    if effect is not None and effect.values:
        efmt = _Fmt(effect.metric)
        for j, target in enumerate(effect.targets):
            column = [row[j] for row in effect.values]
            best = max(range(len(column)), key=lambda i: column[i])
            worst = min(range(len(column)), key=lambda i: column[i])
            gap = column[best] - column[worst]
            if gap >= _margin(efmt, column[best], n, min_effect):
                yield gap, (
                    f"static-int8 calibrated on {effect.sources[worst]} data scores "
                    f"{efmt.value(column[worst])} on {target} data, {efmt.gap(column[best], column[worst])} below static-int8 "
                    f"calibrated on {effect.sources[best]} data ({efmt.value(column[best])}; the float model: "
                    f"{efmt.value(effect.float_values[j])})"
                )
    points = sorted(result.calibration_size, key=lambda p: p.samples)
    values = [(p.samples, p.quality[fmt.metric]) for p in points if fmt.metric in p.quality]
    if len(values) >= 2:
        best_n, best = max(values, key=lambda item: (item[1], -item[0]))
        low_n, low = values[0]
        gap = best - low
        if low_n < best_n and gap >= _margin(fmt, best, n, min_effect):
            enough = next(m for m, v in values if best - v < _margin(fmt, best, n, min_effect))
            yield gap, (
                f"static-int8 calibrated on {low_n} samples scores {fmt.value(low)}, {fmt.gap(best, low)} below "
                f"the {fmt.value(best)} it reaches with {best_n}; it needs {enough} samples to come "
                f"within {fmt.diff(_margin(fmt, best, n, min_effect))} of that"
            )


__all__ = ["write_limitations"]
