"""How sure a number is: intervals on quality and on latency ratios, so no choice rests on noise.

* accuracy-like metrics (a fraction of samples right) get a Wilson score interval from the
  sample count;
* other metrics (cosine, SQNR, KL, a user's function) get a percentile bootstrap over samples;
* a latency ratio gets a paired bootstrap over interleaved rounds (float and variant timed
  alternately, so load on a shared machine hits both alike).

Every interval is 95 % two-sided unless ``z``/``level`` says otherwise, and every bootstrap is
seeded, so a result is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959964
BOOTSTRAP = 400

PROPORTIONS = frozenset({"accuracy", "top5", "agreement"})
"""Metrics that are a fraction of samples: their interval comes from the sample count alone."""


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``(0, 1)`` for no samples)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap(
    statistic: Callable[[np.ndarray], float | None], n: int, *, resamples: int = BOOTSTRAP, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` samples (None: cannot tell)."""
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        try:
            v = float(statistic(rng.integers(0, n, n)))
        except (TypeError, ValueError, FloatingPointError, ZeroDivisionError):
            continue
        if math.isfinite(v):
            values.append(v)
    if len(values) < resamples // 2:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two intervals share a point (an unknown interval overlaps everything)."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def ratio_interval(
    numer: Sequence[float], denom: Sequence[float], *, resamples: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float, float]:
    """Ratio of medians ``median(numer) / median(denom)`` of paired rounds, and its bootstrap interval.

    Rounds are resampled in pairs, so a slow moment of the machine moves both sides together.
    """
    a, b = np.asarray(numer, dtype=np.float64), np.asarray(denom, dtype=np.float64)
    point = float(np.median(a) / np.median(b))
    interval = bootstrap(lambda i: float(np.median(a[i]) / np.median(b[i])), len(a), resamples=resamples,
                         seed=seed)
    lo, hi = interval if interval is not None else (0.0, math.inf)
    return point, lo, hi


NOISY_SPREAD = 1.5
"""An interval on a speed ratio wider than this factor (high / low) says the machine was too noisy."""

NEGLIGIBLE = 1.03
"""A speed ratio whose whole interval lies within [1 / this, this] is "same speed" (a 3 % difference)."""

IMMATERIAL_MS = 0.001
"""A per-call time difference below this (1 µs) is "same speed" whatever the ratio, where a verdict is
reported: two sessions of the very same 6 µs graph measured 3 % apart (where their buffers land), so
on a model that runs in a few microseconds a few percent is no difference one can tell. static-int8's
speed search does not use it: there every measured loss counts, and a region or a whole plan that
loses stays float."""


def speed_verdict(
    low: float | None, high: float | None, point: float | None = None, *, reference_ms: float | None = None
) -> str:
    """``"faster"``, ``"slower"``, ``"same"`` or ``"noisy"`` for a speed ratio (float time / variant time).

    A difference must be both outside the noise (the interval excludes 1.0) and material (the
    estimate ``point`` at least :data:`NEGLIGIBLE` away from 1.0) to count. ``"same"`` when the
    interval includes 1.0 or the difference is negligible; ``"noisy"`` when the interval includes
    1.0 and is too wide (:data:`NOISY_SPREAD`) to tell even a large difference; ``"unknown"``
    without an interval. With the reference's per-call time ``reference_ms``, a difference under
    :data:`IMMATERIAL_MS` per call is ``"same"`` too.
    """
    if low is None or high is None:
        return "unknown"
    mid = point if point is not None else (low * high) ** 0.5 if low > 0 else high
    if reference_ms is not None and mid > 0 and abs(reference_ms - reference_ms / mid) < IMMATERIAL_MS:
        return "same"
    if low > 1.0 and mid >= NEGLIGIBLE:
        return "faster"
    if high < 1.0 and mid <= 1 / NEGLIGIBLE:
        return "slower"
    if low <= 1.0 <= high and (low <= 0 or high / low > NOISY_SPREAD):
        return "noisy"
    return "same"
