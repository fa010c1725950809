"""Cross-layer equalization: equal weight ranges per channel pair, the same float output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import quantscope as qs
from quantscope.algorithms.equalization import equalized, pairs
from quantscope.graph.prepare import prepare
from quantscope.graph.queries import const_array
from quantscope.runtime import make_session, run


def _chain(depthwise: bool) -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Conv (regular or depthwise) -> Relu, with very uneven filter ranges."""
    rng = np.random.default_rng(0)
    c = 8
    w1 = rng.normal(size=(c, 3, 3, 3)) * np.geomspace(0.01, 10.0, c)[:, None, None, None]
    w2 = rng.normal(size=(c, 1 if depthwise else c, 3, 3)) * (np.geomspace(5.0, 0.05, c)[:, None, None, None]
                                                              if depthwise else 0.3)
    inits = [onnx.numpy_helper.from_array(a.astype(np.float32), n) for n, a in
             (("w1", w1), ("b1", rng.normal(size=c) * 0.1), ("w2", w2), ("b2", rng.normal(size=c) * 0.1))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1],
                         group=c if depthwise else 1),
        helper.make_node("Relu", ["c2"], ["y"], name="relu2"),
    ]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, c, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("depthwise", [False, True])
def test_equalization_equalizes_ranges_and_keeps_the_output(tmp_path, depthwise: bool) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save(_chain(depthwise), str(path))
    model = qs.load(path)
    prepared, _ = prepare(model)
    assert len(pairs(prepared.ir.graph)) == 1
    before = {n.name: const_array(n.inputs[1]) for n in prepared.ir.graph if n.op_type == "Conv"}
    result = equalized(prepared)
    assert any("cross-layer equalization" in n for n in result.notes)
    after = {n.name: const_array(n.inputs[1]) for n in result.ir.graph if n.op_type == "Conv"}
    r1 = np.abs(after["conv1"]).reshape(8, -1).max(axis=1)
    w2 = after["conv2"] if depthwise else np.swapaxes(after["conv2"], 0, 1)
    r2 = np.abs(w2).reshape(8, -1).max(axis=1)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    spread = np.abs(before["conv1"]).reshape(8, -1).max(axis=1)
    assert spread.max() / spread.min() > 100 > r1.max() / r1.min()
    x = np.random.default_rng(1).normal(size=(4, 3, 16, 16)).astype(np.float32)
    ref = run(make_session(model), {"x": x})[0]
    np.testing.assert_allclose(run(make_session(result), {"x": x})[0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # the caller's model is untouched
    np.testing.assert_array_equal(const_array(next(n for n in model.ir.graph if n.name == "conv1").inputs[1]),
                                  before["conv1"])


def test_equalization_helps_per_tensor_depthwise(tmp_path) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save(_chain(True), str(path))
    model = qs.load(path)
    rng = np.random.default_rng(2)
    calib = qs.Dataset.from_arrays({"x": rng.normal(size=(32, 3, 16, 16)).astype(np.float32)})
    held = rng.normal(size=(32, 3, 16, 16)).astype(np.float32)
    ref = run(make_session(model), {"x": held})[0]
    mse = {}
    for on in (False, True):
        q = qs.quantize(model, qs.StaticInt8(per_channel=False, equalize=on), calib)
        mse[on] = float(np.mean((run(make_session(q.model), {"x": held})[0] - ref) ** 2))
    print(f"per-tensor depthwise chain: output MSE {mse[False]:.3g} -> {mse[True]:.3g} with equalization")
    assert mse[True] < 0.5 * mse[False]
