"""graph.build: unique names, initializers from arrays, nodes, a value taking another's place."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from quantscope.graph.build import (
    NameAllocator,
    constant,
    initializer,
    insert_first,
    node,
    replace_uses,
    take_over,
    take_over_outputs,
)


def _relu_model() -> ir.Model:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 3]))
    relu = ir.Node("", "Relu", [x], name="relu", num_outputs=1)
    y = relu.outputs[0]
    y.name, y.type, y.shape = "y", ir.TensorType(ir.DataType.FLOAT), ir.Shape([2, 3])
    graph = ir.Graph([x], [y], nodes=[relu], opset_imports={"": 17}, name="g")
    return ir.Model(graph, ir_version=8)


def _run(model: ir.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x}), strict=True))


def test_names_are_unique_and_avoid_existing() -> None:
    model = _relu_model()
    names = NameAllocator(model.graph)
    assert "relu" in names and "y" in names
    assert names("y") == "y_1"
    assert names("y") == "y_2"
    assert names("z") == "z"
    names.reserve("w")
    assert names("w") == "w_1"


def test_initializer_keeps_type_shape_and_scalars() -> None:
    model = _relu_model()
    names = NameAllocator(model.graph)
    v = initializer(model.graph, names, "y", np.arange(6, dtype=np.int8).reshape(2, 3))
    assert v.name == "y_1" and v.dtype == ir.DataType.INT8 and v.shape == ir.Shape([2, 3])
    assert model.graph.initializers["y_1"] is v
    s = constant(model.graph, names, "k", 3, np.int32)
    assert s.shape == ir.Shape([]) and s.const_value is not None and int(s.const_value.numpy()) == 3
    packed = initializer(model.graph, names, "q4", np.array([1, -2, 3, -4], dtype=np.int8), dtype=ir.DataType.INT4)
    assert packed.dtype == ir.DataType.INT4


def test_take_over_keeps_output_name_and_numbers() -> None:
    model = _relu_model()
    graph = model.graph
    names = NameAllocator(graph)
    y = graph.outputs[0]
    scale = constant(graph, names, "two", 2.0, np.float32)
    mul = node(names, "Mul", [y, scale], base="y", dtypes=[ir.DataType.FLOAT], shapes=[(2, 3)])
    graph.insert_after(y.producer(), [mul])
    take_over(names, y, mul.outputs[0], suffix="unscaled")
    assert [o.name for o in graph.outputs] == ["y"]
    assert graph.outputs[0] is mul.outputs[0]
    assert mul.inputs[0] is y and y.name == "y_unscaled"
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(model, x)["y"], 2 * np.maximum(x, 0))


def test_take_over_outputs_leaves_consumers() -> None:
    model = _relu_model()
    graph = model.graph
    names = NameAllocator(graph)
    y = graph.outputs[0]
    neg = node(names, "Neg", [y], base="y", dtypes=[ir.DataType.FLOAT], shapes=[(2, 3)])
    graph.outputs.append(neg.outputs[0])
    graph.append(neg)
    ident = node(names, "Identity", [y], base="y", dtypes=[ir.DataType.FLOAT], shapes=[(2, 3)])
    graph.insert_after(y.producer(), [ident])
    take_over_outputs(names, y, ident.outputs[0], suffix="raw")
    assert neg.inputs[0] is y  # consumers still read the old value
    assert graph.outputs[0] is ident.outputs[0] and ident.outputs[0].name == "y"
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    out = _run(model, x)
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))


def test_replace_uses_and_insert_first() -> None:
    model = _relu_model()
    graph = model.graph
    names = NameAllocator(graph)
    x = graph.inputs[0]
    neg = node(names, "Neg", [x], base="x", dtypes=[ir.DataType.FLOAT], shapes=[(2, 3)])
    replace_uses(x, neg.outputs[0], keep=[neg])
    insert_first(graph, [neg])
    assert graph[0] is neg and graph[1].inputs[0] is neg.outputs[0]
    v = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(model, v)["y"], np.maximum(-v, 0))


def test_names_cover_subgraphs() -> None:
    cond = ir.Value(name="c", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([]))
    inner = ir.Node("", "Identity", [cond], name="inner", num_outputs=1)
    inner.outputs[0].name = "inner_out"
    body = ir.Graph([], [inner.outputs[0]], nodes=[inner], name="body")
    outer = ir.Node("", "If", [cond], [ir.AttrGraph("then_branch", body), ir.AttrGraph("else_branch", body)],
                    name="if", num_outputs=1)
    graph = ir.Graph([cond], [outer.outputs[0]], nodes=[outer], opset_imports={"": 17})
    names = NameAllocator(graph)
    assert names("inner_out") == "inner_out_1"
