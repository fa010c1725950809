"""TensorObserver: streaming statistics, growth, merging (one pass = merged shards), snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.config.calibration import calibrator_names
from quantscope.errors import ConfigError
from quantscope.numerics.observers import TensorObserver, compute_range, minmax_range


def observe(*batches: np.ndarray, bins: int = 2048) -> TensorObserver:
    obs = TensorObserver(bins=bins)
    for b in batches:
        obs.update(b)
    return obs


def hist_total(obs: TensorObserver) -> int:
    return int(obs.pos_hist.sum() + obs.neg_hist.sum() + obs.zeros)


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
    for method in calibrator_names():
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
        for method in calibrator_names():
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
    for method in calibrator_names():
        assert compute_range(method, back) == compute_range(method, obs)
    empty = TensorObserver.from_dict(json.loads(json.dumps(TensorObserver().to_dict())))
    assert empty.count == 0
    broken = obs.to_dict() | {"count": 5}
    with pytest.raises(ConfigError):
        TensorObserver.from_dict(broken)
    with pytest.raises(ConfigError):
        TensorObserver.from_dict({"bins": 32})


def _observe_capped(batches: list[np.ndarray], bins: int, cap: int) -> TensorObserver:
    obs = TensorObserver(bins=bins, max_hist_elements=cap)
    for b in batches:
        obs.update(b)
    return obs


@settings(deadline=None, max_examples=80, derandomize=True)
@given(
    spec=batch_lists,
    cuts=st.lists(st.integers(0, 25), max_size=4),
    bins=st.sampled_from([6, 64, 2048]),
    cap=st.sampled_from([1 << 20, 37]),
)
def test_merged_shards_equal_one_pass(spec: list, cuts: list[int], bins: int, cap: int) -> None:
    """Observing shards apart and merging them is exactly one pass over all the data."""
    batches = make_batches(spec)
    one = _observe_capped(batches, bins, cap)
    edges = sorted({min(c, len(batches)) for c in cuts})
    shards = [batches[a:b] for a, b in zip([0, *edges], [*edges, len(batches)], strict=True)]
    parts = [_observe_capped(shard, bins, cap) for shard in shards]
    snapshots = [p.to_dict() for p in parts]
    merged = TensorObserver.merged(parts[::-1])  # the order of the shards does not matter either
    assert [p.to_dict() for p in parts] == snapshots  # merged() leaves its inputs alone
    assert merged.to_dict() == one.to_dict()
    assert merged.seen == one.seen
    for method in calibrator_names():
        assert compute_range(method, merged) == compute_range(method, one), method
    # in-place merge gives the same
    acc = TensorObserver(bins=bins, max_hist_elements=cap)
    for p in parts:
        acc.merge(p)
    assert acc.to_dict() == one.to_dict()


def test_histogram_ranges_are_powers_of_two() -> None:
    obs = observe(np.array([3.0, -0.3]), np.array([5.5]), bins=16)
    assert obs.pos_range == 8.0 and obs.neg_range == 0.5
    assert observe(np.array([4.0]), bins=16).pos_range == 4.0  # already a power of two
    # bins / range overflows float32 here: float32 data must still land where float64 data does
    tiny = np.array([1e-37, 3e-37], dtype=np.float32)
    single, double = observe(tiny, bins=2048), observe(tiny.astype(np.float64), bins=2048)
    assert single.pos_range == double.pos_range == 2.0**-121
    np.testing.assert_array_equal(single.pos_hist, double.pos_hist)
    assert single.pos_hist[-1] == 0


def test_merged_needs_observers() -> None:
    with pytest.raises(ConfigError):
        TensorObserver.merged([])
    with pytest.raises(ConfigError):
        TensorObserver.merged(["not an observer"])  # type: ignore[list-item]
