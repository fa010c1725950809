"""Fewer float islands in static-int8: each new op rule by structure (ONNX Runtime's optimized
graph), numerics against float (an SQNR floor) and validity."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from mobile_blocks import images, mobilenet_v3_block
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.graph.prepare import prepare
from quantscope.numerics.metrics import sqnr_db
from quantscope.runtime import make_session, optimized_op_types, run

SQNR_FLOOR_DB = 15.0


def _model(proto: onnx.ModelProto) -> qs.Model:
    return qs.Model.from_proto(proto)


def _quantize(model: qs.Model, data: np.ndarray) -> qs.QuantizedModel:
    return qs.quantize(model, qs.StaticInt8(num_samples=len(data), measure=False), {"x": data})


def _outputs(model: qs.Model, data: np.ndarray) -> np.ndarray:
    return run(make_session(model), {"x": data})[0]


def _ops(model: qs.Model) -> Counter[str]:
    return Counter(n.op_type for n in model.ir.graph)


@pytest.mark.parametrize("gate", ["hardsigmoid", "sigmoid"])
def test_mobilenet_block_runs_integer_with_few_round_trips(gate: str) -> None:
    model = _model(mobilenet_v3_block(blocks=2, gate=gate))
    data = images(32)
    q = _quantize(model, data)
    kernels = optimized_op_types(q.model)
    # HardSwish (x·HardSigmoid(x)) and the SE scale run as QLinearMul; residuals as QLinearAdd
    assert kernels.get("QLinearMul", 0) >= 5, kernels
    assert kernels.get("QLinearAdd", 0) >= 2, kernels
    assert kernels.get("QLinearGlobalAveragePool", 0) >= 2, kernels
    if gate == "sigmoid":
        assert kernels.get("QLinearSigmoid", 0) == 2, kernels
    for float_op in ("Div", "Clip", "Add", "Mul", "Conv", "FusedConv", "HardSigmoid"):
        assert kernels.get(float_op, 0) == 0, (float_op, kernels)
    # the HardSwish gates run as QLinearAdd (3 HardSwish: stem + 1 per block), the SE gate in its QLinearConv
    assert kernels.get("QLinearAdd", 0) == 2 + 3, kernels
    # no float island left: the input's Q and the logits' float Gemm only
    assert kernels.get("DequantizeLinear", 0) <= 2, kernels
    assert kernels.get("Transpose", 0) <= 2, kernels
    onnx.checker.check_model(q.model.to_proto())
    assert sqnr_db(_outputs(model, data), _outputs(q.model, data)) >= SQNR_FLOOR_DB


def test_decomposed_hardswish_and_reshaped_biases_are_rewritten_exactly() -> None:
    model = _model(mobilenet_v3_block(blocks=1))
    prepared, notes = prepare(model, bias_into_gemm=True, integer_chains=True)
    before, after = _ops(model), _ops(prepared)
    assert before["Div"] == 2 and after["Div"] == 0
    # the two HardSwish chains became x·HardSigmoid(x); the SE gate folded into its Conv, Clip(0, 1) left
    assert after["HardSigmoid"] == 2 and after["Clip"] == before["HardSigmoid"] == 1
    assert all(n.op_type != "HardSigmoid" or n.inputs[0].producer().op_type == "Conv" for n in prepared.ir.graph)
    assert after["Reshape"] == 0  # Reshape(bias) evaluated, then the Add folded into the Conv bias
    assert after["Add"] == 1  # only the residual is left
    assert any("HardSwish" in n for n in notes) and any("shape op" in n for n in notes)
    data = images(4)
    np.testing.assert_allclose(_outputs(prepared, data), _outputs(model, data), rtol=1e-4, atol=1e-5)
    # the other methods do not rewrite these chains
    assert _ops(prepare(model)[0])["Div"] == 2


def test_leaky_relu_runs_as_an_integer_kernel() -> None:
    model = _model(mobilenet_v3_block(blocks=1, activation="leakyrelu"))
    data = images(32)
    q = _quantize(model, data)
    assert optimized_op_types(q.model).get("QLinearLeakyRelu", 0) == 1
    assert sqnr_db(_outputs(model, data), _outputs(q.model, data)) >= SQNR_FLOOR_DB


def _gelu_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.3, n) for n in ("w1", "w2")]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("sqrt2", 2 ** 0.5), ("one", 1.0), ("half", 0.5))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Div", ["h", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["e1"], name="add1"),
        helper.make_node("Mul", ["h", "e1"], ["g"], name="gelu_mul"),
        helper.make_node("Mul", ["g", "half"], ["g2"], name="half_mul"),
        helper.make_node("MatMul", ["g2", "w2"], ["y"], name="mm2"),
    ]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_gelu_chain_muls_stay_float() -> None:
    model = _model(_gelu_mlp())
    data = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    q = _quantize(model, data)
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["gelu_mul"].action == "float" and "GELU" in decisions["gelu_mul"].reason
    assert decisions["half_mul"].action == "float"
    assert decisions["mm1"].action == "quantized"


def test_a_reshaped_conv_bias_is_written_so_openvino_loads_it(tmp_path) -> None:
    ov = pytest.importorskip("openvino")
    model = _model(mobilenet_v3_block(blocks=1))
    data = images(16)
    q = _quantize(model, data)
    # the SE biases were Add(conv, Reshape(bias)): folded into the Conv, no Add of a dequantized bias remains
    # (the HardSwish gates' integer Adds read a dequantized scalar constant, not a bias)
    adds = [n for n in q.model.ir.graph if n.op_type == "Add"]
    gate_adds = [n for n in adds if any(
        v.producer() is not None and (c := v.producer().inputs[0].const_value) is not None and c.size == 1
        for v in n.inputs)]
    assert len(adds) - len(gate_adds) == 1 and len(gate_adds) == 2  # the residual; the two HardSwish gates
    path = q.save(tmp_path / "mobile.onnx")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU")
    out = compiled([data[:2]])[0]
    assert sqnr_db(_outputs(model, data[:2]), out) >= SQNR_FLOOR_DB
