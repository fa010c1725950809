"""Ranges judged at the consumers' outputs: transfer_error, and auto_choice with a transfer."""

from __future__ import annotations

import numpy as np

from quantscope.numerics.observers import TensorObserver
from quantscope.numerics.ranges import (
    Transfer,
    auto_choice,
    minmax_range,
    quantization_error,
    transfer_error,
)


def _observe(x: np.ndarray) -> TensorObserver:
    obs = TensorObserver(bins=2048)
    obs.update(x)
    return obs


def _table(obs: TensorObserver, f) -> Transfer:
    grid = np.linspace(min(obs.min, 0.0), max(obs.max, 0.0), 4097)
    return Transfer(grid=grid, values=f(grid)[None, :])


def _hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _fake_quant(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = (hi - lo) / 255
    zero = np.clip(np.rint(-lo / scale), 0, 255)
    return (np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale


def _conv_like(n: int, seed: int) -> np.ndarray:
    """A wide two-sided tensor (a Conv output before a HardSwish), a long negative tail."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 2.0, n), -rng.exponential(20.0, n // 4)]).astype(np.float32)


def test_an_identity_transfer_reproduces_the_tensors_own_error() -> None:
    obs = _observe(_conv_like(20000, 0))
    identity = _table(obs, lambda g: g)
    for lo, hi in (minmax_range(obs), (-8.0, 6.0)):
        err, _ = transfer_error(obs, lo, hi, identity)
        assert np.isclose(err, quantization_error(obs, lo, hi), rtol=0.1)


def test_clipping_inside_a_flat_region_saturates_nothing_and_costs_nothing() -> None:
    obs = _observe(_conv_like(20000, 2))
    t = _table(obs, _hardswish)
    _, hi = minmax_range(obs)
    err_cut, share = transfer_error(obs, -3.0, hi, t)
    err_full, _ = transfer_error(obs, *minmax_range(obs), t)
    assert share == 0.0 and err_cut < 0.5 * err_full


def test_auto_with_a_transfer_lowers_the_error_at_the_consumer_on_other_data() -> None:
    obs = _observe(_conv_like(20000, 3))
    t = _table(obs, _hardswish)
    rule, (lo, hi) = auto_choice(obs, transfer=t)
    _, (lo_own, hi_own) = auto_choice(obs)
    assert rule.endswith("(at consumers)")
    held_out = np.clip(_conv_like(20000, 4), obs.min, obs.max)  # other samples, inside the calibrated range
    def at_consumer(a: float, b: float) -> float:
        return float(np.mean((_hardswish(_fake_quant(held_out, a, b)) - _hardswish(held_out)) ** 2))
    assert at_consumer(lo, hi) < at_consumer(lo_own, hi_own)
    assert at_consumer(lo, hi) <= at_consumer(*minmax_range(obs))
