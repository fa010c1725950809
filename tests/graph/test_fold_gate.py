"""FoldGatePass three ways on tiny models: structure (HardSigmoid gone, Clip(0, 1) after the layer),
numerics (ONNX Runtime against the original, seeded inputs, float32 refolding tolerance) and
validity (the ONNX checker); plus what must not be folded."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tinymodels as tm
from quantscope.graph.passes import FoldGatePass
from quantscope.graph.prepare import prepare_passes

ATOL = RTOL = 1e-5
GATE = {"alpha": 0.2, "beta": 0.5}


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _conv_gate(*, bias: bool = True, alpha: float = 0.2, beta: float = 0.5, extra_use: bool = False) -> onnx.ModelProto:
    """Squeeze-excitation: x · HardSigmoid(Conv1x1(GlobalAveragePool(x)))."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="pool"),
        helper.make_node("Conv", ["pooled", "w", *(["b"] if bias else [])], ["c"], name="excite"),
        helper.make_node("HardSigmoid", ["c"], ["g"], name="gate", alpha=alpha, beta=beta),
        helper.make_node("Mul", ["x", "g"], ["y"], name="scale"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 5, 5])]
    if extra_use:  # the Conv's output is read twice: folding would change the other reader
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="other"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 8, 1, 1]))
    inits = [_init("w", rng.standard_normal((8, 8, 1, 1)) * 3.0), *([_init("b", rng.standard_normal(8))] if bias else [])]
    return tm._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 5, 5])], outputs, inits)


def _gemm_gate(*, trans_b: int = 1, with_c: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 4) if trans_b else (4, 6)) * 8.0
    nodes = [
        helper.make_node("Gemm", ["x", "w", *(["c"] if with_c else [])], ["h"], name="fc", transB=trans_b,
                         alpha=0.5, beta=2.0),
        helper.make_node("HardSigmoid", ["h"], ["g"], name="gate", **GATE),
        helper.make_node("Identity", ["g"], ["y"], name="out"),  # a graph output keeps its producer
    ]
    inits = [_init("w", w), *([_init("c", rng.standard_normal(6))] if with_c else [])]
    return tm._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], inits)


def _matmul_bias_gate() -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"),
        helper.make_node("Add", ["b", "mm"], ["h"], name="fc_bias"),  # bias first: both sides work
        helper.make_node("HardSigmoid", ["h"], ["g"], name="gate", alpha=1 / 6, beta=0.5),
        helper.make_node("Identity", ["g"], ["y"], name="out"),
    ]
    inits = [_init("w", rng.standard_normal((4, 6)) * 3.0), _init("b", rng.standard_normal(6))]
    return tm._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 6])], inits)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def _fold(proto: onnx.ModelProto) -> tuple[FoldGatePass, ir.passes.PassResult, onnx.ModelProto]:
    model = ir.from_proto(proto)
    pass_ = FoldGatePass()
    result = pass_(model)
    assert result.model is model  # in place, as declared
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return pass_, result, out


@pytest.mark.parametrize(("build", "x_shape", "layer"), [
    pytest.param(_conv_gate, (2, 8, 5, 5), "Conv", id="conv"),
    pytest.param(lambda: _conv_gate(bias=False, alpha=1 / 6), (2, 8, 5, 5), "Conv", id="conv-no-bias"),
    pytest.param(_gemm_gate, (5, 4), "Gemm", id="gemm-transB-alpha-beta"),
    pytest.param(lambda: _gemm_gate(trans_b=0, with_c=False), (5, 4), "Gemm", id="gemm-no-C"),
    pytest.param(_matmul_bias_gate, (2, 3, 4), "MatMul", id="matmul-bias"),
])
def test_gate_folds_into_its_layer_and_keeps_numbers(build, x_shape, layer) -> None:
    proto = build()
    pass_, result, out = _fold(proto)
    assert result.modified and len(pass_.notes) == 1
    ops = [n.op_type for n in out.graph.node]
    assert "HardSigmoid" not in ops and ops.count("Clip") == 1, ops
    clip = next(n for n in out.graph.node if n.op_type == "Clip")
    bounds = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    assert (float(bounds[clip.input[1]]), float(bounds[clip.input[2]])) == (0.0, 1.0)
    producer = next(n for n in out.graph.node if clip.input[0] in n.output)
    assert producer.op_type == (layer if layer != "MatMul" else "Add")
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    want = _run(proto, x)
    if layer != "Conv":  # the output is the gate: both its linear part and its clipped ends are reached
        assert np.any((want[0] > 0) & (want[0] < 1)) and np.any(want[0] == 0) and np.any(want[0] == 1)
    for got, expected in zip(_run(out, x), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_gemm_attributes_are_reset_after_folding() -> None:
    _, _, out = _fold(_gemm_gate())
    gemm = next(n for n in out.graph.node if n.op_type == "Gemm")
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    assert attrs["alpha"] == 1.0 and attrs["beta"] == 1.0 and attrs["transB"] == 1


@pytest.mark.parametrize("build", [
    pytest.param(lambda: _conv_gate(extra_use=True), id="conv-output-read-twice"),
    pytest.param(lambda: _hardswish_gate(), id="hardswish-x-read-twice"),
    pytest.param(lambda: _gate_as_graph_output(), id="conv-output-is-graph-output"),
])
def test_nothing_folds_when_the_layer_output_is_shared(build) -> None:
    proto = build()
    pass_, result, out = _fold(proto)
    assert not result.modified and pass_.notes == []
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in proto.graph.node]


def _hardswish_gate() -> onnx.ModelProto:
    proto = _conv_gate()
    graph = proto.graph
    # x·HardSigmoid(x) on the Conv's output: the gate's input is read by the Mul too
    graph.node[3].input[:] = ["c", "g"]
    graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 1, 1]))
    return proto


def _gate_as_graph_output() -> onnx.ModelProto:
    proto = _conv_gate()
    proto.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 8, 1, 1]))
    return proto


def test_registered_only_for_integer_chains() -> None:
    assert any(isinstance(p, FoldGatePass) for p in prepare_passes(integer_chains=True))
    assert not any(isinstance(p, FoldGatePass) for p in prepare_passes())


def test_names_keep_their_float_meaning_after_the_fold() -> None:
    """The Clip computes what the gate computed and takes its name; the layer's output (now the gate's
    affine of it) is renamed, so no comparison by name mistakes it for the float Conv output."""
    _, _, out = _fold(_conv_gate())
    produced = {o for n in out.graph.node for o in n.output}
    clip = next(n for n in out.graph.node if n.op_type == "Clip")
    assert clip.output[0] == "g" and "c" not in produced
