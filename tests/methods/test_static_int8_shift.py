"""Scalar affine blocks after activations (PP-LCNetV3's ``a·y + b``) in static-int8: the scale moves
into the Conv, the shift runs as QLinearAdd with a dequantized scalar; a shift of a float op's
output stays float. Structure (ONNX Runtime's optimized graph), numerics (SQNR floor), validity."""

from __future__ import annotations

import numpy as np
import onnx
from mobile_blocks import images, mobilenet_v3_block
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.numerics.metrics import sqnr_db
from quantscope.runtime import make_session, optimized_op_types, run

SQNR_FLOOR_DB = 15.0


def _outputs(model: qs.Model, data: np.ndarray) -> np.ndarray:
    return run(make_session(model), {"x": data})[0]


def test_affine_blocks_after_hardswish_leave_no_float_island() -> None:
    model = qs.Model.from_proto(mobilenet_v3_block(blocks=2, affine=True))
    data = images(32)
    q = qs.quantize(model, qs.StaticInt8(num_samples=32, measure=False), {"x": data})
    kernels = optimized_op_types(q.model)
    for float_op in ("Mul", "Add", "Div", "Clip", "HardSigmoid", "Conv", "FusedConv"):
        assert kernels.get(float_op, 0) == 0, (float_op, kernels)
    # 3 HardSwish (stem + 1 per block): each a gate Add and a shift Add; 2 residuals
    assert kernels.get("QLinearAdd", 0) == 3 + 3 + 2, kernels
    assert kernels.get("DequantizeLinear", 0) <= 2, kernels
    decisions = {d.node: d for d in q.plan.decisions}
    shifts = [d for d in decisions.values() if d.op_type == "Add" and "scalar constant" in d.reason]
    assert len(shifts) == 3 and all(d.action == "quantized" for d in shifts)
    onnx.checker.check_model(q.model.to_proto())
    assert sqnr_db(_outputs(model, data), _outputs(q.model, data)) >= SQNR_FLOOR_DB


def _erf_shift() -> onnx.ModelProto:
    """Conv → Erf → Add(1) → Conv: the shift reads a float op (GELU's 1 + erf(·))."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1"),
        helper.make_node("Erf", ["c"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="shift"),
        helper.make_node("Conv", ["a", "w2"], ["y"], name="conv2"),
    ]
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("w1", rng.standard_normal((4, 3, 1, 1))), ("w2", rng.standard_normal((2, 4, 1, 1))), ("one", np.array(1.0)))]
    graph = helper.make_graph(nodes, "erf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_a_shift_of_a_float_op_output_stays_float() -> None:
    model = qs.Model.from_proto(_erf_shift())
    data = np.random.default_rng(1).standard_normal((8, 3, 4, 4)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(num_samples=8, measure=False), {"x": data})
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["shift"].action == "float" and "float op" in decisions["shift"].reason
    assert decisions["conv2"].action == "quantized"
    assert optimized_op_types(q.model).get("Add") == 1
