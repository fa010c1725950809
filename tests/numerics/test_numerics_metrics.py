"""Error metrics between reference and quantized outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantscope.errors import ConfigError
from quantscope.numerics.metrics import (
    cosine_similarity,
    max_abs_error,
    mean_abs_error,
    sqnr_db,
    top1_agreement,
)

small_floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
matrices = arrays(
    np.float32, st.tuples(st.integers(1, 6), st.integers(1, 8)), elements=small_floats
)


def test_sqnr_known_values() -> None:
    ref = np.array([3.0, 4.0], np.float32)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(ref, ref + np.float32(0.5)) == pytest.approx(10 * math.log10(25 / 0.5))
    # Noise power one tenth of the signal: 10 dB.
    assert sqnr_db(np.ones(10), np.ones(10) * (1 + math.sqrt(0.1))) == pytest.approx(10.0)
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf
    assert sqnr_db(np.zeros(0), np.zeros(0)) == math.inf
    assert math.isnan(sqnr_db(np.array([np.nan]), np.array([1.0])))


@settings(deadline=None, max_examples=60, derandomize=True)
@given(ref=matrices, seed=st.integers(0, 2**32 - 1), factor=st.floats(1e-3, 1e3))
def test_sqnr_is_scale_invariant(ref: np.ndarray, seed: int, factor: float) -> None:
    rng = np.random.default_rng(seed)
    test = ref + rng.standard_normal(ref.shape).astype(np.float32)
    a = sqnr_db(ref, test)
    b = sqnr_db(ref.astype(np.float64) * factor, test.astype(np.float64) * factor)
    if math.isfinite(a):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9)
    else:
        assert a == b


def test_cosine_similarity_rows_and_zero_vectors() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [0.0, 1.0, 1.0, 0.0, -1.0])
    np.testing.assert_allclose(cosine_similarity(a, b, axis=0), [0.0, 2 / math.sqrt(5)])
    assert cosine_similarity(a, b).dtype == np.float64
    assert cosine_similarity(np.ones(3), np.ones(3)).shape == ()


@settings(deadline=None, max_examples=80, derandomize=True)
@given(a=matrices, data=st.data())
def test_cosine_similarity_bounded_and_symmetric(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.float32, a.shape, elements=small_floats))
    cos = cosine_similarity(a, b)
    assert cos.shape == (a.shape[0],)
    assert np.all(np.abs(cos) <= 1.0)
    np.testing.assert_array_equal(cos, cosine_similarity(b, a))
    self_cos = cosine_similarity(a, a)
    np.testing.assert_allclose(self_cos, 1.0, rtol=1e-12)


def test_top1_agreement() -> None:
    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.5, 0.4]])
    b = np.array([[0.2, 0.8], [0.1, 0.9], [0.4, 0.6], [0.6, 0.3]])
    assert top1_agreement(a, b) == 0.75
    assert top1_agreement(a[0], b[0]) == 1.0
    assert top1_agreement(a.reshape(2, 2, 2), b.reshape(2, 2, 2)) == 0.75
    with pytest.raises(ConfigError):
        top1_agreement(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ConfigError):
        top1_agreement(np.zeros((0, 3)), np.zeros((0, 3)))


def test_abs_errors() -> None:
    a = np.array([1.0, -2.0, 3.0], np.float32)
    b = np.array([1.5, -2.0, 1.0], np.float32)
    assert max_abs_error(a, b) == 2.0
    assert mean_abs_error(a, b) == pytest.approx(2.5 / 3)
    assert max_abs_error(np.zeros(0), np.zeros(0)) == 0.0
    assert mean_abs_error(np.zeros(0), np.zeros(0)) == 0.0


def test_float64_accumulation() -> None:
    # A float32 sum of 1e7 ones stalls at 2**24; float64 does not.
    ones = np.ones(10_000_000, np.float32)
    assert mean_abs_error(ones, np.zeros_like(ones)) == 1.0
    assert sqnr_db(ones, ones * np.float32(1.1)) == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize(
    "fn", [sqnr_db, cosine_similarity, top1_agreement, max_abs_error, mean_abs_error]
)
def test_shape_mismatch_rejected(fn: object) -> None:
    with pytest.raises(ConfigError):
        fn(np.zeros((2, 3)), np.zeros((3, 2)))  # type: ignore[operator]
    with pytest.raises(ConfigError):
        fn(np.array(["a", "b"]), np.array(["a", "b"]))  # type: ignore[operator]


def test_cosine_bad_axis() -> None:
    with pytest.raises(ConfigError):
        cosine_similarity(np.ones((2, 2)), np.ones((2, 2)), axis=2)
    with pytest.raises(ConfigError):
        cosine_similarity(np.float32(1.0), np.float32(1.0))
