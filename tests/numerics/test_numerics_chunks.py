"""Chunked numerics give the results of the whole-array versions (chunks forced tiny here)."""

from __future__ import annotations

import numpy as np
import pytest

from quantscope.numerics import affine, blockwise, chunks, dynamic, half, packing


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 200)
    monkeypatch.setattr(packing, "_PACK_CODES", 16)


def test_row_slices_cover_every_row_once() -> None:
    got = list(chunks.row_slices(10, 30, chunk_bytes=100))
    assert [(s.start, s.stop) for s in got] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(chunks.row_slices(3, 10**9, chunk_bytes=1)) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_all_finite_finds_a_nan_in_any_chunk(tiny_chunks: None) -> None:
    w = np.ones((64, 16), np.float32)
    assert chunks.all_finite(w)
    w[50, 3] = np.inf
    assert not chunks.all_finite(w)
    assert chunks.all_finite(np.arange(5))


@pytest.mark.parametrize("k_axis", [0, 1])
@pytest.mark.parametrize(("bits", "symmetric", "algorithm"), [(4, True, "rtn"), (8, False, "rtn"), (4, False, "hqq")])
def test_blockwise_in_chunks_equals_whole(k_axis: int, bits: int, symmetric: bool, algorithm: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    w = np.random.default_rng(0).standard_normal((64, 40) if k_axis == 0 else (40, 64)).astype(np.float32)
    whole = blockwise.quantize_blockwise(w, bits, 32, symmetric=symmetric, k_axis=k_axis, algorithm=algorithm)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 300)  # a few output channels at a time
    parts = blockwise.quantize_blockwise(w, bits, 32, symmetric=symmetric, k_axis=k_axis, algorithm=algorithm)
    np.testing.assert_array_equal(parts.codes, whole.codes)
    np.testing.assert_array_equal(parts.scales, whole.scales)
    np.testing.assert_array_equal(parts.zero_points, whole.zero_points)
    expected = blockwise.reconstruction_sqnr(w, blockwise.dequantize_blockwise(whole, k_axis))
    assert blockwise.blockwise_sqnr(w, parts, k_axis) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_pack_bits_in_chunks_equals_whole(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=203).astype(np.uint8)
    whole = packing.pack_bits(codes, bits)
    monkeypatch.setattr(packing, "_PACK_CODES", 16)
    parts = packing.pack_bits(codes, bits)
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(packing.unpack_bits(parts, bits, codes.size), codes)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_weight_quantization_in_chunks_equals_whole(axis: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    w = np.random.default_rng(1).standard_normal((48, 20)).astype(np.float32) * 3
    qp = affine.weight_qparams(w, axis)
    q = affine.quantize(w, qp)
    safe = dynamic.u8s8_safe_weight_qparams(w, axis)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 256)  # 3 rows at a time
    monkeypatch.setattr(affine, "CHUNK_BYTES", 256)
    np.testing.assert_array_equal(affine.weight_qparams(w, axis).scale, qp.scale)
    np.testing.assert_array_equal(affine.quantize(w, qp), q)
    np.testing.assert_array_equal(dynamic.u8s8_safe_weight_qparams(w, axis).scale, safe.scale)
    expected = np.max(np.abs(w), axis=None if axis is None else 1 - axis)
    np.testing.assert_array_equal(affine.abs_max(w, axis), expected)


def test_float16_conversion_in_chunks_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(2).standard_normal((30, 7)).astype(np.float32)
    x[3, 2], x[20, 1], x[29, 6] = 1e6, 1e-30, np.nan
    whole = half.to_float16(x)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 64)
    parts = half.to_float16(x)
    np.testing.assert_array_equal(parts.array, whole.array)
    assert (parts.clamped_large, parts.raised_tiny, parts.max_abs_error) == (
        whole.clamped_large, whole.raised_tiny, whole.max_abs_error)
    assert (parts.clamped_large, parts.raised_tiny) == (1, 1)
