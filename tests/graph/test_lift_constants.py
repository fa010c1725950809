"""LiftConstantsPass and lift_constants on a Paddle2ONNX-style graph (every weight and bias a
Constant node): structure, numerics against ONNX Runtime, validity; subgraphs and the Constant
forms that stay; and every weight method quantizing those weights through the public API."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.graph.passes import LiftConstantsPass
from quantscope.graph.prepare import lift_constants, prepare_passes
from quantscope.io import Model

WEIGHTS = {"conv_w", "conv_b", "fc_w", "fc_b", "gemm_w", "gemm_b"}


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)
    return helper.make_node("Constant", [], [name], name=f"{name}_const", value=tensor)


def paddle_style(seed: int = 0, channels: int = 32) -> onnx.ModelProto:
    """Conv → Relu → GlobalAveragePool → Flatten → MatMul + Add → Relu → Gemm, every weight a Constant."""
    rng = np.random.default_rng(seed)
    nodes = [
        _const("conv_w", rng.standard_normal((channels, 3, 3, 3)) * 0.3),
        _const("conv_b", rng.standard_normal(channels) * 0.1),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        _const("fc_w", rng.standard_normal((channels, 128)) * 0.1),
        _const("fc_b", rng.standard_normal(128) * 0.1),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "fc_b"], ["a"], name="fc_bias"),
        helper.make_node("Relu", ["a"], ["h"], name="relu2"),
        _const("gemm_w", rng.standard_normal((128, 10)) * 0.1),
        _const("gemm_b", rng.standard_normal(10) * 0.1),
        helper.make_node("Gemm", ["h", "gemm_w", "gemm_b"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "paddle_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="paddle2onnx")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _lifted(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, LiftConstantsPass, bool]:
    model = ir.from_proto(proto)
    pass_ = LiftConstantsPass()
    result = pass_(model)
    return ir.to_proto(result.model), pass_, result.modified


def test_constant_weights_become_initializers_with_the_same_numbers():
    proto = paddle_style()
    lifted, pass_, modified = _lifted(proto)
    assert modified and len(pass_.notes) == 5  # every tensor of >= 16 values: all but the 10-value gemm_b
    assert not [n for n in lifted.graph.node if n.op_type == "Constant"]
    assert {i.name for i in lifted.graph.initializer} >= WEIGHTS
    onnx.checker.check_model(lifted, full_check=True)
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(lifted, x), _run(proto, x))  # the same tensors: bit-exact


def test_scalar_and_list_attribute_forms_are_lifted_and_graph_outputs_stay():
    nodes = [
        helper.make_node("Constant", [], ["k"], value_float=2.0),
        helper.make_node("Constant", [], ["shift"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["shape"], value_ints=[-1, 3]),
        helper.make_node("Constant", [], ["tag"], value_int=7),
        helper.make_node("Mul", ["x", "k"], ["m"]),
        helper.make_node("Add", ["m", "shift"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "forms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("tag", TensorProto.INT64, [])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    lifted, pass_, _ = _lifted(proto)
    assert [n.output[0] for n in lifted.graph.node if n.op_type == "Constant"] == ["tag"]  # a graph output
    assert {"k", "shift", "shape"} <= {i.name for i in lifted.graph.initializer}
    assert pass_.notes == []  # nothing weight-sized
    onnx.checker.check_model(lifted, full_check=True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(_run(lifted, x), _run(proto, x))


def test_constants_inside_a_subgraph_become_that_subgraphs_initializers():
    w = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    branch = helper.make_graph(
        [_const("bw", w), helper.make_node("MatMul", ["x", "bw"], ["out"])],
        "then", [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["out2"])],
        "else", [], [helper.make_tensor_value_info("out2", TensorProto.FLOAT, [2, 4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)], "sub",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    lifted, pass_, modified = _lifted(proto)
    then = next(a.g for a in lifted.graph.node[0].attribute if a.name == "then_branch")
    assert modified and [i.name for i in then.initializer] == ["bw"]
    assert [n.op_type for n in then.node] == ["MatMul"] and "subgraph" in pass_.notes[0]
    onnx.checker.check_model(lifted, full_check=True)
    x = np.ones((2, 4), np.float32)
    session = ort.InferenceSession(lifted.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x, "cond": np.array(True)})[0], x @ w, rtol=1e-6)


def test_a_model_without_constants_is_not_modified():
    proto = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "plain",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        )
    )
    _, pass_, modified = _lifted(proto)
    assert not modified and pass_.notes == []


def test_lifting_runs_first_in_prepare():
    assert isinstance(prepare_passes()[0], LiftConstantsPass)


def test_lift_constants_returns_a_new_model_and_leaves_the_callers_alone():
    model = Model.from_proto(paddle_style())
    lifted = lift_constants(model)
    assert sum(n.op_type == "Constant" for n in model.ir.graph) == 6  # untouched
    assert not [n for n in lifted.ir.graph if n.op_type == "Constant"]
    assert set(lifted.ir.graph.initializers) >= WEIGHTS
    assert lifted.fingerprint == model.fingerprint
    params = sum(int(np.prod(v.shape.dims)) for v in lifted.ir.graph.initializers.values())
    assert params == 32 * 27 + 32 + 32 * 128 + 128 + 128 * 10 + 10


@pytest.fixture(scope="module")
def paddle_model(tmp_path_factory) -> qs.Model:
    path = tmp_path_factory.mktemp("paddle") / "paddle.onnx"
    onnx.save(paddle_style(), path)
    return qs.load(path)


@pytest.mark.parametrize(
    "config, quantized",
    [
        (qs.StaticInt8(), {"conv", "fc", "head"}),
        (qs.DynamicInt8(), {"fc", "head"}),
        (qs.WeightInt8(), {"fc", "head"}),
        (qs.Cluster(), {"fc", "head"}),
    ],
    ids=lambda v: getattr(v, "method", ""),
)
def test_every_weight_method_quantizes_weights_held_in_constant_nodes(paddle_model, config, quantized):
    data = qs.Dataset.from_arrays(
        {"x": np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)}
    )
    result = qs.quantize(paddle_model, config, data if config.needs_calibration else None)
    done = {d.node for d in result.plan.decisions if d.action == "quantized"}
    assert quantized <= done
    assert any("Constant nodes into initializers" in n for n in result.plan.notes)
