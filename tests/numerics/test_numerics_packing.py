"""b-bit packing: round trips, sizes, the documented layout, and the ONNX unpacking ops in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.errors import ConfigError
from quantscope.graph.expand import expand_coded_weight, unpack_nodes
from quantscope.graph.qdq import NameAllocator
from quantscope.io import Model
from quantscope.numerics.lowbit import CodedTensor
from quantscope.numerics.packing import pack_bits, packed_size, unpack_bits
from quantscope.runtime import make_session, optimized_op_types, run


@st.composite
def codes_and_bits(draw: st.DrawFn, max_len: int = 200) -> tuple[np.ndarray, int]:
    bits = draw(st.integers(1, 8))
    n = draw(st.integers(0, max_len))
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(0, 1 << bits, size=n).astype(np.uint8)
    return codes, bits


@given(codes_and_bits())
@settings(max_examples=300, deadline=None)
def test_round_trip_and_size(case: tuple[np.ndarray, int]) -> None:
    codes, bits = case
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    assert packed.size == packed_size(codes.size, bits) == -(-codes.size * bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, codes.size), codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_every_width_at_awkward_lengths(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for n in (1, 7, 8, 9, 15, 17, 63, 1001):
        codes = rng.integers(0, 1 << bits, size=n).astype(np.uint8)
        packed = pack_bits(codes, bits)
        assert packed.size == (n * bits + 7) // 8
        np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)


def test_layout_is_a_little_endian_bit_stream() -> None:
    # 5 = 0b101 and 3 = 0b011, LSB first: stream bits 1,0,1, 1,1,0 -> byte 0b011101 = 29
    np.testing.assert_array_equal(pack_bits(np.array([5, 3], np.uint8), 3), [29])
    # 2-bit codes 1, 2, 3, 0 sit at shifts 0, 2, 4, 6 of one byte
    np.testing.assert_array_equal(
        pack_bits(np.array([1, 2, 3, 0], np.uint8), 2), [1 | 2 << 2 | 3 << 4]
    )
    # a 3-bit code straddling bytes: code 2 (=7) takes stream bits 6, 7, 8
    np.testing.assert_array_equal(
        pack_bits(np.array([0, 0, 7], np.uint8), 3), [0b11000000, 0b00000001]
    )
    np.testing.assert_array_equal(
        pack_bits(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], np.uint8), 1), [0b1101, 1]
    )


def test_bad_codes_and_widths_are_refused() -> None:
    with pytest.raises(ConfigError, match="0, 3"):
        pack_bits(np.array([4], np.uint8), 2)
    with pytest.raises(ConfigError):
        pack_bits(np.array([-1]), 4)
    for bits in (0, 9):
        with pytest.raises(ConfigError, match="bits"):
            pack_bits(np.array([0], np.uint8), bits)
    with pytest.raises(ConfigError, match="bytes"):
        unpack_bits(np.zeros(1, np.uint8), 3, 3)


def _unpack_model(n: int, bits: int, packed: np.ndarray, as_input: bool) -> Model:
    graph = ir.Graph([], [], nodes=[], name="unpack", opset_imports={"": 13})
    if as_input:
        src = ir.Value(
            name="packed", type=ir.TensorType(ir.DataType.UINT8), shape=ir.Shape([packed.size])
        )
        graph.inputs.append(src)
    else:
        src = ir.Value(
            name="packed",
            const_value=ir.tensor(packed, name="packed"),
            type=ir.TensorType(ir.DataType.UINT8),
            shape=ir.Shape([packed.size]),
        )
        graph.register_initializer(src)
    nodes, out = unpack_nodes(graph, NameAllocator(graph), src, packed.size, n, bits, "codes")
    graph.extend(nodes)
    graph.outputs.append(out)
    model = ir.Model(graph, ir_version=8)
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    return Model(ir=model)


@given(codes_and_bits(max_len=300))
@settings(max_examples=40, deadline=None)
def test_onnx_unpack_equals_numpy(case: tuple[np.ndarray, int]) -> None:
    codes, bits = case
    if codes.size == 0:
        codes = np.zeros(1, np.uint8)
    packed = pack_bits(codes, bits)
    model = _unpack_model(codes.size, bits, packed, as_input=True)
    got = run(make_session(model, optimization="none"), {"packed": packed})[0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, unpack_bits(packed, bits, codes.size))


@pytest.mark.parametrize("bits", range(1, 9))
def test_onnx_unpack_of_a_constant_is_folded_by_ort(bits: int) -> None:
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=777).astype(np.uint8)
    model = _unpack_model(codes.size, bits, pack_bits(codes, bits), as_input=False)
    np.testing.assert_array_equal(run(make_session(model), {})[0], codes)
    assert optimized_op_types(model) == {}  # every unpacking op was constant-folded


def _expand_and_check(coded: CodedTensor) -> tuple[list[ir.Node], dict[str, int]]:
    """Expand ``coded`` into a graph of its own, check it, and compare its output with ``decode``."""
    graph = ir.Graph([], [], nodes=[], name="expand", opset_imports={"": 13})
    nodes, weight, sizes = expand_coded_weight(graph, NameAllocator(graph), coded, "w")
    graph.extend(nodes)
    graph.outputs.append(weight)
    model = Model(ir=ir.Model(graph, ir_version=8))
    onnx.checker.check_model(model.to_proto(), full_check=True)
    np.testing.assert_array_equal(run(make_session(model, optimization="none"), {})[0], coded.decode())
    return nodes, sizes


@pytest.mark.parametrize(
    ("shape", "axis", "bits"),
    [
        ((6, 5), None, 3),
        ((6, 5), 0, 2),
        ((6, 5), 1, 5),
        ((4, 3, 2, 2), 0, 7),
        ((3, 4, 5), 2, 1),
        ((3, 4, 5), 1, 8),
    ],
)
def test_expanded_weight_equals_numpy_decode(
    shape: tuple[int, ...], axis: int | None, bits: int
) -> None:
    rng = np.random.default_rng(len(shape) + bits)
    k = 1 << bits
    codes = rng.integers(0, k, size=shape).astype(np.uint8)
    book_shape = (k,) if axis is None else (shape[axis], k)
    coded = CodedTensor(
        codes=codes,
        codebook=rng.standard_normal(book_shape).astype(np.float32),
        axis=axis,
        bits=bits,
    )
    _, sizes = _expand_and_check(coded)
    assert sizes["packed_bytes"] == packed_size(codes.size, bits)
    assert sizes["codebook_bytes"] == 4 * int(np.prod(book_shape))


@pytest.mark.parametrize(
    ("levels", "bits", "axis"), [([-1.0, 0.0, 1.0], 2, 1), ([-1.0, 1.0], 1, 0)]
)
def test_factored_codebook_stores_scales_and_levels(
    levels: list[float], bits: int, axis: int
) -> None:
    rng = np.random.default_rng(bits)
    shape = (5, 7, 3)
    codes = rng.integers(0, len(levels), size=shape).astype(np.uint8)
    coded = CodedTensor.scaled(codes, rng.random(shape[axis]), np.array(levels), axis, bits)
    nodes, sizes = _expand_and_check(coded)
    assert sizes["codebook_bytes"] == 4 * (shape[axis] + len(levels)) == coded.stored_codebook_bytes
    assert "Mul" in {n.op_type for n in nodes}
