"""What plans over one prepared model and one set of statistics share.

The latency search (:mod:`.latency`) plans many variants of the same model, each keeping other
nodes float. What a variant would recompute is the same every time: a tensor's chosen range,
SmoothQuant's scales (chosen once; the model then carries the rewrite) and a weight's int8 codes.
A :class:`PlanMemo` keeps them, so a variant costs the planner's walk and the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantscope.numerics.affine import QParams

RangeMemo = dict[str, tuple[tuple[float, float], str, str]]
WeightKey = tuple[str, int, int | None, int]  # node, input index, axis, bits


@dataclass
class PlanMemo:
    """Shared between plans of one model over the same statistics (not between models)."""

    ranges: RangeMemo = field(default_factory=dict)
    smoothquant: list[Mapping[str, Any]] | None = None
    """The first plan's SmoothQuant records; the model already carries their rewrite (None: not chosen yet)."""
    weights: dict[WeightKey, tuple[np.ndarray, QParams]] = field(default_factory=dict)

    def weight(self, key: WeightKey, compute: Callable[[], tuple[np.ndarray, QParams]]) -> tuple[np.ndarray, QParams]:
        """The int8 codes and parameters of one weight, computed once."""
        if key not in self.weights:
            self.weights[key] = compute()
        return self.weights[key]
