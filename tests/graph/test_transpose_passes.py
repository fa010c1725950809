"""The layout Transpose passes, three ways on tiny models: structure (which ops remain), numerics
(ONNX Runtime against the original model, seeded inputs, stated tolerance) and validity (the ONNX
checker); plus the cases each must leave alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_ir.passes.common import RemoveUnusedNodesPass

import quantscope as qs
import tinymodels as tm
from quantscope.graph.passes import CancelTransposesPass, FoldTransposeFlattenPass
from quantscope.graph.passes.fold_transpose_flatten import permute_rows
from quantscope.graph.prepare import prepare
from quantscope.model_io import Model, infer_shapes
from quantscope.numerics.metrics import sqnr_db
from quantscope.runtime import make_session, run

RTOL = ATOL = 1e-5  # float32: the dense layer sums its features in another order
X_SHAPE = (2, 4, 3, 5)  # [batch, C, H, W]
FEATURES = 4 * 3 * 5


def _f32(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _i64(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _io(x_shape: tuple, y_shape: tuple) -> tuple[list, list]:
    return (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *y_shape[1:]])],
    )


def _dense_after_transpose(
    flatten: str = "computed", perm: tuple[int, ...] = (0, 2, 3, 1), dense: str = "matmul", seed: int = 0
) -> onnx.ModelProto:
    """``Relu → Transpose(perm) → flatten → dense``; ``flatten`` is tf2onnx's computed Reshape
    (``Shape → Gather → Slice → Concat``), a constant ``[0, -1]`` Reshape or ``Flatten``."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["t"], name="nhwc", perm=list(perm))]
    inits = []
    if flatten == "computed":
        nodes += [
            helper.make_node("Shape", ["r"], ["s"]),
            helper.make_node("Gather", ["s", "perm"], ["s_t"]),
            helper.make_node("Slice", ["s_t", "zero", "one"], ["batch"]),
            helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
            helper.make_node("Reshape", ["t", "target"], ["f"], name="flatten"),
        ]
        inits += [_i64("perm", list(perm)), _i64("zero", [0]), _i64("one", [1]), _i64("rest", [FEATURES])]
    elif flatten == "constant":
        nodes.append(helper.make_node("Reshape", ["t", "target"], ["f"], name="flatten"))
        inits.append(_i64("target", [0, -1]))
    else:
        nodes.append(helper.make_node("Flatten", ["t"], ["f"], name="flatten", axis=1))
    w = rng.standard_normal((FEATURES, 7)).astype(np.float32) * 0.2
    if dense == "matmul":
        nodes += [helper.make_node("MatMul", ["f", "w"], ["mm"], name="fc"),
                  helper.make_node("Add", ["mm", "b"], ["y"], name="fc_bias")]
        inits += [_f32("w", w), _f32("b", rng.standard_normal(7))]
    else:  # Gemm with the weight stored [N, K]
        nodes.append(helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1))
        inits += [_f32("w", w.T), _f32("b", rng.standard_normal(7))]
    return tm._model(nodes, *_io(X_SHAPE, (2, 7)), inits)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def _apply(pass_: ir.passes.PassBase, proto: onnx.ModelProto) -> tuple[bool, onnx.ModelProto]:
    model = ir.from_proto(infer_shapes(proto))
    result = pass_(model)
    assert result.model is model  # in place, as declared
    RemoveUnusedNodesPass()(model)
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return result.modified, out


def _same_numbers(before: onnx.ModelProto, after: onnx.ModelProto, x_shape: tuple = X_SHAPE) -> None:
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    for got, want in zip(_run(after, x), _run(before, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _ops(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


@pytest.mark.parametrize("flatten", ["computed", "constant", "flatten"])
@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2)])
@pytest.mark.parametrize("dense", ["matmul", "gemm"])
def test_transpose_before_flatten_goes_into_the_weight(flatten, perm, dense) -> None:
    proto = _dense_after_transpose(flatten, perm, dense)
    pass_ = FoldTransposeFlattenPass()
    modified, out = _apply(pass_, proto)
    assert modified and len(pass_.notes) == 1
    assert _ops(out) == ["Relu", "Flatten", *(["MatMul", "Add"] if dense == "matmul" else ["Gemm"])]
    flat = next(n for n in out.graph.node if n.op_type == "Flatten")
    assert flat.name == "flatten" and flat.input[0] == "r"  # keeps its name, reads the untransposed tensor
    assert [o.name for o in out.graph.output] == ["y"]
    _same_numbers(proto, out)


def test_rows_are_permuted_like_the_flattened_features() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5, 6))
    w = rng.standard_normal((3 * 4 * 5 * 6, 2))
    perm = (0, 3, 1, 4, 2)
    want = x.transpose(perm).reshape(2, -1) @ w
    np.testing.assert_allclose(x.reshape(2, -1) @ permute_rows(w, perm, [3, 4, 5, 6]), want, rtol=1e-12)


def _with_extra_user(proto: onnx.ModelProto) -> onnx.ModelProto:
    proto.graph.output.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 3, 5, 4]))
    return proto


def _weight_as_input(proto: onnx.ModelProto) -> onnx.ModelProto:
    w = next(i for i in proto.graph.initializer if i.name == "w")
    proto.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.dims)))
    return proto


@pytest.mark.parametrize("build", [
    pytest.param(lambda: _dense_after_transpose("flatten", perm=(1, 0, 2, 3)), id="batch-axis-moves"),
    pytest.param(lambda: _with_extra_user(_dense_after_transpose("flatten")), id="transposed-tensor-is-an-output"),
    pytest.param(lambda: _weight_as_input(_dense_after_transpose("flatten")), id="weight-overridable"),
])
def test_fold_leaves_what_it_cannot_prove(build) -> None:
    proto = build()
    pass_ = FoldTransposeFlattenPass()
    modified, out = _apply(pass_, proto)
    assert not modified and pass_.notes == []
    assert "Transpose" in _ops(out)


def test_reshape_that_does_not_flatten_all_but_the_batch_stays() -> None:
    """``[batch, 3, 5, 4] → [batch * 3, 20]`` keeps the element count but mixes the batch in."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "target"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    inits = [_i64("target", [-1, 20]), _f32("w", rng.standard_normal((20, 7)))]
    proto = tm._model(nodes, *_io(X_SHAPE, (6, 7)), inits)
    modified, out = _apply(FoldTransposeFlattenPass(), proto)
    assert not modified and _ops(out) == ["Transpose", "Reshape", "MatMul"]


def _nhwc_chain(ops: list[onnx.NodeProto], inits: list, back: tuple[int, ...] = (0, 3, 1, 2)) -> onnx.ModelProto:
    """``Transpose(NCHW → NHWC) → ops (reading "t", writing "z") → Transpose(back)`` as the output."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]), *ops,
             helper.make_node("Transpose", ["z"], ["y"], name="to_nchw", perm=list(back))]
    y_shape = tuple(np.empty((1, 3, 5, 4)).transpose(back).shape)
    return tm._model(nodes, *_io(X_SHAPE, y_shape), inits)


def _pointwise_chain(back: tuple[int, ...] = (0, 3, 1, 2)) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    ops = [
        helper.make_node("Add", ["t", "bias"], ["a"], name="bias"),  # per-channel in NHWC: shape [C]
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Mul", ["half", "r"], ["m"]),  # scalar, constant first
        helper.make_node("Sub", ["rows", "m"], ["s"]),  # [H, 1, 1] broadcast from the left, constant first
        helper.make_node("Clip", ["s", "lo", "hi"], ["z"]),
    ]
    inits = [_f32("bias", rng.standard_normal(4)), _f32("half", np.array(0.5)),
             _f32("rows", rng.standard_normal((3, 1, 1))), _f32("lo", np.array(-1.0)), _f32("hi", np.array(1.0))]
    return _nhwc_chain(ops, inits, back)


def test_inverse_transposes_cancel_across_pointwise_ops() -> None:
    proto = _pointwise_chain()
    pass_ = CancelTransposesPass()
    modified, out = _apply(pass_, proto)
    assert modified and len(pass_.notes) == 1
    assert _ops(out) == ["Add", "Relu", "Mul", "Sub", "Clip"]
    assert out.graph.node[0].input[0] == "x" and [o.name for o in out.graph.output] == ["y"]
    _same_numbers(proto, out)


def test_transposes_that_do_not_cancel_become_one() -> None:
    proto = _pointwise_chain(back=(0, 2, 1, 3))  # NHWC → NWHC: one Transpose NCHW → NWHC is left
    modified, out = _apply(CancelTransposesPass(), proto)
    assert modified and _ops(out) == ["Add", "Relu", "Mul", "Sub", "Clip", "Transpose"]
    assert list(out.graph.node[-1].attribute[0].ints) == [0, 3, 2, 1]
    _same_numbers(proto, out)


def test_per_axis_quantize_dequantize_moves_its_axis() -> None:
    rng = np.random.default_rng(4)
    ops = [helper.make_node("QuantizeLinear", ["t", "scale", "zp"], ["q"], axis=3),
           helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["z"], axis=-1)]
    inits = [_f32("scale", rng.uniform(0.01, 0.05, 4)), numpy_helper.from_array(np.full(4, 3, np.uint8), "zp")]
    proto = _nhwc_chain(ops, inits)
    modified, out = _apply(CancelTransposesPass(), proto)
    assert modified and _ops(out) == ["QuantizeLinear", "DequantizeLinear"]
    assert [a.i for n in out.graph.node for a in n.attribute if a.name == "axis"] == [1, 1]
    _same_numbers(proto, out)


def test_consecutive_transposes_compose() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t1"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),  # cancels: gone
             helper.make_node("Transpose", ["t2"], ["t3"], perm=[0, 1, 3, 2]),
             helper.make_node("Transpose", ["t3"], ["y"], perm=[3, 0, 1, 2])]  # composes with the one before
    proto = tm._model(nodes, _io(X_SHAPE, X_SHAPE)[0], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "batch", 4, 5])], [])
    modified, out = _apply(CancelTransposesPass(), proto)
    assert modified and _ops(out) == ["Relu", "Transpose"]
    _same_numbers(proto, out)


def _branching_chain() -> onnx.ModelProto:
    proto = _pointwise_chain()
    proto.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 3, 5, 4]))
    return proto


def _chain_with(op: onnx.NodeProto, inits: list) -> onnx.ModelProto:
    return _nhwc_chain([op], inits)


def _input_to_output() -> onnx.ModelProto:
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t"], ["y"], perm=[0, 3, 1, 2])]
    return tm._model(nodes, *_io(X_SHAPE, X_SHAPE), [])


@pytest.mark.parametrize("build", [
    pytest.param(_branching_chain, id="middle-value-read-elsewhere"),
    pytest.param(lambda: _chain_with(helper.make_node("Softmax", ["t"], ["z"], axis=-1), []), id="not-pointwise"),
    pytest.param(lambda: _chain_with(helper.make_node("Mul", ["t", "t"], ["z"]), []), id="two-activations"),
    pytest.param(_input_to_output, id="output-would-be-the-input"),
])
def test_cancel_leaves_what_it_cannot_move(build) -> None:
    proto = build()
    pass_ = CancelTransposesPass()
    modified, out = _apply(pass_, proto)
    assert _ops(out).count("Transpose") == 2 and not modified and pass_.notes == []


def test_prepare_removes_the_layout_transposes() -> None:
    proto = _dense_after_transpose("computed")
    prepared, notes = prepare(Model.from_proto(infer_shapes(proto)), bias_into_gemm=True)
    ops = [n.op_type for n in prepared.ir.graph]
    assert ops == ["Relu", "Flatten", "Gemm"], ops  # the shape subgraph went with the Transpose
    assert any("Transpose" in note for note in notes)
    _same_numbers(proto, ir.to_proto(prepared.ir))


def _tf2onnx_cnn(seed: int = 0) -> onnx.ModelProto:
    """``Conv → Relu → MaxPool → Transpose(NHWC) → Reshape(computed [batch, -1]) → MatMul → Add``,
    the shape tf2onnx gives a Keras ``Conv2D → Flatten → Dense``."""
    rng = np.random.default_rng(seed)
    proto = _dense_after_transpose("computed", seed=seed)
    head = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
    proto.graph.node[0].input[0] = "p"  # the Relu now reads the pooled conv
    for n in reversed(head):
        proto.graph.node.insert(0, n)
    proto.graph.initializer.extend([_f32("cw", rng.standard_normal((4, 2, 3, 3)) * 0.3), _f32("cb", rng.standard_normal(4))])
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 6
    proto.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 10
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2
    onnx.checker.check_model(proto, full_check=True)
    return proto


def test_static_int8_of_a_tf2onnx_flatten_has_no_layout_ops() -> None:
    proto = _tf2onnx_cnn()
    rng = np.random.default_rng(11)
    calib = qs.Dataset.from_arrays({"x": rng.standard_normal((32, 2, 6, 10)).astype(np.float32)})
    q = qs.quantize(Model.from_proto(infer_shapes(proto)), qs.StaticInt8(measure=False), calib)
    ops = [n.op_type for n in q.model.ir.graph]
    assert not {"Transpose", "Shape", "Gather", "Concat"} & set(ops), ops
    assert {"Flatten", "Conv", "Gemm"} <= set(ops)
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    x = rng.standard_normal((8, 2, 6, 10)).astype(np.float32)
    want = _run(proto, x)[0]
    got = run(make_session(q.model), {"x": x})[0]
    assert sqnr_db(want, got) > 25  # int8 of a three-layer toy: well above noise


def test_pytorch_channels_last_block_loses_every_transpose(tmp_path) -> None:
    """PyTorch's export of ``permute → affine → HardSwish → permute → Conv → permute → flatten → Linear``."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
            self.bias, self.fc = torch.nn.Parameter(torch.randn(8)), torch.nn.Linear(8 * 6 * 6, 5)

        def forward(self, x):
            y = torch.nn.functional.hardswish(self.c1(x).permute(0, 2, 3, 1) * 0.5 + self.bias).permute(0, 3, 1, 2)
            return self.fc(torch.relu(self.c2(y)).permute(0, 2, 3, 1).flatten(1))

    path = tmp_path / "block.onnx"
    torch.onnx.export(Block().eval(), (torch.randn(2, 3, 6, 6),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    proto = onnx.load(path)
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 3
    prepared, _ = prepare(Model.from_proto(infer_shapes(proto)))
    out = ir.to_proto(prepared.ir)
    onnx.checker.check_model(out, full_check=True)
    assert _ops(out) == ["Conv", "HardSwish", "Conv", "Relu", "Flatten", "Gemm"]  # the affine folded into c1
    _same_numbers(proto, out, x_shape=(3, 3, 6, 6))
