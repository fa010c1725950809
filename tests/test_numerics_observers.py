"""Streaming tensor observers and the calibrators built on them."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantscope.errors import ConfigError
from quantscope.numerics.affine import activation_qparams, dequantize, quantize
from quantscope.numerics.observers import (
    CALIBRATORS,
    TensorObserver,
    _kl_divergences,
    compute_range,
    entropy_range,
    minmax_range,
    mse_range,
    percentile_range,
)


def observe(*batches: np.ndarray, bins: int = 2048) -> TensorObserver:
    obs = TensorObserver(bins=bins)
    for b in batches:
        obs.update(b)
    return obs


def hist_total(obs: TensorObserver) -> int:
    return int(obs.pos_hist.sum() + obs.neg_hist.sum() + obs.zeros)


def quant_mse(x: np.ndarray, lo: float, hi: float) -> float:
    qp = activation_qparams(lo, hi, np.uint8)
    x32 = x.astype(np.float32)
    return float(np.mean((dequantize(quantize(x32, qp), qp).astype(np.float64) - x32) ** 2))


# Batches with wildly different scales, so both sides grow their range many times.
batch_lists = st.lists(
    st.tuples(
        st.integers(0, 200),  # size
        st.floats(1e-6, 1e6),  # scale
        st.floats(-1.0, 1.0),  # shift (in units of scale)
        st.sampled_from([np.float32, np.float64, np.float16]),
        st.integers(0, 2**32 - 1),  # seed
    ),
    min_size=1,
    max_size=25,
)


def make_batches(spec: list[tuple[int, float, float, type, int]]) -> list[np.ndarray]:
    out = []
    for size, scale, shift, dtype, seed in spec:
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal(size) + shift) * scale
        x[rng.random(size) < 0.1] = 0.0
        with np.errstate(over="ignore"):
            out.append(x.astype(dtype))
    return out


# ------------------------------------------------------------------------ observer


@settings(deadline=None, max_examples=80, derandomize=True)
@given(spec=batch_lists)
def test_streaming_matches_single_batch(spec: list) -> None:
    batches = make_batches(spec)
    streamed = observe(*batches, bins=64)
    whole = observe(np.concatenate([b.astype(np.float64) for b in batches]), bins=64)
    for attr in ("count", "nonfinite", "zeros", "min", "max"):
        assert getattr(streamed, attr) == getattr(whole, attr), attr
    assert hist_total(streamed) == streamed.count
    assert int(streamed.pos_hist.sum()) == int(whole.pos_hist.sum())
    assert int(streamed.neg_hist.sum()) == int(whole.neg_hist.sum())
    assert streamed.pos_hist.shape == (64,) and streamed.neg_hist.shape == (64,)
    if streamed.count:
        assert streamed.pos_range >= streamed.max or streamed.max <= 0
        assert streamed.neg_range >= -streamed.min or streamed.min >= 0
    for method in CALIBRATORS:
        lo, hi = compute_range(method, streamed)
        assert min(streamed.min, 0.0) <= lo <= 0.0 <= hi <= max(streamed.max, 0.0), method


def test_growth_merges_bins_exactly() -> None:
    """Power-of-two growth puts every count where a fresh histogram would."""
    rng = np.random.default_rng(0)
    small = rng.uniform(-1.0, 1.0, 10_000)
    small[:2] = [1.0, -1.0]  # both sides start with range 1.0
    big = rng.uniform(-3.0, 3.0, 10_000)
    grown = observe(small, big, np.array([4.0, -4.0]), bins=256)
    fresh = observe(np.array([4.0, -4.0]), small, big, bins=256)
    assert grown.pos_range == fresh.pos_range == 4.0
    assert grown.neg_range == fresh.neg_range == 4.0
    np.testing.assert_array_equal(grown.pos_hist, fresh.pos_hist)
    np.testing.assert_array_equal(grown.neg_hist, fresh.neg_hist)


def test_growth_by_huge_factor_keeps_counts() -> None:
    obs = observe(np.array([1e-30, 2e-30, -1e-30]), np.array([1e30, -1e30]), bins=16)
    # The range doubled ~200 times: from 2e-30 to somewhere in [1e30, 2e30).
    assert 1e30 <= obs.pos_range < 2e30 and 1e30 <= obs.neg_range < 2e30
    assert obs.pos_hist[0] == 2 and obs.pos_hist[7:].sum() == 1
    assert obs.neg_hist[0] == 1 and obs.neg_hist[7:].sum() == 1
    assert hist_total(obs) == obs.count == 5


def test_extreme_magnitudes() -> None:
    obs = observe(np.array([1e-320, -5e-324]), np.array([3e38, -1e-300]), bins=64)
    assert obs.count == 4 and hist_total(obs) == 4
    assert obs.pos_range >= 3e38 and obs.neg_range >= 1e-300
    # Beyond float32 a float32 model holds inf: counted as non-finite.
    big = observe(np.array([1e300, -1e39, 1.0]))
    assert big.nonfinite == 2 and big.count == 1 and big.max == 1.0


def test_memory_does_not_grow() -> None:
    obs = TensorObserver(bins=512)
    rng = np.random.default_rng(1)
    obs.update(rng.standard_normal(100))
    sizes = (obs.pos_hist.nbytes, obs.neg_hist.nbytes)
    for i in range(1000):
        obs.update(rng.standard_normal(64) * (1 + i))
    assert (obs.pos_hist.nbytes, obs.neg_hist.nbytes) == sizes
    assert obs.pos_hist.shape == obs.neg_hist.shape == (512,)
    assert obs.count == 100 + 64_000 == hist_total(obs)


def test_nonfinite_counted_and_ignored() -> None:
    x = np.array([1.0, np.nan, -2.0, np.inf, 0.0, -np.inf, 3.0], np.float32)
    obs = observe(x, np.full((2, 3), np.nan))
    assert obs.nonfinite == 3 + 6
    assert obs.count == 4 and obs.zeros == 1
    assert (obs.min, obs.max) == (-2.0, 3.0)
    assert hist_total(obs) == 4
    assert minmax_range(obs) == (-2.0, 3.0)


def test_empty_and_zero_observers() -> None:
    empty = observe(np.zeros((0, 3)))
    assert empty.count == 0 and (empty.min, empty.max) == (0.0, 0.0)
    zeros = observe(np.zeros(100))
    assert zeros.count == zeros.zeros == 100 and zeros.pos_range == 0.0
    for obs in (empty, zeros):
        for method in CALIBRATORS:
            assert compute_range(method, obs) == (0.0, 0.0)


def test_integer_input_and_readonly_histograms() -> None:
    obs = observe(np.arange(-5, 6, dtype=np.int32))
    assert (obs.min, obs.max, obs.count, obs.zeros) == (-5.0, 5.0, 11, 1)
    with pytest.raises(ValueError):
        obs.pos_hist[0] = 7
    with pytest.raises(ConfigError):
        obs.update(np.array(["a"]))


@pytest.mark.parametrize("bins", [0, 1, 3, 2.0, True])
def test_bad_bins(bins: object) -> None:
    with pytest.raises(ConfigError):
        TensorObserver(bins=bins)  # type: ignore[arg-type]


def test_merge() -> None:
    rng = np.random.default_rng(2)
    a_data = rng.standard_normal(5000)
    b_data = rng.standard_normal(5000) * 8 + 1
    a = observe(a_data, np.array([np.nan]), bins=128)
    b = observe(b_data, bins=128)
    both = observe(a_data, b_data, bins=128)
    a.merge(b)
    for attr in ("count", "nonfinite", "zeros", "min", "max"):
        expected = getattr(both, attr) + (1 if attr == "nonfinite" else 0)
        assert getattr(a, attr) == expected, attr
    assert hist_total(a) == a.count
    assert a.pos_range >= a.max and a.neg_range >= -a.min
    # Ranges a power of two apart merge exactly.
    c = observe(np.array([1.0, 0.3, 0.7, -0.25]), bins=8)
    d = observe(np.array([4.0, 2.5, -1.0]), bins=8)
    c.merge(d)
    e = observe(np.array([4.0, 2.5, -1.0]), np.array([1.0, 0.3, 0.7, -0.25]), bins=8)
    np.testing.assert_array_equal(c.pos_hist, e.pos_hist)
    np.testing.assert_array_equal(c.neg_hist, e.neg_hist)
    with pytest.raises(ConfigError):
        c.merge(TensorObserver(bins=16))


def test_dict_round_trip() -> None:
    rng = np.random.default_rng(3)
    obs = observe(rng.standard_normal(1000), np.array([0.0, np.nan]), bins=32)
    text = json.dumps(obs.to_dict())
    back = TensorObserver.from_dict(json.loads(text))
    assert back.to_dict() == obs.to_dict()
    for method in CALIBRATORS:
        assert compute_range(method, back) == compute_range(method, obs)
    empty = TensorObserver.from_dict(json.loads(json.dumps(TensorObserver().to_dict())))
    assert empty.count == 0
    broken = obs.to_dict() | {"count": 5}
    with pytest.raises(ConfigError):
        TensorObserver.from_dict(broken)
    with pytest.raises(ConfigError):
        TensorObserver.from_dict({"bins": 32})


# --------------------------------------------------------------------- calibrators


@settings(deadline=None, max_examples=50, derandomize=True)
@given(
    kind=st.sampled_from(["normal", "positive", "negative", "laplace", "spiky"]),
    bins=st.sampled_from([16, 256, 2048]),
    scale=st.floats(1e-4, 1e4),
    seed=st.integers(0, 2**32 - 1),
)
def test_ranges_contain_zero_and_stay_inside(kind: str, bins: int, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = {
        "normal": lambda: rng.standard_normal(3000) + 0.5,
        "positive": lambda: rng.exponential(size=3000),
        "negative": lambda: -rng.exponential(size=3000) - 1.0,
        "laplace": lambda: rng.laplace(size=3000),
        "spiky": lambda: np.concatenate([np.zeros(2990), rng.standard_normal(10) * 100]),
    }[kind]() * scale
    obs = observe(*np.array_split(x, 7), bins=bins)
    for method in CALIBRATORS:
        lo, hi = compute_range(method, obs)
        assert isinstance(lo, float) and isinstance(hi, float)
        assert min(obs.min, 0.0) <= lo <= 0.0 <= hi <= max(obs.max, 0.0), method
        if kind == "positive":
            assert lo == 0.0
        if kind == "negative":
            assert hi == 0.0


def test_minmax_is_exact() -> None:
    obs = observe(np.array([0.5, 2.25]), np.array([[1.0, 3.125]]))
    assert minmax_range(obs) == (0.0, 3.125)


@pytest.fixture(scope="module")
def gaussian_with_outliers() -> TensorObserver:
    rng = np.random.default_rng(42)
    x = rng.standard_normal(1_000_000)
    outliers = np.array([1e3, -1e3, 950.0, -980.0, 1e3])
    return observe(*np.array_split(x, 20), outliers)


def test_percentile_ignores_rare_outliers(gaussian_with_outliers: TensorObserver) -> None:
    obs = gaussian_with_outliers
    assert minmax_range(obs) == (-1e3, 1e3)
    lo, hi = percentile_range(obs, percentile=99.99)
    # 99.99 keeps the 0.005th..99.995th percentile: +-3.89 sigma on a gaussian.
    assert 3.6 < -lo < 4.2 and 3.6 < hi < 4.2
    lo2, hi2 = percentile_range(obs, percentile=99.0)
    assert 2.4 < -lo2 < 2.75 and 2.4 < hi2 < 2.75  # 0.5% per tail: 2.576 sigma
    assert percentile_range(obs, percentile=100.0) == (-1e3, 1e3)


def test_entropy_clips_rare_outliers(gaussian_with_outliers: TensorObserver) -> None:
    lo, hi = entropy_range(gaussian_with_outliers)
    # Bins are ~1 sigma / 2 wide here, so the search cannot go below 128 bins (~62 sigma),
    # but it does drop the outliers at 1000 sigma.
    assert 4.0 <= -lo <= 100.0 and 4.0 <= hi <= 100.0


def test_heavy_tails_clipped_tighter_than_minmax() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_t(3, 300_000)
    obs = observe(*np.array_split(x, 10))
    mm_lo, mm_hi = minmax_range(obs)
    width = mm_hi - mm_lo
    ranges = {m: compute_range(m, obs) for m in CALIBRATORS}
    errors = {m: quant_mse(x, *r) for m, r in ranges.items()}
    for method in ("percentile", "entropy"):
        lo, hi = ranges[method]
        assert hi - lo < 0.5 * width, method
    # MSE keeps more of the tail (clipping a far value costs its whole squared distance)
    # but still clips, and it has the lowest real quantization error of all.
    lo, hi = ranges["mse"]
    assert hi - lo < 0.8 * width
    assert errors["mse"] <= min(errors.values())


def test_uniform_ranges_close_to_minmax() -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(-2.0, 5.0, 200_000)
    obs = observe(*np.array_split(x, 4))
    mm_lo, mm_hi = minmax_range(obs)
    for method in CALIBRATORS:
        lo, hi = compute_range(method, obs)
        assert lo <= 0.98 * mm_lo and hi >= 0.98 * mm_hi, method


def test_mse_beats_minmax_on_laplace() -> None:
    rng = np.random.default_rng(6)
    x = rng.laplace(size=200_000)
    obs = observe(*np.array_split(x, 8))
    mm = minmax_range(obs)
    lo, hi = mse_range(obs)
    assert mm[0] < lo and hi < mm[1]
    assert quant_mse(x, lo, hi) < 0.9 * quant_mse(x, *mm)


def test_mse_with_int8_and_relu_data() -> None:
    rng = np.random.default_rng(8)
    x = np.maximum(rng.standard_normal(100_000), 0.0)
    obs = observe(x)
    lo, hi = mse_range(obs, num_levels=256, dtype=np.int8)
    assert lo == 0.0 and 3.0 < hi <= obs.max
    with pytest.raises(ConfigError):
        mse_range(obs, num_levels=257, dtype=np.uint8)
    with pytest.raises(ConfigError):
        mse_range(obs, dtype=np.float32)


def test_entropy_on_gaussian() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(200_000)
    obs = observe(*np.array_split(x, 5))
    lo, hi = entropy_range(obs)
    # Measured: about 3.9-4.9 sigma over seeds at this sample size (the extreme sample is
    # about 4.5 sigma); TensorRT reports similar thresholds for gaussian activations.
    assert 3.3 <= -lo <= 5.0 and 3.3 <= hi <= 5.0
    assert hi - lo <= obs.max - obs.min


def test_entropy_on_relu_ignores_exact_zeros() -> None:
    rng = np.random.default_rng(9)
    x = np.maximum(rng.standard_normal(200_000), 0.0)
    lo, hi = entropy_range(observe(x))
    assert lo == 0.0 and 3.3 <= hi <= 5.0


def test_entropy_is_fast() -> None:
    rng = np.random.default_rng(10)
    obs = observe(rng.standard_normal(100_000) ** 3)
    entropy_range(obs)  # warm up
    start = time.perf_counter()
    entropy_range(obs)
    assert time.perf_counter() - start < 0.5


def _reference_kl(hist: np.ndarray, num_levels: int) -> list[float]:
    """Plain loop over thresholds, written straight from the TensorRT description."""
    out = []
    hist = hist.astype(np.float64)
    for i in range(num_levels, hist.size + 1):
        sliced = hist[:i]
        if sliced.sum() == 0:
            out.append(math.inf)
            continue
        p = sliced.copy()
        p[-1] += hist[i:].sum()
        merged = i // num_levels
        q = np.zeros(i)
        for g in range(num_levels):
            start = g * merged
            stop = i if g == num_levels - 1 else start + merged
            nonzero = p[start:stop] > 0
            if nonzero.any():
                total = sliced[start:stop].sum()
                q[start:stop][nonzero] = total / nonzero.sum() if total > 0 else 1e-4
        mask = p > 0
        pn = p[mask] / p.sum()
        qn = q[mask] / q.sum()
        out.append(float(np.sum(pn * np.log(pn / qn))))
    return out


@settings(deadline=None, max_examples=40, derandomize=True)
@given(
    bins=st.integers(8, 96),
    levels=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
    sparsity=st.floats(0.0, 0.9),
)
def test_vectorised_kl_matches_reference(
    bins: int, levels: int, seed: int, sparsity: float
) -> None:
    rng = np.random.default_rng(seed)
    hist = rng.integers(0, 1000, bins) * (rng.random(bins) > sparsity)
    kept, kl = _kl_divergences(hist, levels)
    assert kept.tolist() == list(range(levels, bins + 1))
    np.testing.assert_allclose(kl, _reference_kl(hist, levels), rtol=1e-9, atol=1e-12)


def test_compute_range_errors() -> None:
    obs = observe(np.arange(10.0))
    with pytest.raises(ConfigError, match="entropy, minmax, mse, percentile"):
        compute_range("kl", obs)
    with pytest.raises(ConfigError, match="percentile"):
        compute_range("percentile", obs, pct=99.0)
    with pytest.raises(ConfigError):
        compute_range("percentile", obs, percentile=0.0)
    with pytest.raises(ConfigError):
        compute_range("entropy", obs, num_levels=1)
    with pytest.raises(ConfigError):
        compute_range("minmax", "not an observer")  # type: ignore[arg-type]
    assert compute_range("percentile", obs, percentile=100.0) == (0.0, 9.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(arrays(np.float32, st.integers(1, 200), elements=st.floats(-1e6, 1e6, width=32)), min_size=1, max_size=4))
def test_minmax_only_observer_matches_the_full_one(batches: list[np.ndarray]) -> None:
    full, light = TensorObserver(bins=64), TensorObserver(bins=64, histogram=False)
    for b in batches:
        full.update(b)
        light.update(b)
    assert (light.min, light.max, light.count) == (full.min, full.max, full.count)
    assert compute_range("minmax", light) == compute_range("minmax", full)
    for method in ("percentile", "entropy", "mse"):
        with pytest.raises(ConfigError, match="histogram"):
            compute_range(method, light)
    assert TensorObserver.from_dict(light.to_dict()).histogram is False
