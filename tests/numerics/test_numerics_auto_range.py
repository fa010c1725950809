"""calibration='auto': never a larger quantization error than min-max, never much clipping."""

from __future__ import annotations

import numpy as np
import pytest

from quantscope.numerics.affine import activation_qparams
from quantscope.numerics.ranges import (
    auto_choice,
    minmax_range,
    percentile_range,
    quantization_error,
    saturation,
)
from quantscope.numerics.tensor_observer import TensorObserver


def _observe(x: np.ndarray) -> TensorObserver:
    obs = TensorObserver(bins=2048)
    for part in np.array_split(x.astype(np.float32), 4):
        obs.update(part)
    return obs


def _fake_quant_mse(x: np.ndarray, lo: float, hi: float) -> float:
    qp = activation_qparams(lo, hi, dtype=np.uint8)
    s, z = float(qp.scale), int(qp.zero_point)
    q = np.clip(np.rint(x / s) + z, 0, 255)
    return float(np.mean((x - (q - z) * s) ** 2))


def _data(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = 200_000
    if kind == "lognormal":
        return rng.lognormal(0.0, 1.2, n)
    if kind == "student_t":
        return rng.standard_t(2.5, n)
    if kind == "relu_outliers":
        x = np.maximum(rng.normal(size=n), 0.0)
        x[rng.choice(n, 20, replace=False)] = 60.0
        return x
    if kind == "skewed":
        return np.concatenate([rng.normal(-0.5, 0.2, n // 2), rng.exponential(2.0, n // 2)])
    return rng.normal(size=n)


@pytest.mark.parametrize("kind", ["lognormal", "student_t", "relu_outliers", "skewed", "gaussian"])
def test_auto_is_never_worse_than_minmax_on_the_data(kind: str) -> None:
    x = _data(kind, np.random.default_rng(0))
    obs = _observe(x)
    rule, (lo, hi) = auto_choice(obs)
    auto_mse = _fake_quant_mse(x, lo, hi)
    minmax_mse = _fake_quant_mse(x, *minmax_range(obs))
    print(f"{kind}: auto chose {rule}, MSE {auto_mse:.3g} vs min-max {minmax_mse:.3g}")
    assert auto_mse <= minmax_mse * 1.001
    assert saturation(obs, lo, hi) <= 0.0001 + 1e-9
    # the histogram estimate the choice rests on agrees with the real error
    assert quantization_error(obs, lo, hi) == pytest.approx(auto_mse, rel=0.25)


def test_auto_gains_on_heavy_tails() -> None:
    x = _data("student_t", np.random.default_rng(1))
    obs = _observe(x)
    rule, (lo, hi) = auto_choice(obs)
    assert rule != "minmax"
    assert _fake_quant_mse(x, lo, hi) < 0.8 * _fake_quant_mse(x, *minmax_range(obs))


def test_saturation_share_matches_the_data() -> None:
    x = np.random.default_rng(2).normal(size=100_000)
    obs = _observe(x)
    assert saturation(obs, *minmax_range(obs)) == 0.0
    assert saturation(obs, -1.0, 1.0) == pytest.approx(np.mean(np.abs(x) > 1.0), abs=0.002)


def test_auto_refuses_a_range_that_saturates_much() -> None:
    # a candidate that clips 1 % (percentile 99) has a smaller error here, but saturates too much
    x = np.random.default_rng(3).standard_t(1.5, 100_000)
    obs = _observe(x)
    assert saturation(obs, *percentile_range(obs, 99.0)) > 0.005
    _, (lo, hi) = auto_choice(obs)
    assert saturation(obs, lo, hi) <= 0.0001 + 1e-9
    assert auto_choice(obs, max_saturation=0.0)[1] == minmax_range(obs)
