"""Which tensors may carry an attention-mask sentinel (finfo.min, -inf) from a constant."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

import tinymodels
from quantscope.graph.sentinels import holds_sentinel, sentinel_tensors


def _graph(proto: onnx.ModelProto) -> ir.Graph:
    return ir.from_proto(proto).graph


def test_holds_sentinel() -> None:
    assert holds_sentinel(np.array(np.finfo(np.float32).min, np.float32))
    assert holds_sentinel(np.array([0.0, -np.inf], np.float32))
    assert holds_sentinel(np.array([1.0, np.nan], np.float32))
    assert not holds_sentinel(np.array([1e20, -3.0], np.float32))
    assert not holds_sentinel(np.array([2**62], np.int64))  # integers are shapes and indices, not values
    assert not holds_sentinel(np.zeros((0,), np.float32))


def test_finfo_mask_flows_to_the_scores_and_stops_at_softmax() -> None:
    tainted = sentinel_tensors(_graph(tinymodels.attention_block()))
    assert {"madd", "madd4", "s2"} <= set(tainted)  # mask scaled, unsqueezed, added to the scores
    assert set(tainted.values()) == {"fmin"}
    for clean in ("x", "q0", "q1", "s1", "p", "ctx0", "o0", "y"):  # Softmax bounds it again
        assert clean not in tainted


def test_causal_minus_inf_through_where_and_not_through_comparisons() -> None:
    causal = np.triu(np.full((4, 4), -np.inf, np.float32), k=1)
    nodes = [
        helper.make_node("Add", ["scores", "causal"], ["masked"], name="add_causal"),
        helper.make_node("Less", ["masked", "zero"], ["is_neg"], name="less"),
        helper.make_node("Where", ["is_neg", "scores", "masked"], ["w"], name="where"),
        helper.make_node("Softmax", ["w"], ["p"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "causal",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("is_neg", TensorProto.BOOL, [4, 4])],
        [numpy_helper.from_array(causal, "causal"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tainted = sentinel_tensors(_graph(proto))
    assert set(tainted) == {"masked", "w"}
    assert tainted["w"] == "causal"


def test_a_model_without_sentinels_has_none() -> None:
    assert sentinel_tensors(_graph(tinymodels.mlp())) == {}
