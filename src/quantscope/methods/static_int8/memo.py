"""What plans over one prepared model and one set of statistics share.

The latency search (:mod:`.latency`) plans many variants of the same model, each keeping other
nodes float. What a variant would recompute is the same every time: a tensor's chosen range,
SmoothQuant's scales (chosen once; the model then carries the rewrite) and a weight's int8 codes.
A :class:`PlanMemo` keeps them, so a variant costs the planner's walk and the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantscope.methods.static_int8.writer import weight_key
from quantscope.numerics.affine import QParams
from quantscope.plan import WeightQuant

RangeMemo = dict[str, tuple[tuple[float, float], str, str]]
WeightKey = tuple[str, int, int | None, int]  # node, input index, axis, bits


def key_of(wq: WeightQuant) -> WeightKey:
    return (wq.node, wq.input_index, wq.axis, wq.bits)


@dataclass
class PlanMemo:
    """Shared between plans of one model over the same statistics (not between models)."""

    ranges: RangeMemo = field(default_factory=dict)
    smoothquant: list[Mapping[str, Any]] | None = None
    """The first plan's SmoothQuant records; the model already carries their rewrite (None: not chosen yet)."""
    weights: dict[WeightKey, tuple[np.ndarray, QParams]] = field(default_factory=dict)

    def seed(self, weights: Iterable[WeightQuant], payload: Mapping[str, tuple[np.ndarray, QParams]]) -> None:
        """Known int8 weights (a plan's payload, keyed as the writer keys it)."""
        for wq in weights:
            if weight_key(wq) in payload:
                self.weights[key_of(wq)] = payload[weight_key(wq)]

    def weight(self, key: WeightKey, compute: Callable[[], tuple[np.ndarray, QParams]]) -> tuple[np.ndarray, QParams]:
        """The int8 codes and parameters of one weight, computed once."""
        if key not in self.weights:
            self.weights[key] = compute()
        return self.weights[key]
