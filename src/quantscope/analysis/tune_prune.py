"""Keeping only the float nodes that buy quality back: the last step of ``tune``'s float-node search.

The greedy step of :mod:`quantscope.analysis.tune` adds nodes to the float set one at a time,
in the order a sensitivity ranking on a subset of the data gave, until the variant meets the
budget. A node added early can turn out to buy nothing once a later one is float too (or the
ranking was wrong on the subset). :func:`prune` then tries each node of the set back in int8,
the one whose step bought the least first, re-measures the variant on the full evaluation data,
and leaves the node quantized when the variant still meets the budget. Every node ends with the
quality it buys (the drop without it minus the drop with it, metric units; positive = it helps)
and whether it stays float. At most ``max_trials`` variants are re-measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quantscope.analysis.budget import fits
from quantscope.analysis.results import Results, VariantResult
from quantscope.config import MethodConfig
from quantscope.errors import QuantscopeError
from quantscope.quantization import QuantizedModel

logger = logging.getLogger(__name__)

MAX_TRIALS = 6
"""Re-measured variants at most, however many nodes are float (keeps ``tune``'s time bounded)."""


@dataclass(frozen=True)
class FloatNode:
    """One node ``tune`` kept in float or tried to: the quality it buys back and whether it stays float.

    ``gain`` is the drop without this node in float minus the drop with it (metric units;
    positive: it buys quality back), None when not measured (the trial cap was reached).
    """

    node: str
    gain: float | None
    kept: bool


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` leaves: the nodes still float, the variant they make, and the facts."""

    nodes: tuple[str, ...]
    name: str
    config: MethodConfig
    quantized: QuantizedModel
    variant: VariantResult
    measured: list[VariantResult]  # every variant prune measured, in order
    float_nodes: tuple[FloatNode, ...]
    reasons: list[str]


Measure = Callable[[str, QuantizedModel], VariantResult]
"""Measure a named quantized model on the evaluation data (as ``tune`` measures its candidates)."""

Build = Callable[[Sequence[str]], tuple[MethodConfig, QuantizedModel]]
"""The base config with these nodes kept in float, and the model it makes (a QuantscopeError: cannot)."""


def prune(
    *,
    results: Results,
    base: VariantResult,
    nodes: Sequence[str],
    step_gains: Sequence[float | None],
    chosen: tuple[str, MethodConfig, QuantizedModel, VariantResult],
    allowed: float,
    build: Build,
    measure: Measure,
    max_trials: int | None = None,
) -> Pruned:
    """Drop the nodes of ``nodes`` (in the order added; ``step_gains[i]`` what adding it bought)
    that the variant does not need to stay within ``allowed`` (see the module docstring).

    ``chosen`` is the greedy step's pick (name, config, model, measured result) with all of
    ``nodes`` in float; ``base`` is the variant with none of them (its drop is known).
    ``max_trials`` (default :data:`MAX_TRIALS`) caps the variants re-measured.
    """
    cap = MAX_TRIALS if max_trials is None else max_trials
    name, config, quantized, variant = chosen
    keep = list(nodes)
    current = _drop(results, variant)
    measured: list[VariantResult] = []
    gains: dict[str, float | None] = dict.fromkeys(nodes)
    reasons: list[str] = []
    order = sorted(range(len(nodes)), key=lambda i: (_key(step_gains[i]), -i))
    trials = 0
    for i in order:
        node = nodes[i]
        rest = [n for n in keep if n != node]
        if not rest:  # without it, the variant is the base one: already measured
            gains[node] = _gain(_drop(results, base), current)
            reasons.append(f"Without {node} in float the model is {base.name} again (drop "
                           f"{_fmt(_drop(results, base))}): {node} buys back {_fmt(gains[node])} and stays float.")
            continue
        if trials >= cap:
            logger.info("tune: float node %s not re-checked (at most %d re-measurements)", node, cap)
            continue
        trials += 1
        try:
            cfg, q = build(rest)
        except QuantscopeError as exc:
            reasons.append(f"{node} cannot be quantized again with the others float ({exc}); it stays float.")
            continue
        trial = measure(f"{base.name}+{len(rest)}float-without-{node}", q)
        measured.append(trial)
        drop = _drop(results, trial)
        gains[node] = _gain(drop, current)
        if fits(drop, allowed):
            reasons.append(
                f"Quantizing {node} again (the others float) leaves the drop at {_fmt(drop)}, within the budget "
                f"{_fmt(allowed)}: it buys back {_fmt(gains[node])}, not needed, so it is quantized."
            )
            keep, current = rest, drop
            name, config, quantized, variant = trial.name, cfg, q, trial
        else:
            reasons.append(
                f"Quantizing {node} again would take the drop to {_fmt(drop)}, over the budget {_fmt(allowed)}: "
                f"it buys back {_fmt(gains[node])} and stays float."
            )
    facts = tuple(FloatNode(n, gains[n], n in keep) for n in nodes)
    return Pruned(tuple(keep), name, config, quantized, variant, measured, facts, reasons)


def _drop(results: Results, v: VariantResult) -> float | None:
    return results.drop(v)  # against results' float model; v need not be one of its variants


def _gain(without: float | None, with_it: float | None) -> float | None:
    return None if without is None or with_it is None else without - with_it


def _key(gain: float | None) -> float:
    return float("-inf") if gain is None else gain


def _fmt(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.4g}"
