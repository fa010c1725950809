"""A quantized HardSigmoid written as an integer Add (methods/static_int8/gates.py): the codes match
the float island ``DQ → HardSigmoid → Q`` they replace, ONNX Runtime runs it as QLinearAdd, and
every case that cannot be written so stays the float island."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.graph.build import NameAllocator
from quantscope.graph.queries import nodes_by_label
from quantscope.methods.static_int8.gates import (
    represents_unit_range,
    scalar_constant,
    write_integer_hardsigmoid,
)
from quantscope.numerics.affine import activation_qparams, dequantize
from quantscope.runtime import optimized_op_types

X_SCALE, X_ZP = 0.05, 110  # x in about [-5.5, 7.25]: both clipped ends of the gate and its slope


def _island(alpha: float, beta: float, dtype: int = TensorProto.UINT8) -> onnx.ModelProto:
    """``x → Q → DQ → HardSigmoid → Q([0, 1]) → DQ → y``, the island static-int8 used to write."""
    np_dtype = np.uint8 if dtype == TensorProto.UINT8 else np.int8
    gate = activation_qparams(0.0, 1.0, dtype=np_dtype)
    x_zp = X_ZP if dtype == TensorProto.UINT8 else X_ZP - 128
    inits = [
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "xs"),
        numpy_helper.from_array(np.array(x_zp, np_dtype), "xz"),
        numpy_helper.from_array(np.asarray(gate.scale, np.float32), "gs"),
        numpy_helper.from_array(np.asarray(gate.zero_point, np_dtype), "gz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_q"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_dq"),
        helper.make_node("HardSigmoid", ["xd"], ["g"], name="gate", alpha=alpha, beta=beta),
        helper.make_node("QuantizeLinear", ["g", "gs", "gz"], ["gq"], name="g_q"),
        helper.make_node("DequantizeLinear", ["gq", "gs", "gz"], ["y"], name="g_dq"),
    ]
    graph = helper.make_graph(nodes, "island", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _rewrite(proto: onnx.ModelProto, qp=None) -> tuple[bool, onnx.ModelProto]:
    model = ir.from_proto(proto)
    gate = nodes_by_label(model.graph)["gate"]
    dtype = np.uint8 if proto.graph.initializer[3].data_type == TensorProto.UINT8 else np.int8
    written = write_integer_hardsigmoid(model.graph, NameAllocator(model.graph), gate,
                                        qp if qp is not None else activation_qparams(0.0, 1.0, dtype=dtype))
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return written, out


def _run(proto: onnx.ModelProto, x: np.ndarray, *, optimize: bool = True) -> np.ndarray:
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(("alpha", "beta"), [(1 / 6, 0.5), (0.2, 0.5), (0.25, 0.3), (0.5, 0.0)])
@pytest.mark.parametrize("dtype", [TensorProto.UINT8, TensorProto.INT8])
def test_integer_add_gives_the_codes_of_the_float_island(alpha: float, beta: float, dtype: int) -> None:
    proto = _island(alpha, beta, dtype)
    written, out = _rewrite(proto)
    assert written
    assert Counter(n.op_type for n in out.graph.node)["HardSigmoid"] == 0
    x = np.random.default_rng(3).uniform(-6, 7.5, (4, 64)).astype(np.float32)
    want = _run(proto, x, optimize=False)
    got = _run(out, x)
    step = 1 / 255
    # the same codes, up to a rounding tie in the integer Add's requantization
    assert np.max(np.abs(got - want)) <= step * 1.01
    assert np.mean(np.abs(got - want) < step / 2) >= 0.97
    assert want.min() == 0.0 and want.max() == 1.0  # both clipped ends are exercised
    kernels = optimized_op_types(qs.Model.from_proto(out))
    assert "HardSigmoid" not in kernels, kernels
    if dtype == TensorProto.UINT8:  # ONNX Runtime fuses QDQ Add/Mul for uint8 activations only (as for residuals)
        assert kernels.get("QLinearAdd") == 1, kernels


def test_not_written_when_the_parameters_do_not_span_the_unit_range() -> None:
    proto = _island(0.2, 0.5)
    qp = activation_qparams(-1.0, 1.0, dtype=np.uint8)  # saturation would not be the clip at 0
    written, out = _rewrite(proto, qp)
    assert not written
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in proto.graph.node]


def test_unit_range_and_scalar_constants() -> None:
    for dtype in (np.uint8, np.int8):
        assert represents_unit_range(activation_qparams(0.0, 1.0, dtype=dtype))
        assert not represents_unit_range(activation_qparams(0.0, 0.9, dtype=dtype))
        assert not represents_unit_range(activation_qparams(0.0, 1.0, dtype=dtype, symmetric=True))
        for c in (3.0, 2.5, 0.7, -1.25, 0.0):
            codes, qp = scalar_constant(c, np.dtype(dtype))
            assert codes.dtype == dtype and codes.shape == ()
            assert abs(float(dequantize(codes, qp)) - c) <= 1e-6 * max(1.0, abs(c))


def _hardswish_net(alpha: float) -> onnx.ModelProto:
    """Conv → x·HardSigmoid(x) → Conv: the gate's input is also the Mul's (nothing to fold into)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["c"], ["g"], name="gate", alpha=alpha, beta=0.5),
        helper.make_node("Mul", ["c", "g"], ["h"], name="swish"),
        helper.make_node("Conv", ["h", "w2", "b2"], ["y"], name="conv2"),
    ]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.standard_normal((8, 3, 3, 3)) * 0.8), ("b1", rng.standard_normal(8) * 0.2),
        ("w2", rng.standard_normal((4, 8, 1, 1)) * 0.4), ("b2", np.zeros(4)))]
    graph = helper.make_graph(nodes, "hardswish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_static_int8_runs_hardswish_without_a_float_island() -> None:
    model = qs.Model.from_proto(_hardswish_net(1 / 6))
    data = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(num_samples=16, measure=False), {"x": data})
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["gate"].action == "quantized" and "QLinearAdd" in decisions["gate"].reason
    kernels = optimized_op_types(q.model)
    assert kernels.get("QLinearAdd") == 1 and kernels.get("QLinearMul") == 1, kernels
    assert "HardSigmoid" not in kernels and kernels.get("DequantizeLinear", 0) == 1, kernels  # the output's only
    onnx.checker.check_model(q.model.to_proto())


def test_a_gate_with_negative_slope_stays_float_with_its_reason() -> None:
    model = qs.Model.from_proto(_hardswish_net(-1 / 6))
    data = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(num_samples=16, measure=False), {"x": data})
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["gate"].action == "float" and "alpha" in decisions["gate"].reason
    assert optimized_op_types(q.model).get("HardSigmoid") == 1
