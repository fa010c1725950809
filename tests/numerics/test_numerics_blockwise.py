"""Block-wise quantization numerics: round trips, error bounds, the MatMulNBits layout, HQQ vs RTN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.errors import ConfigError
from quantscope.numerics.blockwise import (
    BlockQuant,
    dequantize_blockwise,
    quantize_blockwise,
    reconstruction_sqnr,
    unpack_rows,
    valid_block_sizes,
)


@st.composite
def weights(draw: st.DrawFn) -> tuple[np.ndarray, int, int, bool, int]:
    bits = draw(st.sampled_from([4, 8]))
    block = draw(st.sampled_from([16, 32, 64]))
    k = block * draw(st.integers(1, 5))
    n = draw(st.integers(1, 9))
    symmetric = draw(st.booleans())
    k_axis = draw(st.sampled_from([0, 1]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    w = (rng.standard_normal((k, n)) * scale).astype(np.float32)
    if draw(st.booleans()):  # some all-zero and some all-positive blocks
        w[:block, 0] = 0.0
        w[-block:, -1] = np.abs(w[-block:, -1])
    return (w if k_axis == 0 else w.T.copy()), bits, block, symmetric, k_axis


def _codes_of(bq: BlockQuant) -> np.ndarray:
    """Unpack B back to [N, K] codes (the layout ONNX Runtime reads)."""
    b = bq.matmulnbits_b()
    return unpack_rows(b.reshape(bq.n, -1), bq.bits, bq.k)


@given(weights())
@settings(max_examples=150, deadline=None)
def test_round_trip_layout_and_error_bound(case) -> None:
    w, bits, block, symmetric, k_axis = case
    bq = quantize_blockwise(w, bits, block, symmetric=symmetric, k_axis=k_axis)
    k = w.shape[k_axis]
    n = w.shape[1 - k_axis]
    n_blocks = k // block
    # shapes and dtypes of the MatMulNBits tensors
    b = bq.matmulnbits_b()
    assert b.dtype == np.uint8 and b.shape == (n, n_blocks, block * bits // 8)
    assert bq.matmulnbits_scales().shape == (n * n_blocks,)
    zp = bq.matmulnbits_zero_points()
    if symmetric:
        assert zp is None
        assert np.all(bq.zero_points == 1 << (bits - 1))
    else:
        assert zp is not None and zp.shape == (n * -(-n_blocks * bits // 8),)
        np.testing.assert_array_equal(
            unpack_rows(zp.reshape(n, -1), bits, n_blocks), bq.zero_points
        )
    # packing round trip: B unpacks to the codes, K-major inside each column
    np.testing.assert_array_equal(_codes_of(bq), bq.codes.reshape(n, k))
    # dequantize in NumPy from the packed bytes equals BlockQuant.dequantize
    codes = _codes_of(bq).reshape(n, n_blocks, block).astype(np.float32)
    manual = ((codes - bq.zero_points[..., None]) * bq.scales[..., None]).reshape(n, k).T
    w_hat = dequantize_blockwise(bq, k_axis)
    np.testing.assert_allclose(w_hat, manual if k_axis == 0 else manual.T, rtol=0, atol=0)
    # error bound: |w - w_hat| <= |scale|/2 for values inside the block's grid range,
    # and at most one step for the clipped extreme of symmetric blocks
    w_kn = w if k_axis == 0 else w.T
    err = np.abs(w_kn - bq.dequantize()).T.reshape(n, n_blocks, block)
    step = np.abs(bq.scales)[..., None]
    bound = step * (1.0 if symmetric else 0.5) * (1 + 1e-5) + 1e-30
    assert np.all(err <= bound + 1e-6 * np.abs(w_kn).max())
    # all-zero blocks are exact
    zero_blocks = np.all(w_kn.T.reshape(n, n_blocks, block) == 0, axis=-1)
    assert np.all(err[zero_blocks] == 0)


@given(weights())
@settings(max_examples=60, deadline=None)
def test_blocked_dequantize_tensors_match(case) -> None:
    w, bits, block, symmetric, k_axis = case
    bq = quantize_blockwise(w, bits, block, symmetric=symmetric, k_axis=k_axis)
    dq = bq.blocked_dequantize(k_axis)
    assert dq.values.shape == w.shape and dq.axis == k_axis and dq.block_size == block
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if symmetric else (0, (1 << bits) - 1)
    assert dq.values.min() >= lo and dq.values.max() <= hi
    scale = np.repeat(dq.scale, block, axis=k_axis)
    zp = 0 if dq.zero_point is None else np.repeat(dq.zero_point, block, axis=k_axis).astype(np.float32)
    onnx_dq = (dq.values.astype(np.float32) - zp) * scale  # ONNX DequantizeLinear's formula
    np.testing.assert_array_equal(onnx_dq, dequantize_blockwise(bq, k_axis))


def test_matmulnbits_layout_by_hand() -> None:
    # one column, K=16, 4 bits: codes 0..15 pack as bytes (1<<4 | 0), (3<<4 | 2), ...
    w = (np.arange(16, dtype=np.float32) - 8.0)[:, None]  # extreme -8 lands on code 0
    bq = quantize_blockwise(w, 4, 16)
    np.testing.assert_allclose(bq.scales, [[1.0]])
    np.testing.assert_array_equal(bq.codes.reshape(-1), np.arange(16))
    np.testing.assert_array_equal(
        bq.matmulnbits_b().reshape(-1), [(2 * i + 1) << 4 | 2 * i for i in range(8)]
    )
    np.testing.assert_array_equal(bq.dequantize(), w)
    # asymmetric zero points of 3 blocks pack low nibble first, padded to a whole byte
    w3 = np.concatenate([np.linspace(0, 1, 16), np.linspace(-1, 0, 16), np.linspace(-1, 2, 16)])
    bq3 = quantize_blockwise(w3.astype(np.float32)[:, None], 4, 16, symmetric=False)
    z = bq3.zero_points.reshape(-1)
    np.testing.assert_array_equal(z, [0, 15, 5])
    np.testing.assert_array_equal(bq3.matmulnbits_zero_points(), [15 << 4 | 0, 5])


def test_int8_symmetric_is_fine() -> None:
    w = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
    bq = quantize_blockwise(w, 8, 64)
    assert reconstruction_sqnr(w, bq.dequantize()) > 40.0
    assert bq.matmulnbits_b().shape == (64, 4, 64)


@pytest.mark.parametrize("symmetric", [True, False])
def test_hqq_is_never_worse_than_rtn_per_block_and_better_overall(symmetric: bool) -> None:
    rng = np.random.default_rng(3)
    # heavy-tailed weights, like trained ones (Student t, 4 dof)
    w = (rng.standard_t(4, size=(512, 96)) * 0.02).astype(np.float32)
    rtn = quantize_blockwise(w, 4, 32, symmetric=symmetric, algorithm="rtn")
    hqq = quantize_blockwise(w, 4, 32, symmetric=symmetric, algorithm="hqq")
    err_rtn = np.square(w - rtn.dequantize()).T.reshape(-1, 32).sum(1)
    err_hqq = np.square(w - hqq.dequantize()).T.reshape(-1, 32).sum(1)
    assert np.all(err_hqq <= err_rtn * (1 + 1e-6))
    gain = reconstruction_sqnr(w, hqq.dequantize()) - reconstruction_sqnr(w, rtn.dequantize())
    print(f"\nHQQ vs RTN on t(4) weights, symmetric={symmetric}: {gain:+.2f} dB")
    assert gain > 0.1
    # deterministic
    again = quantize_blockwise(w, 4, 32, symmetric=symmetric, algorithm="hqq")
    np.testing.assert_array_equal(again.codes, hqq.codes)
    np.testing.assert_array_equal(again.scales, hqq.scales)


def test_bad_input_is_a_config_error_naming_the_fix() -> None:
    w = np.zeros((96, 8), np.float32)
    with pytest.raises(ConfigError, match=r"block_size=64 does not divide .*K=96.*16, 32"):
        quantize_blockwise(w, 4, 64)
    with pytest.raises(ConfigError, match="bits"):
        quantize_blockwise(w, 3, 32)
    with pytest.raises(ConfigError, match="algorithm"):
        quantize_blockwise(w, 4, 32, algorithm="gptq")
    with pytest.raises(ConfigError, match="2-D"):
        quantize_blockwise(np.zeros((32,), np.float32), 4, 32)
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        quantize_blockwise(bad, 4, 32)
    assert valid_block_sizes([384, 1536]) == [16, 32, 64, 128]
    assert valid_block_sizes([100]) == []


def test_input_is_not_mutated() -> None:
    w = np.random.default_rng(1).standard_normal((64, 8)).astype(np.float32)
    before = w.copy()
    quantize_blockwise(w, 4, 32, algorithm="hqq", symmetric=False)
    np.testing.assert_array_equal(w, before)
