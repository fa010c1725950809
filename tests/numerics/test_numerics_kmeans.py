"""k-means codebooks, ternary and binary weights: determinism, error bounds, the published formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.errors import ConfigError
from quantscope.numerics import kmeans
from quantscope.numerics.kmeans import INIT_SAMPLE, assign, cluster_weights, kmeans1d
from quantscope.numerics.lowbit import CodedTensor, binarize, reconstruction_error, ternarize


def _gaussian(n: int = 20_000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _uniform_minmax(w: np.ndarray, bits: int) -> np.ndarray:
    """Uniform (affine, min-max) quantization with 2**bits levels: the baseline to beat."""
    lo, hi = float(w.min()), float(w.max())
    step = (hi - lo) / ((1 << bits) - 1)
    return (lo + np.round((w - lo) / step) * step).astype(np.float32)


def _rel(w: np.ndarray, approx: np.ndarray) -> float:
    return float(reconstruction_error(w, approx)["rel_error"])


def test_same_seed_same_codebook_and_codes() -> None:
    w = _gaussian(100_000).reshape(400, 250)  # above INIT_SAMPLE: the seeded subsample path
    assert w.size > INIT_SAMPLE
    a = cluster_weights(w, 4, seed=7)
    b = cluster_weights(w, 4, seed=7)
    np.testing.assert_array_equal(a.codebook, b.codebook)
    np.testing.assert_array_equal(a.codes, b.codes)
    pa = cluster_weights(w, 3, axis=1, seed=7)
    pb = cluster_weights(w, 3, axis=1, seed=7)
    np.testing.assert_array_equal(pa.codebook, pb.codebook)
    np.testing.assert_array_equal(pa.codes, pb.codes)


def test_error_falls_with_bits_and_beats_uniform_on_gaussian_weights() -> None:
    w = _gaussian(50_000, seed=1)
    errors = []
    for bits in range(1, 9):
        coded = cluster_weights(w, bits, seed=0)
        assert coded.codebook.shape == (1 << bits,)
        err = _rel(w, coded.decode())
        uniform = _rel(w, _uniform_minmax(w, bits))
        print(f"{bits} bits: k-means rel. error {err:.4f}, uniform min-max {uniform:.4f}")
        assert err <= uniform
        errors.append(err)
    assert all(b < a for a, b in itertools.pairwise(errors))
    # near the Lloyd-Max optimum for a Gaussian: 9.30 dB at 2 bits, 20.22 dB at 4 bits
    assert reconstruction_error(w, cluster_weights(w, 2).decode())["sqnr_db"] > 9.0
    assert reconstruction_error(w, cluster_weights(w, 4).decode())["sqnr_db"] > 19.5


def test_few_distinct_values_are_exact() -> None:
    w = np.array([[0.5, -1.0, 0.5], [2.0, 2.0, -1.0]], dtype=np.float32)
    coded = cluster_weights(w, 2)
    np.testing.assert_array_equal(coded.decode(), w)
    assert reconstruction_error(w, coded.decode()) == {"rel_error": 0.0, "sqnr_db": None}
    np.testing.assert_array_equal(kmeans1d(np.ones(5), 4), np.ones(4))


def test_per_channel_codebooks_follow_channel_scales() -> None:
    rng = np.random.default_rng(3)
    scales = np.geomspace(0.01, 10.0, 32).astype(np.float32)
    w = (
        rng.standard_normal((128, 32)).astype(np.float32) * scales
    )  # MatMul layout: channels on axis 1
    per_tensor = cluster_weights(w, 3)
    per_channel = cluster_weights(w, 3, axis=1)
    assert per_channel.codebook.shape == (32, 8)
    assert per_channel.codes.shape == w.shape
    assert _rel(w, per_channel.decode()) < _rel(w, per_tensor.decode())
    # the smallest channel is almost lost per tensor, kept per channel
    small = slice(0, 1)
    assert (
        _rel(w[:, small], per_channel.decode()[:, small])
        < 0.3
        < _rel(w[:, small], per_tensor.decode()[:, small])
    )


@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 500))
@settings(max_examples=100, deadline=None)
def test_codes_pick_the_nearest_centroid(seed: int, bits: int, n: int) -> None:
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    coded = cluster_weights(x, bits, seed=seed)
    book = coded.codebook.astype(np.float64)
    assert np.all(np.diff(book) >= 0)
    dist = np.abs(x.astype(np.float64)[:, None] - book[None, :])
    chosen = dist[np.arange(n), coded.codes]
    assert np.all(chosen <= dist.min(axis=1) + 1e-12)
    np.testing.assert_array_equal(assign(x, book), coded.codes)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        kmeans1d(np.array([]), 4)
    with pytest.raises(ConfigError, match="NaN"):
        kmeans1d(np.array([1.0, np.nan, 2.0]), 1)
    with pytest.raises(ConfigError, match="bits"):
        cluster_weights(np.ones(4), 9)
    with pytest.raises(ConfigError, match="codebook"):
        CodedTensor(
            codes=np.array([4], np.uint8), codebook=np.zeros(4, np.float32), axis=None, bits=2
        )


def test_ternary_formula_on_a_known_array() -> None:
    w = np.array([[1.0, -2.0, 0.1, 0.0], [0.3, 0.3, -0.3, 0.3]], dtype=np.float32)
    t = ternarize(w, axis=0, threshold=0.7)
    # row 0: mean|w| = 0.775, Δ = 0.5425, kept {1, 2} -> α = 1.5; row 1: all kept, α = 0.3
    np.testing.assert_allclose(t.codebook, [[-1.5, 0.0, 1.5], [-0.3, 0.0, 0.3]], rtol=1e-6)
    np.testing.assert_array_equal(t.codes, [[2, 0, 1, 1], [2, 2, 0, 2]])
    np.testing.assert_allclose(t.decode(), [[1.5, -1.5, 0, 0], [0.3, 0.3, -0.3, 0.3]], rtol=1e-6)
    assert t.bits == 2
    # channels along axis 1 (MatMul layout) give the same numbers transposed
    np.testing.assert_allclose(ternarize(w.T, axis=1).decode(), t.decode().T, rtol=1e-6)
    # an all-zero channel stays zero
    np.testing.assert_array_equal(ternarize(np.zeros((2, 3), np.float32), axis=0).decode(), 0.0)


def test_ternary_alpha_is_the_least_squares_scale() -> None:
    w = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    t = ternarize(w, axis=0)
    best = _rel(w, t.decode())
    for factor in (0.9, 1.1):
        scaled = CodedTensor(codes=t.codes, codebook=t.codebook * factor, axis=0, bits=2)
        assert _rel(w, scaled.decode()) > best


def test_binary_formula_on_a_known_array() -> None:
    w = np.array([[1.0, -2.0, 0.0, 3.0], [-0.5, -0.5, -0.5, -0.5]], dtype=np.float32)
    b = binarize(w, axis=0)
    np.testing.assert_allclose(b.codebook, [[-1.5, 1.5], [-0.5, 0.5]])
    np.testing.assert_array_equal(b.codes, [[1, 0, 1, 1], [0, 0, 0, 0]])  # sign(0) := +1
    np.testing.assert_allclose(b.decode(), [[1.5, -1.5, 1.5, 1.5], [-0.5, -0.5, -0.5, -0.5]])
    assert b.bits == 1
    conv = np.random.default_rng(5).standard_normal((4, 3, 3, 3)).astype(np.float32)
    bc = binarize(conv, axis=0)
    np.testing.assert_allclose(bc.codebook[:, 1], np.abs(conv).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(
        np.abs(bc.decode()), np.broadcast_to(bc.codebook[:, 1, None, None, None], conv.shape)
    )


def test_reconstruction_error_values() -> None:
    w = np.array([3.0, 4.0])
    err = reconstruction_error(w, np.array([3.0, 3.5]))
    assert err["rel_error"] == pytest.approx(0.1)
    assert err["sqnr_db"] == pytest.approx(20.0)


def test_the_lean_path_for_large_tensors_gives_the_same_codebook(monkeypatch) -> None:
    # above LEAN_ABOVE values the sorted copy stays float32 and run sums replace the prefix array
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(200_000) * rng.uniform(0.5, 2.0, 200_000)).astype(np.float32)
    exact = kmeans1d(w, 16, seed=1)
    monkeypatch.setattr(kmeans, "LEAN_ABOVE", 1000)
    lean = kmeans1d(w, 16, seed=1)
    np.testing.assert_allclose(lean, exact, rtol=0, atol=1e-12)
    assert np.array_equal(lean.astype(np.float32), exact.astype(np.float32))
