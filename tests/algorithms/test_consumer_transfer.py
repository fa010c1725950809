"""Consumer transfers: the float elementwise chain after a quantized tensor, tabulated from the graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.algorithms.consumer_transfer import transfers
from quantscope.numerics.observers import TensorObserver


def _model(tmp_path, scale: np.ndarray) -> qs.Model:
    """x -> Conv -> c1 -> Mul(scale) -> m -> m * HardSigmoid(m) -> Add 0.5 -> a -> Conv -> y."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 1, (4, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(scale.astype(np.float32), "s"),
        numpy_helper.from_array(np.array([0.5], np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c1", "s"], ["m"]),
        helper.make_node("HardSigmoid", ["m"], ["hs"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["m", "hs"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["a"]),
        helper.make_node("Conv", ["a", "w2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 8, 8])], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path / "chain.onnx"
    onnx.save(proto, str(path))
    return qs.load(path)


def _observers(*names: str) -> dict[str, TensorObserver]:
    out = {}
    for name in names:
        obs = TensorObserver(bins=256)
        obs.update(np.linspace(-10.0, 10.0, 101, dtype=np.float32))
        out[name] = obs
    return out


def test_the_chain_to_the_next_observed_tensor_is_tabulated(tmp_path) -> None:
    model = _model(tmp_path, np.array([2.0]))
    found = transfers(model, ["x", "c1", "a"], _observers("x", "c1", "a"))
    assert set(found) == {"c1"}  # x and a are read by Convs directly: their own error counts
    t = found["c1"]
    v = np.array([-10.0, -2.0, -0.5, 0.0, 1.0, 9.0])
    m = 2.0 * v
    expected = m * np.clip(m / 6 + 0.5, 0.0, 1.0) + 0.5
    assert np.allclose(t(v)[0], expected, atol=1e-4)


def test_a_per_channel_constant_gives_no_transfer(tmp_path) -> None:
    model = _model(tmp_path, np.linspace(1.0, 2.0, 8).reshape(1, 8, 1, 1))
    assert transfers(model, ["c1", "a"], _observers("c1", "a")) == {}


def test_auto_calibration_judges_the_conv_output_at_its_consumers(tmp_path) -> None:
    model = _model(tmp_path, np.array([2.0]))
    x = np.random.default_rng(1).normal(0, 1, (32, 3, 8, 8)).astype(np.float32)
    # static-int8 runs a HardSwish and a scalar shift between integer ops as integer kernels; with the
    # shift left float the chain after c1 stays float, the case consumer transfers are for
    float_chain = qs.NodeSelector(op_types=("Add",))
    q = qs.quantize(model, qs.StaticInt8(measure=False, exclude=float_chain), qs.Dataset.from_arrays({"x": x}))
    assert {d.op_type for d in q.plan.decisions if d.action == "float"} == {"HardSigmoid", "Mul", "Add"}
    by_tensor = {a.tensor: a for a in q.plan.activations}
    c1 = by_tensor["m"]  # the Conv, with the scalar Mul folded in, computes (and is named) m
    assert c1.source.startswith("calibrated:auto/") and c1.source.endswith("(at consumers)")
    assert "(at consumers)" not in by_tensor["a"].source  # read by a Conv: judged by its own error
    minmax = qs.quantize(model, qs.StaticInt8(calibration="minmax", measure=False, exclude=float_chain),
                         qs.Dataset.from_arrays({"x": x}))
    held_out = np.random.default_rng(2).normal(0, 1, (32, 3, 8, 8)).astype(np.float32)
    ref = qs.runtime.run(qs.runtime.make_session(model), {"x": held_out})[0]
    def err(qm: qs.Quantized) -> float:
        return float(np.mean((qs.runtime.run(qs.runtime.make_session(qm.model), {"x": held_out})[0] - ref) ** 2))
    assert err(q) < err(minmax)
