"""Choosing each activation's range, and guarding against the ranges that wreck a model.

With ``calibration="auto"`` every tensor gets the candidate range (min-max, percentile, entropy,
MSE) with the least expected quantization error that saturates at most ``max_saturation`` (0.01 %) of its
values (:func:`quantscope.numerics.ranges.auto_choice`). Where a tensor's float consumers are an
elementwise chain up to the next quantized tensor (a scale, a shift, a HardSwish after a Conv),
the error and the saturated share are judged at the chain's outputs instead of the tensor's own
(:mod:`quantscope.algorithms.consumer_transfer`): values the chain flattens can be clipped for free.
Model inputs always get min-max (an input clipped by a calibrator is the classic way a model is
wrecked: entropy can clip an image input to a small fraction of its range and saturate a large
share of its pixels).

With an explicit calibrator the ranges are the user's, under a guard (``Calibration.guard``, on
by default; ``StaticInt8(range_guard=False)`` or ``--no-range-guard`` turns it off): a model input
the calibrator would clip at all, and a tensor whose range would saturate more than
:data:`WARN_SATURATION` of its values or make its expected quantization error more than
:data:`WARN_ERROR_RATIO` times min-max's, keeps its min-max range instead; the plan lists them with
the share they would have saturated and a warning says so. Without the guard the same tensors are
only named in a warning.
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
    """Ranges for the calibrated tensors of one plan, with what was chosen, clipped or guarded."""

    stats: TensorStats
    calibrator: Calibrator
    inputs: frozenset[str]
    guard: bool = True
    rules: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, float] = field(default_factory=dict)
    costly: dict[str, float] = field(default_factory=dict)
    guarded: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Tensors the guard kept at min-max: {name: (share the calibrator would saturate, its error / min-max's)}."""

    @classmethod
    def of(
        cls, stats: TensorStats, calibrator: Calibrator, inputs: Iterable[str], *, guard: bool | None = None,
    ) -> RangeSelection:
        """``guard`` defaults to the one of the calibration the statistics were taken for (on if none)."""
        if guard is None:
            guard = stats.calibration.guard if stats.calibration is not None else True
        return cls(stats=stats, calibrator=calibrator, inputs=frozenset(inputs), guard=guard)

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
                rule, lo_hi = auto_choice(obs, self.calibrator.max_saturation, self.stats.transfers.get(name))
                rule_source = rule
            self.rules[name] = rule
            return lo_hi, f"calibrated:auto/{rule_source}"
        lo_hi = self.calibrator.range(obs)
        share = saturation(obs, *lo_hi)
        ratio = 1.0
        if share > 0 and obs.histogram:
            ratio = quantization_error(obs, *lo_hi) / max(quantization_error(obs, *minmax_range(obs)), 1e-30)
        is_input = name in self.inputs
        heavy = share > (WARN_INPUT_SATURATION if is_input else WARN_SATURATION)
        harmful = heavy or ratio > WARN_ERROR_RATIO or (is_input and share > 0)
        if self.guard and harmful:
            self.guarded[name] = (share, ratio)
            self.rules[name] = "minmax (guard)"
            return minmax_range(obs), f"calibrated:minmax, guard against {self.calibrator.name}"
        self.rules[name] = self.calibrator.name
        if heavy:
            self.clipped[name] = share
        elif ratio > WARN_ERROR_RATIO:
            self.costly[name] = ratio
        return lo_hi, f"calibrated:{self.calibrator.name}"

    def warnings(self) -> list[str]:
        """Warnings naming the tensors an explicit calibrator clips heavily or costly, or the guard kept (worst first)."""
        out = []
        advice = ("calibration='auto' (the default) never clips a model input, saturates at most "
                  "max_saturation (0.01 %) of any tensor and is never estimated worse than min-max")
        if self.guarded:
            shown = {name: share for name, (share, _) in self.guarded.items()}
            listed = _listed(shown, lambda name, share: f"{name!r}{self._input(name)} {_share(share)} saturated, "
                                                        f"{self.guarded[name][1]:.1f}x min-max's error")
            out.append(f"calibration {self.calibrator} would clip {len(self.guarded)} tensor(s) heavily: {listed}; "
                       "the range guard kept their min-max ranges (range_guard=False / --no-range-guard uses the "
                       f"calibrator's ranges as they are). {advice}")
        if self.clipped:
            listed = _listed(self.clipped, lambda name, share: f"{name!r}{self._input(name)} {_share(share)}")
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
        """For the plan's ``extra``: the calibrator, how often each rule was chosen, what clipped or was guarded."""
        out: dict[str, Any] = {"calibrator": str(self.calibrator), "rules": dict(Counter(self.rules.values()))}
        protected = sorted(n for n in self.inputs if n in self.rules)
        if isinstance(self.calibrator, Auto) and protected:
            out["protected_inputs"] = protected
        if not isinstance(self.calibrator, Auto):
            out["guard"] = self.guard
        if self.guarded:
            out["guarded"] = {n: {"saturated_share": round(s, 6), "error_vs_minmax": round(r, 3)}
                              for n, (s, r) in sorted(self.guarded.items())}
        if self.clipped:
            out["saturated_share"] = {n: round(s, 6) for n, s in sorted(self.clipped.items())}
        if self.costly:
            out["error_vs_minmax"] = {n: round(r, 3) for n, r in sorted(self.costly.items())}
        return out


def _listed(values: dict[str, float], show: Callable[[str, float], str]) -> str:
    worst = sorted(values.items(), key=lambda kv: -kv[1])
    more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
    return ", ".join(show(name, value) for name, value in worst[:5]) + more


def _share(share: float) -> str:
    """A saturated share as a percentage, with enough digits to show a small one."""
    return f"{share:.1%}" if share >= 0.001 or share == 0 else f"{share:.3%}"
