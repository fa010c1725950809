"""If/Loop/Scan bodies: unique names and labels, and body tensors exposed through their holders."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import subgraph_models as sm
from quantscope.graph.subgraphs import SubgraphNamesPass, expose
from quantscope.runtime import exposing, make_session


def _twin_branches() -> onnx.ModelProto:
    """An If whose two branches reuse the same node and value names (legal: they are siblings)."""
    def branch(scale: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Mul", ["x", "k"], ["t"], name="mul"), helper.make_node("Relu", ["t"], ["out"], name="relu")],
            "b", [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(np.full(2, scale, np.float32), "k")],
        )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="pick", then_branch=branch(2.0), else_branch=branch(-3.0))],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)  # body values get their types, as after qs.load


def test_names_pass_makes_body_names_unique_and_labels_say_where() -> None:
    model = ir.from_proto(_twin_branches())
    assert SubgraphNamesPass()(model).modified
    values = [o.name for n in ir.traversal.RecursiveGraphIterator(model.graph) for o in n.outputs]
    assert len(values) == len(set(values))
    labels = sorted(n.name for n in ir.traversal.RecursiveGraphIterator(model.graph))
    assert labels == ["pick", "pick/else_branch/mul", "pick/else_branch/relu", "pick/then_branch/mul", "pick/then_branch/relu"]
    x = np.array([1.0, -1.0], np.float32)
    for c in (True, False):  # same results after renaming
        feeds = {"x": x, "c": np.array(c)}
        before = make_session(qs.Model(ir=ir.from_proto(_twin_branches()), path=None, fingerprint="")).run(None, feeds)
        after = make_session(qs.Model(ir=model, path=None, fingerprint="")).run(None, feeds)
        np.testing.assert_array_equal(before[0], after[0])
    assert not SubgraphNamesPass()(ir.from_proto(sm.recurrent("LSTM"))).modified  # no bodies: untouched


def test_an_if_branch_tensor_is_empty_when_its_branch_does_not_run() -> None:
    model = ir.from_proto(_twin_branches())
    SubgraphNamesPass()(model)
    then_t = model.graph.node("pick").attributes["then_branch"].as_graph().node(0).outputs[0].name
    exposed, carried = exposing(qs.Model(ir=model, path=None, fingerprint=""), [then_t])
    assert list(carried.values()) == [then_t]
    session = make_session(exposed)
    x = np.array([1.0, -1.0], np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x, "c": np.array(True)}), strict=True))
    np.testing.assert_array_equal(got[next(iter(carried))], 2 * x)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x, "c": np.array(False)}), strict=True))
    assert got[next(iter(carried))].size == 0  # the other branch returns an empty tensor of the same rank


def test_loop_and_scan_tensors_come_out_stacked_per_iteration() -> None:
    loop = ir.from_proto(sm.loop_matmul(steps=3))
    carried = expose(loop, ["h_in", "h_next"])
    assert sorted(carried.values()) == ["h_in", "h_next"]
    onnx.checker.check_model(ir.to_proto(loop))
    session = make_session(qs.Model(ir=loop, path=None, fingerprint=""))
    x = np.random.default_rng(0).standard_normal((2, sm.D)).astype(np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    by_tensor = {carried[k]: v for k, v in got.items() if k in carried}
    assert by_tensor["h_in"].shape == by_tensor["h_next"].shape == (3, 2, sm.D)
    np.testing.assert_allclose(by_tensor["h_in"][0], x)  # iteration 0 reads the Loop's input
    np.testing.assert_allclose(by_tensor["h_in"][1:], by_tensor["h_next"][:-1])

    scan = ir.from_proto(onnx.shape_inference.infer_shapes(sm.scan_matmul(seq=6)))
    carried = expose(scan, ["xw"])
    onnx.checker.check_model(ir.to_proto(scan))
    session = make_session(qs.Model(ir=scan, path=None, fingerprint=""))
    feeds = {"h0": x, "x": np.random.default_rng(1).standard_normal((2, 6, sm.D)).astype(np.float32)}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    (out,) = carried
    assert got[out].shape == (6, 2, sm.D)  # stacked on axis 0 (the added scan output's axis)
