"""The algorithms' statistics (means, absmax, XᵀX, channel means) gathered in calibration's own pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.algorithms.activation_stats import FeatureStats, divided, extra_of, observe
from quantscope.calibrate import _Observed, collect
from quantscope.config.calibration import Calibration, MinMax, StatisticsRequest


def _mlp(opset: int = 17, lead: tuple[str | int, ...] = ("N", 4)) -> qs.Model:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*lead, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, 3])], inits)
    return qs.Model.from_proto(onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])))


def test_extra_statistics_come_from_the_calibration_pass_and_equal_a_separate_pass() -> None:
    model = _mlp()
    x = np.random.default_rng(1).standard_normal((24, 4, 6)).astype(np.float32)
    data = qs.Dataset.from_arrays({"x": x}).bind(model.inputs)
    calibration = Calibration(method=MinMax(), num_samples=None, batch_size=8, seed=3)
    request = StatisticsRequest(("h", "r"), calibration, extra={"x": ("mean", "gram"), "r": ("absmax", "gram", "mean")})
    stats = collect(model, data, request)
    together = extra_of(stats)
    alone = observe(model, data, request)
    assert together is not None and set(together.tensors) == {"x", "r"}
    for name in ("x", "r"):
        a, b = together[name], alone[name]
        assert a.rows == b.rows == 24 * 4
        np.testing.assert_allclose(a.gram, b.gram, rtol=1e-6)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6)
    rows = x.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(together["x"].gram, rows.T @ rows, rtol=1e-5)  # against NumPy
    np.testing.assert_allclose(together["r"].absmax, alone["r"].absmax)
    assert stats.num_samples == 24 and stats.range("r")[0] >= 0.0  # the ranges are still there


def test_sums_of_squares_are_the_diagonal_of_the_gram_and_scale_with_the_features() -> None:
    rng = np.random.default_rng(3)
    both = FeatureStats(("sumsq", "gram"))
    for _ in range(4):
        both.update((rng.normal(size=(5, 7, 6)) * np.arange(1, 7)).astype(np.float32))
    assert both.sumsq is not None and both.gram is not None and both.rows == 4 * 5 * 7
    np.testing.assert_allclose(both.sumsq, np.diag(both.gram), rtol=1e-5)
    s = np.linspace(0.5, 3.0, 6)
    np.testing.assert_allclose(divided(both, s).sumsq, both.sumsq / s**2, rtol=1e-12)


@pytest.mark.parametrize("opset", [17, 18])  # Reduce* axes: an attribute before opset 18, an input since
def test_per_feature_statistics_reduced_in_the_graph_equal_those_of_the_whole_tensors(opset: int) -> None:
    model = _mlp(opset)
    x = (np.random.default_rng(2).standard_normal((20, 4, 6)) * np.arange(1, 7)).astype(np.float32)
    data = qs.Dataset.from_arrays({"x": x}).bind(model.inputs)
    calibration = Calibration(method=MinMax(), num_samples=None, batch_size=8, seed=0)
    request = StatisticsRequest(("h", "r"), calibration, extra={"h": ("min", "max", "sumsq", "mean"), "r": ("absmax",)})
    observed = _Observed.build(model, ["h", "r"], data, reduce=True, extra=["h", "r"], kinds=request.extra)
    assert set(observed.features) == {"h", "r"} and not observed.extra  # neither tensor leaves ONNX Runtime whole
    stats = collect(model, data, request)
    plain = collect(model, data, StatisticsRequest(("h", "r"), calibration))  # ranges alone: scalar reductions
    for name in ("h", "r"):
        assert stats.range(name) == plain.range(name)
        assert stats.observers[name].count == plain.observers[name].count == 20 * 4 * 5
    together, alone = extra_of(stats), observe(model, data, request)
    assert together is not None
    for name in ("h", "r"):
        a, b = together[name], alone[name]
        assert a.rows == b.rows == 20 * 4 and a.ndim == b.ndim == 3
        np.testing.assert_allclose(a.absmax, b.absmax, rtol=1e-6)
    np.testing.assert_allclose(together["h"].min, alone["h"].min, rtol=1e-6)
    np.testing.assert_allclose(together["h"].sumsq, alone["h"].sumsq, rtol=1e-5)
    np.testing.assert_allclose(together["h"].mean, alone["h"].mean, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("lead", [(5,), (5, 2, 3), (5, 1, 4, 2)])  # ranks 2 to 5: inner axes are reduced first
def test_per_feature_statistics_of_every_rank_equal_numpy(opset: int, lead: tuple[int, ...]) -> None:
    model = _mlp(opset, ("N", *lead[1:]))
    x = (np.random.default_rng(4).standard_normal((*lead, 6)) * np.arange(1, 7)).astype(np.float32)
    request = StatisticsRequest(("h",), Calibration(method=MinMax(), num_samples=None, batch_size=2),
                                extra={"h": ("min", "max", "sumsq", "mean")})
    data = qs.Dataset.from_arrays({"x": x}).bind(model.inputs)
    got = extra_of(collect(model, data, request))
    assert got is not None
    h = (x.reshape(-1, 6).astype(np.float64) @ numpy_helper.to_array(model.to_proto().graph.initializer[0]))
    stats = got["h"]
    assert stats.rows == h.shape[0] and stats.ndim == len(lead) + 1
    np.testing.assert_allclose(stats.min, h.min(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.max, h.max(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.sumsq, (h * h).sum(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats.mean, h.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_a_nan_inside_the_model_is_caught_through_the_per_feature_reductions_too() -> None:
    from quantscope.errors import NonFiniteDataError

    w = numpy_helper.from_array(np.ones((6, 3), np.float32), "w")
    nodes = [helper.make_node("Log", ["x"], ["h"], name="log"), helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])], [w])
    proto = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    model = qs.Model.from_proto(proto)
    x = np.abs(np.random.default_rng(0).standard_normal((8, 4, 6))).astype(np.float32)
    x[3, 1, 2] = -1.0  # log of a negative value: NaN inside the model, the input itself finite
    request = StatisticsRequest(("h",), Calibration(method=MinMax(), num_samples=None, batch_size=4),
                                extra={"h": ("min", "max", "sumsq")})
    with pytest.raises(NonFiniteDataError, match="'h'"):
        collect(model, qs.Dataset.from_arrays({"x": x}).bind(model.inputs), request)
