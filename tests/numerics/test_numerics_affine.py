"""Affine quantization parameters and QuantizeLinear/DequantizeLinear arithmetic."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from quantscope.errors import ConfigError
from quantscope.numerics.affine import (
    MIN_SCALE,
    QParams,
    activation_qparams,
    dequantize,
    quantize,
    quantize_bias,
    weight_qparams,
)

F32_EPS = float(np.finfo(np.float32).eps)

finite_f32 = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32
)
act_dtypes = st.sampled_from([np.uint8, np.int8, np.uint16, np.int16])


def ort_qdq(x: np.ndarray, qp: QParams, opset: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Run QuantizeLinear then DequantizeLinear in ONNX Runtime; return (q, dequantized)."""
    qtype = helper.np_dtype_to_tensor_dtype(qp.dtype)
    attrs = {} if qp.axis is None else {"axis": qp.axis}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [
            helper.make_tensor_value_info("q", qtype, list(x.shape)),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape)),
        ],
        [numpy_helper.from_array(qp.scale, "s"), numpy_helper.from_array(qp.zero_point, "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, y = sess.run(None, {"x": x})
    return q, y


# ------------------------------------------------------------------ activation_qparams


@settings(deadline=None, max_examples=200, derandomize=True)
@given(a=finite_f32, b=finite_f32, dtype=act_dtypes, symmetric=st.booleans())
def test_activation_qparams_properties(a: float, b: float, dtype: type, symmetric: bool) -> None:
    lo, hi = min(a, b), max(a, b)
    qp = activation_qparams(lo, hi, dtype, symmetric=symmetric)
    assert qp.scale.dtype == np.float32 and qp.scale.shape == ()
    assert qp.zero_point.dtype == np.dtype(dtype) and qp.axis is None
    assert float(qp.scale) >= MIN_SCALE
    assert np.isfinite(qp.scale) and float(qp.scale) >= np.finfo(np.float32).tiny
    assert qp.qmin <= int(qp.zero_point) <= qp.qmax
    # 0.0 is exactly representable.
    zero = quantize(np.float32(0.0), qp)
    assert zero == qp.zero_point
    assert dequantize(zero, qp) == 0.0
    # The float range of the integer grid covers [min(lo, 0), max(hi, 0)] to half a step.
    r_lo, r_hi = qp.float_range()
    half = float(qp.scale) / 2
    tol = half * (1 + 1e-5) + 4 * F32_EPS * max(abs(lo), abs(hi))
    assert float(r_lo) <= min(lo, 0.0) + tol
    assert float(r_hi) >= max(hi, 0.0) - tol


def test_activation_qparams_asymmetric_uint8() -> None:
    qp = activation_qparams(-1.0, 3.0)
    assert qp.dtype == np.uint8
    assert float(qp.scale) == np.float32(4.0 / 255)
    assert int(qp.zero_point) == 64  # round(1 / (4 / 255)) = round(63.75)
    assert qp.qmin == 0 and qp.qmax == 255


def test_activation_qparams_widens_to_zero() -> None:
    pos = activation_qparams(2.0, 5.0)
    assert int(pos.zero_point) == 0
    assert float(pos.scale) == np.float32(5.0 / 255)
    neg = activation_qparams(-5.0, -2.0, np.int8)
    assert int(neg.zero_point) == 127
    assert float(neg.scale) == np.float32(5.0 / 255)
    same = activation_qparams(5.0, 5.0)
    assert float(same.scale) == np.float32(5.0 / 255)


def test_activation_qparams_degenerate_ranges() -> None:
    qp = activation_qparams(0.0, 0.0)
    assert float(qp.scale) == 1.0 and int(qp.zero_point) == 0
    qp8 = activation_qparams(0.0, 0.0, np.int8, symmetric=True)
    assert float(qp8.scale) == 1.0 and int(qp8.zero_point) == 0
    tiny = activation_qparams(0.0, 1e-30)
    assert float(tiny.scale) == np.float32(MIN_SCALE)
    # The floor is normal, and so is its square (a bias scale).
    assert np.float32(MIN_SCALE) * np.float32(MIN_SCALE) >= np.finfo(np.float32).tiny


def test_activation_qparams_symmetric() -> None:
    u8 = activation_qparams(-2.0, 1.0, np.uint8, symmetric=True)
    assert int(u8.zero_point) == 128
    assert float(u8.scale) == np.float32(2.0 / 127.5)
    i8 = activation_qparams(-0.5, 3.0, np.int8, symmetric=True)
    assert int(i8.zero_point) == 0
    assert float(i8.scale) == np.float32(3.0 / 127.5)
    # +absmax sits half a step above 127 and saturates there.
    q = quantize(np.float32(3.0), i8)
    assert q == 127
    assert abs(float(dequantize(q, i8)) - 3.0) <= float(i8.scale) / 2 + 4 * F32_EPS * 3.0


@pytest.mark.parametrize(
    ("lo", "hi", "dtype"),
    [
        (1.0, 0.0, np.uint8),
        (float("nan"), 1.0, np.uint8),
        (0.0, float("inf"), np.uint8),
        (-1.0, 1.0, np.int32),
        (-1.0, 1.0, np.float32),
        (-1e300, 1e300, np.uint8),
        ("a", 1.0, np.uint8),
    ],
)
def test_activation_qparams_rejects(lo: object, hi: object, dtype: type) -> None:
    with pytest.raises(ConfigError):
        activation_qparams(lo, hi, dtype)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- QParams


def test_qparams_validation() -> None:
    with pytest.raises(ConfigError):
        QParams(np.float32(1.0), np.zeros(2, np.uint8), np.uint8)
    with pytest.raises(ConfigError):
        QParams(np.ones(2, np.float32), np.zeros(2, np.uint8), np.uint8)  # no axis
    with pytest.raises(ConfigError):
        QParams(np.float32(0.0), np.uint8(0), np.uint8)
    with pytest.raises(ConfigError):
        QParams(np.float32(1.0), np.int16(300), np.uint8)
    with pytest.raises(ConfigError):
        QParams(np.float32(1.0), np.uint8(0), np.float32)
    qp = QParams(np.ones(3), [1, 2, 3], np.uint8, axis=1)
    assert qp.scale.dtype == np.float32 and qp.zero_point.dtype == np.uint8
    assert qp.per_channel and qp.qmin == 0 and qp.qmax == 255
    # Value equality and hashing work despite the array fields.
    same = QParams(np.ones(3, np.float32), np.array([1, 2, 3], np.uint8), np.dtype(np.uint8), 1)
    assert qp == same and hash(qp) == hash(same) and len({qp, same}) == 1
    assert qp != QParams(np.ones(3), [1, 2, 4], np.uint8, axis=1)
    assert qp != QParams(np.ones(3), [1, 2, 3], np.uint8, axis=0)


# -------------------------------------------------------------- quantize / dequantize


@settings(deadline=None, max_examples=150, derandomize=True)
@given(
    lo=st.floats(-1e4, 0.0, width=32),
    hi=st.floats(0.0, 1e4, width=32),
    dtype=act_dtypes,
    data=st.data(),
)
def test_round_trip_error_bound(lo: float, hi: float, dtype: type, data: st.DataObject) -> None:
    qp = activation_qparams(lo, hi, dtype)
    r_lo, r_hi = (float(v) for v in qp.float_range())
    scale = float(qp.scale)
    inside = data.draw(
        st.lists(st.floats(r_lo, r_hi, width=32), min_size=1, max_size=50), label="inside"
    )
    x = np.asarray(inside, dtype=np.float32)
    err = np.abs(dequantize(quantize(x, qp), qp).astype(np.float64) - x)
    tol = scale / 2 + 4 * F32_EPS * (np.abs(x) + scale)
    assert np.all(err <= tol)
    # Values beyond the grid saturate to its ends.
    out = np.array([r_hi + scale, r_hi * 4 + 10, r_lo - scale, r_lo * 4 - 10], np.float32)
    q = quantize(out, qp)
    assert q[0] == qp.qmax and q[1] == qp.qmax
    assert q[2] == qp.qmin and q[3] == qp.qmin


def test_quantize_rounds_half_to_even_and_saturates() -> None:
    qp = QParams(np.float32(1.0), np.int8(0), np.int8)
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.5, 300, -300, np.inf, -np.inf], np.float32)
    assert quantize(x, qp).tolist() == [0, 2, 2, 0, -2, 126, 127, 127, -128, 127, -128]
    assert quantize(np.array([np.nan], np.float32), qp).tolist() == [-128]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_broadcasting(axis: int) -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 5, 3)) * np.array([1, 10, 100])[None, None, :]).astype(np.float32)
    x = np.moveaxis(x, -1, axis if axis >= 0 else x.ndim + axis).copy()
    channels = x.shape[axis]
    qp = QParams(
        np.linspace(0.01, 1.0, channels).astype(np.float32),
        np.arange(channels) * 7,
        np.uint8,
        axis=axis,
    )
    q = quantize(x, qp)
    assert q.shape == x.shape and q.dtype == np.uint8
    for c in range(channels):
        one = QParams(qp.scale[c], qp.zero_point[c], np.uint8)
        sl = np.take(x, c, axis=axis)
        np.testing.assert_array_equal(np.take(q, c, axis=axis), quantize(sl, one))
        np.testing.assert_array_equal(
            np.take(dequantize(q, qp), c, axis=axis), dequantize(quantize(sl, one), one)
        )
    with pytest.raises(ConfigError):
        quantize(np.zeros((2, 2), np.float32), qp)


def test_dequantize_rejects_floats() -> None:
    with pytest.raises(ConfigError):
        dequantize(np.zeros(3, np.float32), activation_qparams(-1, 1))


# ------------------------------------------------------------------- ONNX Runtime parity


@settings(deadline=None, max_examples=25, derandomize=True)
@given(
    lo=st.floats(-100.0, 0.0),
    hi=st.floats(1e-3, 100.0),
    dtype=st.sampled_from([np.uint8, np.int8]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_onnxruntime_per_tensor(lo: float, hi: float, dtype: type, seed: int) -> None:
    qp = activation_qparams(lo, hi, dtype)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(512) * max(hi, -lo)).astype(np.float32)
    # Exact ties k + 0.5 steps, and values beyond the range.
    ties = ((np.arange(-40, 40) + 0.5) * qp.scale).astype(np.float32)
    x = np.concatenate([x, ties, np.float32([4 * lo - 1, 4 * hi + 1, 0.0])])
    q_ref, y_ref = ort_qdq(x, qp)
    q = quantize(x, qp)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(dequantize(q, qp), y_ref)


@pytest.mark.parametrize("axis", [0, 1])
def test_matches_onnxruntime_per_channel(axis: int) -> None:
    rng = np.random.default_rng(axis)
    w = (rng.standard_normal((6, 5, 3, 3)) * rng.uniform(0.01, 5, size=(6, 5, 1, 1))).astype(
        np.float32
    )
    qp = weight_qparams(w, axis)
    x = np.concatenate([w, 1.5 * w], axis=2)  # some values saturate
    q_ref, y_ref = ort_qdq(x, qp)
    q = quantize(x, qp)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(dequantize(q, qp), y_ref)


def test_matches_onnxruntime_uint8_per_channel_with_zero_points() -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 200)) * 4).astype(np.float32)
    qp = QParams(np.float32([0.01, 0.05, 0.1]), [0, 128, 250], np.uint8, axis=0)
    q_ref, y_ref = ort_qdq(x, qp)
    np.testing.assert_array_equal(quantize(x, qp), q_ref)
    np.testing.assert_array_equal(dequantize(quantize(x, qp), qp), y_ref)


def test_matches_onnxruntime_int16_and_nonfinite() -> None:
    rng = np.random.default_rng(11)
    qp16 = activation_qparams(-3.0, 5.0, np.int16)
    x = (rng.standard_normal(4000) * 3).astype(np.float32)
    q_ref, y_ref = ort_qdq(x, qp16, opset=21)
    np.testing.assert_array_equal(quantize(x, qp16), q_ref)
    np.testing.assert_array_equal(dequantize(q_ref, qp16), y_ref)
    for dtype, zp in ((np.uint8, 128), (np.int8, 5)):
        qp = QParams(np.float32(0.5), np.asarray(zp, dtype), dtype)
        special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38], np.float32)
        q_ref, _ = ort_qdq(special, qp)
        np.testing.assert_array_equal(quantize(special, qp), q_ref)


# ---------------------------------------------------------------------- weight_qparams


def test_weight_qparams_per_tensor() -> None:
    w = np.array([[-2.0, 0.5], [1.0, 0.0]], np.float32)
    qp = weight_qparams(w, None)
    assert qp.dtype == np.int8 and qp.axis is None and int(qp.zero_point) == 0
    assert float(qp.scale) == np.float32(2.0 / 127)
    q = quantize(w, qp)
    assert q.min() == -127 and q.max() <= 127


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_weight_qparams_per_channel(axis: int) -> None:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 2)).astype(np.float32)
    norm = axis % w.ndim
    zero_index = [slice(None)] * w.ndim
    zero_index[norm] = 1
    w[tuple(zero_index)] = 0.0  # an all-zero channel
    qp = weight_qparams(w, axis)
    assert qp.axis == norm and qp.scale.shape == (w.shape[norm],)
    others = tuple(i for i in range(w.ndim) if i != norm)
    absmax = np.abs(w).max(axis=others)
    expected = np.where(absmax == 0, 1.0, absmax / 127).astype(np.float32)
    np.testing.assert_array_equal(qp.scale, expected)
    q = quantize(w, qp)
    assert q.min() >= -127 and q.max() <= 127
    # The largest magnitude of every non-zero channel lands on +-127.
    qabs = np.abs(q.astype(np.int16)).max(axis=others)
    assert np.all(qabs[absmax > 0] == 127) and np.all(qabs[absmax == 0] == 0)


def test_weight_qparams_bits_and_reduce_range() -> None:
    rng = np.random.default_rng(9)
    w = rng.standard_normal(1000).astype(np.float32)
    q = quantize(w, weight_qparams(w, None, reduce_range=True))
    assert np.abs(q.astype(np.int16)).max() == 63
    q4 = quantize(w, weight_qparams(w, None, bits=4))
    assert np.abs(q4.astype(np.int16)).max() == 7
    qp12 = weight_qparams(w, None, bits=12)
    assert qp12.dtype == np.int16
    assert np.abs(quantize(w, qp12).astype(np.int32)).max() == 2047
    assert float(weight_qparams(np.zeros(5), None).scale) == 1.0


@pytest.mark.parametrize(
    ("w", "axis", "kwargs"),
    [
        (np.ones((2, 2)), 2, {}),
        (np.ones((2, 2)), None, {"bits": 1}),
        (np.ones((2, 2)), None, {"bits": 2, "reduce_range": True}),
        (np.ones((2, 2)), None, {"bits": 17}),
        (np.array([1.0, np.nan]), None, {}),
        (np.array(["a"]), None, {}),
        (np.float32(1.0), 0, {}),
    ],
)
def test_weight_qparams_rejects(w: np.ndarray, axis: int | None, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        weight_qparams(w, axis, **kwargs)


# ----------------------------------------------------------------------- quantize_bias


def test_quantize_bias_per_channel() -> None:
    b = np.array([0.1, -0.2, 3.0], np.float32)
    w_scale = np.array([0.01, 0.02, 0.5], np.float32)
    q, qp = quantize_bias(b, 0.05, w_scale)
    assert q.dtype == np.int32 and qp.dtype == np.int32 and qp.axis == 0
    np.testing.assert_array_equal(qp.scale, np.float32(0.05) * w_scale)
    np.testing.assert_array_equal(qp.zero_point, np.zeros(3, np.int32))
    expected = np.rint(b.astype(np.float64) / qp.scale.astype(np.float64)).astype(np.int32)
    np.testing.assert_array_equal(q, expected)
    assert np.all(np.abs(dequantize(q, qp) - b) <= qp.scale / 2 * (1 + 1e-6))


def test_quantize_bias_per_tensor_and_saturation() -> None:
    q, qp = quantize_bias(np.array([1.0, -1.0, 1e9, -1e9]), np.float32(1e-3), np.float32(1e-3))
    assert qp.axis is None and qp.scale.shape == ()
    info = np.iinfo(np.int32)
    assert q.tolist() == [1_000_000, -1_000_000, info.max, info.min]


def test_quantize_bias_rejects() -> None:
    with pytest.raises(ConfigError):
        quantize_bias(np.ones(2), 0.1, np.ones(3, np.float32))
    with pytest.raises(ConfigError):
        quantize_bias(np.ones(2), 0.0, np.ones(2, np.float32))
    with pytest.raises(ConfigError):
        quantize_bias(np.ones(2), np.ones(2), np.ones(2, np.float32))
    with pytest.raises(ConfigError):
        quantize_bias(np.ones(2), 1e-30, np.full(2, 1e-30, np.float32))
