"""StaticReshapeShapePass on tiny models: structure (the shape subgraph goes), numerics (ONNX Runtime
against the original model, seeded inputs) and validity (the ONNX checker); the shapes it must leave
computed."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_ir.passes.common import RemoveUnusedNodesPass

import tinymodels as tm
from quantscope.graph.passes import StaticReshapeShapePass
from quantscope.graph.passes.static_reshape import static_target
from quantscope.model_io import infer_shapes


def _i64(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _computed_reshape(tail: list[int], keep_batch: bool = True, y_dims: list | None = None) -> onnx.ModelProto:
    """``x [batch, 4, 3, 5] → Relu → Reshape(shape computed from Shape(x))``: the target is the
    batch read from the input (or -1 when ``keep_batch`` is false) followed by ``tail``."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"])]
    if keep_batch:
        nodes.append(helper.make_node("Slice", ["s", "zero", "one"], ["head"]))
    else:
        nodes.append(helper.make_node("Identity", ["minus_one"], ["head"]))
    nodes += [helper.make_node("Concat", ["head", "tail"], ["target"], axis=0),
              helper.make_node("Reshape", ["r", "target"], ["y"], name="flatten")]
    inits = [_i64("zero", [0]), _i64("one", [1]), _i64("minus_one", [-1]), _i64("tail", tail)]
    return tm._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_dims or ["batch", *tail])],
        inits,
    )


def _apply(proto: onnx.ModelProto) -> tuple[bool, StaticReshapeShapePass, onnx.ModelProto]:
    model = ir.from_proto(infer_shapes(proto))
    pass_ = StaticReshapeShapePass()
    modified = pass_(model).modified
    RemoveUnusedNodesPass()(model)
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return modified, pass_, out


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _target(proto: onnx.ModelProto) -> list[int]:
    reshape = next(n for n in proto.graph.node if n.op_type == "Reshape")
    init = next(i for i in proto.graph.initializer if i.name == reshape.input[1])
    return numpy_helper.to_array(init).tolist()


@pytest.mark.parametrize(("tail", "keep_batch", "want"), [
    ([60], True, [0, 60]),  # tf2onnx's flatten: the batch copied
    ([12, 5], True, [0, 12, 5]),
    ([15], False, [-1, 15]),  # the first dim is a new unknown: -1
])
def test_computed_target_becomes_constant(tail, keep_batch, want) -> None:
    proto = _computed_reshape(tail, keep_batch, None if keep_batch else ["n", *tail])
    modified, pass_, out = _apply(proto)
    assert modified and len(pass_.notes) == 1
    assert [n.op_type for n in out.graph.node] == ["Relu", "Reshape"]  # Shape, Slice, Concat are gone
    assert _target(out) == want
    x = np.random.default_rng(5).standard_normal((3, 4, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(_run(out, x), _run(proto, x))


def test_unknown_result_stays_computed() -> None:
    proto = _computed_reshape([60])
    model = ir.from_proto(proto)  # no shape inference: the Reshape's output shape is not known
    model.graph.node(model.graph.num_nodes() - 1).outputs[0].shape = None
    assert not StaticReshapeShapePass()(model).modified


def test_shape_fed_by_the_caller_stays_an_input() -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    proto = tm._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3, 5]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 60])],  # declared, but fed at run time
        [],
    )
    modified, _, out = _apply(proto)
    assert not modified and list(out.graph.node[0].input) == ["x", "shape"]


def test_static_target_rules() -> None:
    n, m = ir.SymbolicDim("n"), ir.SymbolicDim("m")
    assert static_target(ir.Shape([n, 4, 5]), ir.Shape([n, 20])) == [0, 20]
    assert static_target(ir.Shape([n, 4, 5]), ir.Shape([4, n, 5])) == [4, -1, 5]  # n moved: not a copy
    assert static_target(ir.Shape([n, 4, 5]), ir.Shape([m, 2, m])) is None  # two unknown dims
    assert static_target(ir.Shape([None, 4]), ir.Shape([None, 4])) == [-1, 4]  # nameless dims are never "the same"
    assert static_target(ir.Shape([n, 0]), ir.Shape([n, 0])) is None  # a literal 0 would copy
    assert static_target(None, ir.Shape([n])) is None
