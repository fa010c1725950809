"""Prepare passes: what exporters write as separate float ops becomes one quantizable op.

Each pass is checked three ways on a tiny model: structure, numerics against the float model
in ONNX Runtime, and the ONNX checker.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.graph.prepare import prepare
from quantscope.runtime import make_session, optimized_op_types, run


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def _keras_style_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv → Mul → Add → Relu (tf2onnx's BatchNorm) → Flatten → MatMul → Add (bias) as graph output."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w", rng.standard_normal((8, 3, 3, 3)) * 0.3),
        _init("b", rng.standard_normal(8) * 0.1),
        _init("scale", rng.uniform(0.5, 1.5, (1, 8, 1, 1))),
        _init("shift", rng.standard_normal((1, 8, 1, 1)) * 0.2),
        _init("fc", rng.standard_normal((8 * 8 * 8, 5)) * 0.05),
        _init("fc_b", rng.standard_normal(5) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "scale"], ["m"], name="bn_mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="bn_add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fc_b"], ["y"], name="fc_bias"),
    ]
    graph = helper.make_graph(
        nodes, "keras_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def _load(tmp_path) -> qs.Model:
    path = tmp_path / "m.onnx"
    onnx.save(_keras_style_cnn(), str(path))
    return qs.load(path)


def test_channel_affine_and_bias_add_are_folded(tmp_path) -> None:
    model = _load(tmp_path)
    prepared, notes = prepare(model, bias_into_gemm=True)
    ops = [n.op_type for n in prepared.ir.graph]
    assert ops == ["Conv", "Relu", "Flatten", "Gemm"], ops
    assert any("Mul/Add" in n for n in notes) and any("Gemm" in n for n in notes)
    assert [v.name for v in prepared.ir.graph.outputs] == ["y"]
    onnx.checker.check_model(prepared.to_proto(), full_check=True)
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    want = run(make_session(model), {"x": x})[0]
    got = run(make_session(prepared), {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [n.op_type for n in model.ir.graph][:3] == ["Conv", "Mul", "Add"]  # input untouched


def test_folded_model_runs_on_integer_kernels_only(tmp_path) -> None:
    model = _load(tmp_path)
    x = np.random.default_rng(2).standard_normal((32, 3, 8, 8)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": x}))
    kernels = optimized_op_types(q.model)
    assert kernels.get("QLinearConv") == 1 and kernels.get("QGemm") == 1, kernels
    assert not {"Mul", "Add", "Gemm", "MatMul"} & set(kernels), kernels


def test_shared_or_non_channel_constants_are_left_alone(tmp_path) -> None:
    proto = _keras_style_cnn()
    # a Mul whose constant varies along the width is not a per-channel affine: keep it
    scale = next(i for i in proto.graph.initializer if i.name == "scale")
    scale.CopyFrom(_init("scale", np.ones((1, 1, 1, 8)) * 2.0))
    path = tmp_path / "w.onnx"
    onnx.save(proto, str(path))
    prepared, _ = prepare(qs.load(path), bias_into_gemm=True)
    assert "Mul" in [n.op_type for n in prepared.ir.graph]
