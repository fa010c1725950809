"""Shift functions: shape, dtype and value range kept; severity 0 is identity; seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.analysis import shifts as S
from quantscope.errors import ConfigError, DataError

IMAGE = sorted(S.SHIFTS["image"])
TEXT = sorted(S.SHIFTS["text"])
TABULAR = sorted(S.SHIFTS["tabular"])
severities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _image_batch(seed: int, layout: str, dtype: str, scale: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, c, h, w = 2, 3, int(rng.integers(5, 19)), int(rng.integers(5, 19))
    shape = {"NCHW": (n, c, h, w), "NHWC": (n, h, w, c), "NHW": (n, h, w)}[layout]
    if dtype == "uint8":
        return rng.integers(0, 256, shape).astype(np.uint8)
    x = rng.random(shape)
    if scale == "normalized":
        x = (x - 0.45) / 0.22  # mean/std normalized: the range is the data's own
    return x.astype(np.float32)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", IMAGE)
@settings(max_examples=12, deadline=None)
@given(
    severity=severities,
    seed=seeds,
    layout=st.sampled_from(["NCHW", "NHWC", "NHW"]),
    dtype=st.sampled_from(["float32", "uint8"]),
    scale=st.sampled_from(["unit", "normalized"]),
)
def test_image_shift_properties(name, severity, seed, layout, dtype, scale):
    fn = S.SHIFTS["image"][name].fn
    x = _image_batch(seed, layout, dtype, scale)
    before = x.copy()
    lo, hi = S.detect_value_range(x)
    y = fn(x, severity, _rng(seed), layout=layout)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= lo - 1e-5 and float(y.max()) <= hi + 1e-5
    np.testing.assert_array_equal(x, before)  # the input is not modified
    np.testing.assert_array_equal(fn(x, severity, _rng(seed), layout=layout), y)  # seeded
    np.testing.assert_array_equal(fn(x, 0.0, _rng(seed), layout=layout), x)  # identity


@pytest.mark.parametrize("name", IMAGE)
def test_image_shifts_change_the_image_and_detect_layout(name):
    x = _image_batch(3, "NHWC", "float32", "unit")
    fn = S.SHIFTS["image"][name].fn
    auto = fn(x, 1.0, _rng(0))
    assert not np.array_equal(auto, x)
    np.testing.assert_array_equal(auto, fn(x, 1.0, _rng(0), layout="NHWC"))


def test_image_shift_directions():
    x = _image_batch(1, "NCHW", "float32", "unit")
    assert S.darker(x, 0.5, _rng(0)).mean() < x.mean()
    assert S.brighter(x, 0.5, _rng(0)).mean() > x.mean()
    assert S.contrast(x, 0.5, _rng(0)).std() < x.std()
    assert S.blur(x, 1.0, _rng(0)).std() < x.std()
    assert S.occlusion(x, 1.0, _rng(0), value_range=(0, 1)).std() < x.std()
    # a given value range is respected even when the data does not reach it
    y = S.gaussian_noise(x * 0.5, 1.0, _rng(0), value_range=(0.0, 0.5))
    assert y.max() <= 0.5


def test_jpeg_of_a_smooth_image_is_close_and_rotation_by_a_quarter_turn_is_exact():
    h = np.linspace(0, 1, 16, dtype=np.float32)
    smooth = np.broadcast_to(h[None, None, :, None] * h[None, None, None, :], (1, 1, 16, 16)).copy()
    assert np.abs(S.jpeg(smooth, 0.25, _rng(0)) - smooth).max() < 0.05
    x = _image_batch(2, "NCHW", "float32", "unit")[:, :, :8, :8].copy()
    rotated = S.rotate(x, 1.0, _rng(0))  # 90°: a permutation of the pixels
    assert sorted(np.round(rotated[0, 0].ravel(), 5)) == sorted(np.round(x[0, 0].ravel(), 5))


def _text_batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, length = 4, int(rng.integers(4, 20))
    ids = rng.integers(1, 500, (n, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for row in range(n):
        real = int(rng.integers(1, length + 1))
        ids[row, real:] = 0
        mask[row, real:] = 0
    return ids, mask


@pytest.mark.parametrize("name", TEXT)
@settings(max_examples=20, deadline=None)
@given(severity=severities, seed=seeds)
def test_text_shift_properties(name, severity, seed):
    fn = S.SHIFTS["text"][name].fn
    ids, mask = _text_batch(seed)
    before = ids.copy()
    y = fn(ids, severity, _rng(seed), mask=mask, pad_id=0, vocab_size=500)
    assert y.shape == ids.shape and y.dtype == ids.dtype
    assert y.min() >= 0 and y.max() < 500
    np.testing.assert_array_equal(ids, before)
    np.testing.assert_array_equal(fn(ids, severity, _rng(seed), mask=mask, vocab_size=500), y)
    np.testing.assert_array_equal(fn(ids, 0.0, _rng(seed), mask=mask, vocab_size=500), ids)
    new_mask = S.derive_mask(mask, ids, y, 0)
    assert (new_mask <= mask).all()  # a shift never unmasks padding
    assert (y[mask == 0] == 0).all()  # nor writes into it
    assert (new_mask.sum(axis=1) >= np.minimum(mask.sum(axis=1), 2)).all()  # ends are kept


def test_truncation_and_dropout_shorten_and_keep_the_ends():
    ids, mask = _text_batch(5)
    ids[:, :] = np.arange(1, ids.shape[1] + 1)
    mask[:] = 1
    for fn in (S.truncation, S.token_dropout):
        y = fn(ids, 1.0, _rng(0), mask=mask)
        m = S.derive_mask(mask, ids, y, 0)
        assert m.sum() < mask.sum()
        assert (y[:, 0] == ids[:, 0]).all()
        last = m.sum(axis=1) - 1
        assert (y[np.arange(len(y)), last] == ids[:, -1]).all()


@pytest.mark.parametrize("name", TABULAR)
@settings(max_examples=15, deadline=None)
@given(
    severity=severities,
    seed=seeds,
    dtype=st.sampled_from(["float32", "float64"]),
    features=st.integers(min_value=1, max_value=6),
)
def test_tabular_shift_properties(name, severity, seed, dtype, features):
    fn = S.SHIFTS["tabular"][name].fn
    x = np.random.default_rng(seed).standard_normal((30, features)).astype(dtype)
    before = x.copy()
    y = fn(x, severity, _rng(seed))
    assert y.shape == x.shape and y.dtype == x.dtype and np.isfinite(y).all()
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(fn(x, severity, _rng(seed)), y)
    np.testing.assert_array_equal(fn(x, 0.0, _rng(seed)), x)
    if severity > 0:  # a given range clips what the shift produces (severity 0 is identity)
        clipped = fn(x, severity, _rng(seed), value_range=(-1.0, 1.0))
        assert clipped.min() >= -1.0 and clipped.max() <= 1.0


def test_covariate_shift_reaches_the_target_shape_and_keeps_ranks():
    x = np.random.default_rng(0).standard_normal((2000, 2))
    skew = S.covariate_skewed(x, 1.0, _rng(1))
    z = (skew - skew.mean(0)) / skew.std(0)
    assert (np.mean(z**3, axis=0) > 1.0).all()  # log-normal: strongly right-skewed
    np.testing.assert_array_equal(np.argsort(skew[:, 0]), np.argsort(x[:, 0]))
    uni = S.covariate_uniform(x, 1.0, _rng(1))
    assert np.ptp(uni[:, 0]) < np.ptp(x[:, 0])  # uniform has no tails


def test_bad_arguments_name_the_fix():
    x = _image_batch(0, "NCHW", "float32", "unit")
    with pytest.raises(ConfigError, match="severity"):
        S.darker(x, 1.5, _rng(0))
    with pytest.raises(ConfigError, match="layout"):
        S.darker(x, 0.5, _rng(0), layout="NHW")
    with pytest.raises(DataError, match="modality='tabular'"):
        S.darker(np.zeros((3, 4), np.float32), 0.5, _rng(0))
    with pytest.raises(DataError, match="token ids"):
        S.truncation(np.zeros((3, 4), np.float32), 0.5, _rng(0))
    with pytest.raises(ConfigError, match="modality"):
        S.shifts_for("audio")


def test_descriptions_follow_the_severity():
    spec = S.SHIFTS["image"]["darker"]
    assert S.describe(spec, 0.0) == "brightness is reduced to 100 %"
    assert "10 %" in S.describe(spec, 1.0)
    assert S.user_shift("mine", lambda x, s, r, **_: x, "tabular").describe(0.5) == (
        "mine is applied at severity 0.5"
    )
