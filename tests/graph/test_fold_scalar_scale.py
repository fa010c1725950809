"""FoldScalarScalePass three ways on tiny models: structure (the Mul gone, the layer's weights and
the gate's slope changed), numerics (ONNX Runtime against the original, seeded inputs) and validity
(the ONNX checker); plus what must not move."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tinymodels as tm
from quantscope.graph.passes import FoldScalarScalePass

ATOL = RTOL = 1e-5


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _net(activation: str, *, scale=(1.7,), layer: str = "Conv", extra_use: bool = False) -> onnx.ModelProto:
    """layer → activation → Mul(scale) → Add(0.25) → y (the shape of PP-LCNetV3's affine block)."""
    rng = np.random.default_rng(0)
    conv = layer == "Conv"
    x_shape = ["batch", 4, 5, 5] if conv else ["batch", 4]
    y_shape = ["batch", 6, 5, 5] if conv else ["batch", 6]
    if conv:
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="layer", pads=[1, 1, 1, 1])]
        inits = [_init("w", rng.standard_normal((6, 4, 3, 3)) * 0.5), _init("b", rng.standard_normal(6))]
    else:
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["c"], name="layer", transB=1, alpha=0.5)]
        inits = [_init("w", rng.standard_normal((6, 4)) * 2.0), _init("b", rng.standard_normal(6))]
    if activation == "hardswish":
        nodes += [helper.make_node("HardSigmoid", ["c"], ["g"], name="gate", alpha=1 / 6, beta=0.5),
                  helper.make_node("Mul", ["c", "g"], ["h"], name="swish")]
    elif activation == "leakyrelu":
        nodes += [helper.make_node("LeakyRelu", ["c"], ["h"], name="act", alpha=0.1)]
    else:
        nodes += [helper.make_node(activation, ["c"], ["h"], name="act")]
    nodes += [helper.make_node("Mul", ["h", "s"], ["m"], name="scale"),
              helper.make_node("Add", ["m", "t"], ["y"], name="shift")]
    inits += [_init("s", np.array(scale)), _init("t", np.array([0.25]))]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)]
    if extra_use:  # the activation's output is read twice: the Mul cannot move
        nodes.append(helper.make_node("Relu", ["h"], ["r"], name="other"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, y_shape))
    return tm._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], outputs, inits)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _fold(proto: onnx.ModelProto) -> tuple[FoldScalarScalePass, ir.passes.PassResult, onnx.ModelProto]:
    model = ir.from_proto(proto)
    pass_ = FoldScalarScalePass()
    result = pass_(model)
    assert result.model is model
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return pass_, result, out


@pytest.mark.parametrize(("activation", "layer"), [
    ("hardswish", "Conv"), ("Relu", "Conv"), ("leakyrelu", "Conv"), ("hardswish", "Gemm"), ("Relu", "Gemm"),
])
def test_positive_scale_moves_into_the_layer_exactly(activation: str, layer: str) -> None:
    proto = _net(activation, layer=layer)
    pass_, result, out = _fold(proto)
    assert result.modified and len(pass_.notes) == 1
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Mul") == (1 if activation == "hardswish" else 0), ops  # only the HardSwish's own Mul
    if activation == "hardswish":
        gate = next(n for n in out.graph.node if n.op_type == "HardSigmoid")
        alpha = next(helper.get_attribute_value(a) for a in gate.attribute if a.name == "alpha")
        assert alpha == pytest.approx(1 / 6 / 1.7, rel=1e-6)
    x = np.random.default_rng(7).standard_normal((3, 4, 5, 5) if layer == "Conv" else (3, 4)).astype(np.float32) * 2
    np.testing.assert_allclose(_run(out, x)[0], _run(proto, x)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("build", [
    pytest.param(lambda: _net("hardswish", scale=(-1.5,)), id="negative-scale"),
    pytest.param(lambda: _net("Relu", scale=(0.0,)), id="zero-scale"),
    pytest.param(lambda: _net("hardswish", scale=np.linspace(1.0, 2.0, 6).reshape(6, 1, 1)), id="not-a-scalar"),
    pytest.param(lambda: _net("Sigmoid"), id="not-homogeneous"),
    pytest.param(lambda: _net("hardswish", extra_use=True), id="activation-read-twice"),
])
def test_nothing_moves_when_it_would_not_be_exact(build) -> None:
    proto = build()
    pass_, result, out = _fold(proto)
    assert not result.modified and pass_.notes == []
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in proto.graph.node]


@pytest.mark.parametrize("activation", ["Relu", "hardswish"])
def test_names_keep_their_float_meaning_after_the_move(activation: str) -> None:
    """The activation's output now computes the Mul's: it takes the Mul's name; the layer's output
    (scaled) is renamed, and the activation's own old name no longer exists."""
    _, _, out = _fold(_net(activation))
    produced = {o for n in out.graph.node for o in n.output}
    assert "m" in produced and "h" not in produced and "c" not in produced
    shift = next(n for n in out.graph.node if n.name == "shift")
    assert shift.input[0] == "m"
