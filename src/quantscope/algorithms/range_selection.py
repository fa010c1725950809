"""Choosing each activation's range, and saying when a range clips heavily.

With ``calibration="auto"`` every tensor gets the candidate range (min-max, percentile, entropy,
MSE) with the least expected quantization error that saturates at most ``max_saturation`` (0.01 %) of its
values (:func:`quantscope.numerics.ranges.auto_choice`); model inputs always get min-max (an input
clipped by a calibrator is the classic way a model is wrecked: entropy once clipped a CNN's
input to [0, 0.0625], saturating 47.5 % of its values). With an explicit calibrator the range is
the user's, but a warning gives the share of values it saturates when that share is large.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from quantscope.calibrate import TensorStats
from quantscope.config.calibration import Auto, Calibrator
from quantscope.numerics.ranges import auto_choice, minmax_range, quantization_error, saturation

logger = logging.getLogger(__name__)

WARN_SATURATION = 0.01
"""An explicit calibrator that saturates more than this share of a tensor's values is reported."""

WARN_INPUT_SATURATION = 0.001
"""The same for a model input, where any clipping is suspect."""

WARN_ERROR_RATIO = 4.0
"""An explicit calibrator whose clipping makes a tensor's expected quantization error this many
times min-max's is reported too (a few clipped outliers in a transformer can cost more than a
large clipped share elsewhere)."""


@dataclass
class RangeSelection:
    """Ranges for the calibrated tensors of one plan, with what was chosen and what clipped."""

    stats: TensorStats
    calibrator: Calibrator
    inputs: frozenset[str]
    rules: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, float] = field(default_factory=dict)
    costly: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, stats: TensorStats, calibrator: Calibrator, inputs: Iterable[str]) -> RangeSelection:
        return cls(stats=stats, calibrator=calibrator, inputs=frozenset(inputs))

    def range(self, name: str) -> tuple[tuple[float, float], str]:
        """The range of tensor ``name`` and its source (``calibrated:auto/mse``, ``calibrated:entropy``)."""
        obs = self.stats.observers[name]
        if not obs.histogram and self.calibrator.needs_histograms:  # derived from other statistics (a smoothed input): min/max is all there is
            self.rules[name] = "minmax"
            return minmax_range(obs), "calibrated:minmax (derived)"
        if isinstance(self.calibrator, Auto):
            if name in self.inputs:
                rule, lo_hi = "minmax", minmax_range(obs)
                rule_source = "minmax, model input"
            else:
                rule, lo_hi = auto_choice(obs, self.calibrator.max_saturation)
                rule_source = rule
            self.rules[name] = rule
            return lo_hi, f"calibrated:auto/{rule_source}"
        lo_hi = self.calibrator.range(obs)
        self.rules[name] = self.calibrator.name
        share = saturation(obs, *lo_hi)
        limit = WARN_INPUT_SATURATION if name in self.inputs else WARN_SATURATION
        if share > limit:
            self.clipped[name] = share
        elif share > 0 and obs.histogram:
            ratio = quantization_error(obs, *lo_hi) / max(quantization_error(obs, *minmax_range(obs)), 1e-30)
            if ratio > WARN_ERROR_RATIO:
                self.costly[name] = ratio
        return lo_hi, f"calibrated:{self.calibrator.name}"

    def warnings(self) -> list[str]:
        """Warnings naming the tensors an explicit calibrator clips heavily or costly (worst first)."""
        out = []
        advice = ("calibration='auto' (the default) never clips a model input, saturates at most "
                  "max_saturation (0.01 %) of any tensor and is never estimated worse than min-max")
        if self.clipped:
            listed = _listed(self.clipped, lambda name, share: f"{name!r}{self._input(name)} {share:.1%}")
            out.append(f"calibration {self.calibrator} saturates a large share of the values of "
                       f"{len(self.clipped)} tensor(s): {listed}; this can wreck the model's accuracy. {advice}")
        if self.costly:
            listed = _listed(self.costly, lambda name, ratio: f"{name!r}{self._input(name)} {ratio:.0f}x")
            out.append(f"calibration {self.calibrator} clips outliers whose loss makes the expected quantization "
                       f"error larger than min-max's on {len(self.costly)} tensor(s): {listed}. {advice}")
        return out

    def _input(self, name: str) -> str:
        return " (a model input)" if name in self.inputs else ""

    def summary(self) -> dict[str, Any]:
        """For the plan's ``extra``: the calibrator, how often each rule was chosen, what clipped."""
        out: dict[str, Any] = {"calibrator": str(self.calibrator), "rules": dict(Counter(self.rules.values()))}
        protected = sorted(n for n in self.inputs if n in self.rules)
        if isinstance(self.calibrator, Auto) and protected:
            out["protected_inputs"] = protected
        if self.clipped:
            out["saturated_share"] = {n: round(s, 6) for n, s in sorted(self.clipped.items())}
        if self.costly:
            out["error_vs_minmax"] = {n: round(r, 3) for n, r in sorted(self.costly.items())}
        return out


def _listed(values: dict[str, float], show: Callable[[str, float], str]) -> str:
    worst = sorted(values.items(), key=lambda kv: -kv[1])
    more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
    return ", ".join(show(name, value) for name, value in worst[:5]) + more
