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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from quantscope.calibrate import TensorStats
from quantscope.config.calibration import Auto, Calibrator
from quantscope.numerics.ranges import auto_choice, minmax_range, saturation

logger = logging.getLogger(__name__)

WARN_SATURATION = 0.01
"""An explicit calibrator that saturates more than this share of a tensor's values is reported."""

WARN_INPUT_SATURATION = 0.001
"""The same for a model input, where any clipping is suspect."""


@dataclass
class RangeSelection:
    """Ranges for the calibrated tensors of one plan, with what was chosen and what clipped."""

    stats: TensorStats
    calibrator: Calibrator
    inputs: frozenset[str]
    rules: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, float] = field(default_factory=dict)

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
        return lo_hi, f"calibrated:{self.calibrator.name}"

    def warnings(self) -> list[str]:
        """One warning naming the tensors an explicit calibrator clips heavily (worst first)."""
        if not self.clipped:
            return []
        worst = sorted(self.clipped.items(), key=lambda kv: -kv[1])
        listed = ", ".join(
            f"{name!r}{' (a model input)' if name in self.inputs else ''} {share:.1%}" for name, share in worst[:5]
        )
        more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
        return [
            f"calibration {self.calibrator} saturates a large share of the values of {len(worst)} tensor(s): "
            f"{listed}{more}; this can wreck the model's accuracy. calibration='auto' (the default) "
            "never clips a model input and saturates at most max_saturation (0.01 %) of any tensor"
        ]

    def summary(self) -> dict[str, Any]:
        """For the plan's ``extra``: the calibrator, how often each rule was chosen, what clipped."""
        out: dict[str, Any] = {"calibrator": str(self.calibrator), "rules": dict(Counter(self.rules.values()))}
        protected = sorted(n for n in self.inputs if n in self.rules)
        if isinstance(self.calibrator, Auto) and protected:
            out["protected_inputs"] = protected
        if self.clipped:
            out["saturated_share"] = {n: round(s, 6) for n, s in sorted(self.clipped.items())}
        return out
