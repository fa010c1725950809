"""Each prepare pass on its own, three ways on a tiny model: structure (which ops), numerics
(ONNX Runtime against the original model, seeded inputs, stated tolerance) and validity
(the ONNX checker). Plus the pass contract: in place, ``modified`` only when something changed.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tinymodels as tm
from quantscope.graph.passes import FoldBatchNormPass, FoldChannelAffinePass, MatMulAddToGemmPass

ATOL = RTOL = 1e-5  # float32 refolding: a few ulps


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _conv_affine(scale_shape: tuple[int, ...] = (1, 4, 1, 1), seed: int = 0) -> onnx.ModelProto:
    """Conv (no bias) → Mul(scale) → Add(shift) → Relu, tf2onnx's BatchNorm."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["scale", "c"], ["m"], name="bn_mul"),  # constant first: both sides work
        helper.make_node("Add", ["m", "shift"], ["a"], name="bn_add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    inits = [
        _init("w", rng.standard_normal((4, 3, 3, 3)) * 0.3),
        _init("scale", rng.uniform(0.5, 1.5, scale_shape)),
        _init("shift", rng.standard_normal((4, 1, 1)) * 0.2),
    ]
    return tm._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 6, 6])],
        inits,
    )


def _matmul_bias(seed: int = 0) -> onnx.ModelProto:
    """MatMul → Add(bias) as the graph output, the shape of a dense layer's export."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "b"], ["y"], name="fc_bias"),
    ]
    inits = [_init("w", rng.standard_normal((8, 5)) * 0.3), _init("b", rng.standard_normal((1, 5)) * 0.1)]
    return tm._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )


def _outputs(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _apply(pass_: ir.passes.PassBase, proto: onnx.ModelProto) -> tuple[ir.passes.PassResult, onnx.ModelProto]:
    model = ir.from_proto(proto)
    result = pass_(model)
    assert result.model is model  # in place, as declared
    out = ir.to_proto(result.model)
    onnx.checker.check_model(out, full_check=True)
    return result, out


CASES = [
    pytest.param(
        FoldBatchNormPass, lambda: tm.conv_bn_relu(channels=4, size=8), (2, 3, 8, 8), "BatchNormalization", id="batchnorm"
    ),
    pytest.param(FoldChannelAffinePass, _conv_affine, (2, 3, 6, 6), "Mul", id="channel-affine"),
    pytest.param(MatMulAddToGemmPass, _matmul_bias, (3, 8), "MatMul", id="matmul-add"),
]


@pytest.mark.parametrize(("pass_cls", "build", "x_shape", "gone"), CASES)
def test_pass_folds_and_keeps_numbers(pass_cls, build, x_shape, gone) -> None:
    proto = build()
    pass_ = pass_cls()
    result, out = _apply(pass_, proto)
    assert result.modified and pass_.notes
    ops = [n.op_type for n in out.graph.node]
    assert gone not in ops, ops
    assert [o.name for o in out.graph.output] == [o.name for o in proto.graph.output]
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    for got, want in zip(_outputs(out, {"x": x}), _outputs(proto, {"x": x}), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_structure_of_each_fold() -> None:
    _, bn = _apply(FoldBatchNormPass(), tm.conv_bn_relu(channels=4, size=8))
    assert [n.op_type for n in bn.graph.node][:2] == ["Conv", "Relu"]
    _, affine = _apply(FoldChannelAffinePass(), _conv_affine())
    assert [n.op_type for n in affine.graph.node] == ["Conv", "Relu"]
    assert len(affine.graph.node[0].input) == 3  # the Conv gained a bias
    _, gemm = _apply(MatMulAddToGemmPass(), _matmul_bias())
    assert [(n.op_type, n.name) for n in gemm.graph.node] == [("Gemm", "fc")]  # keeps the MatMul's name


def test_a_folded_conv_output_takes_the_name_of_what_it_now_computes() -> None:
    """Per-layer comparisons match tensors by name: the folded Conv computes what the BatchNorm (or
    the Mul/Add) computed, so its output carries that name; the pre-fold name is gone."""
    proto = tm.conv_bn_relu(channels=4, size=8)
    bn_out = next(n.output[0] for n in proto.graph.node if n.op_type == "BatchNormalization")
    conv_out = next(n.output[0] for n in proto.graph.node if n.op_type == "Conv")
    _, out = _apply(FoldBatchNormPass(), proto)
    produced = {o for n in out.graph.node for o in n.output}
    assert next(n for n in out.graph.node if n.op_type == "Conv").output[0] == bn_out and conv_out not in produced
    _, affine = _apply(FoldChannelAffinePass(), _conv_affine())
    assert affine.graph.node[0].output[0] == "a"  # the Add's output: scale and shift folded


@pytest.mark.parametrize(("pass_cls", "build"), [
    (FoldBatchNormPass, tm.mlp),
    (FoldChannelAffinePass, lambda: _conv_affine(scale_shape=(1, 1, 1, 6))),  # varies along the width
    (MatMulAddToGemmPass, lambda: tm.conv_bn_relu(channels=4, size=8)),
])
def test_nothing_to_do_is_not_modified(pass_cls, build) -> None:
    proto = build()
    pass_ = pass_cls()
    result, out = _apply(pass_, proto)
    assert not result.modified and pass_.notes == []
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in proto.graph.node]


def test_fold_keeps_a_graph_output_in_place() -> None:
    """A Conv whose output is also a graph output cannot absorb the Mul after it."""
    proto = _conv_affine()
    proto.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 4, 6, 6]))
    result, out = _apply(FoldChannelAffinePass(), proto)
    assert not result.modified
    assert "Mul" in [n.op_type for n in out.graph.node]
