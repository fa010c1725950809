"""Min-max calibration reduces activations inside the graph and keeps exactly the same statistics."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import quantscope
import quantscope.calibrate as calibrate
import tinymodels
from quantscope.calibrate import collect
from quantscope.config.calibration import Calibration, StatisticsRequest
from quantscope.errors import NonFiniteDataError
from quantscope.examples import DIGITS_CALIB, DIGITS_MODEL, example_path
from quantscope.runtime import exposing


def _all_tensors(model: quantscope.Model) -> tuple[str, ...]:
    names = [v.name for v in model.ir.graph.inputs]
    names += [out.name for node in model.ir.graph for out in node.outputs if out.name]
    return tuple(names)


def _whole(model, targets):
    """What collect did before in-graph reduction: every tensor exposed whole."""
    return (*exposing(model, targets), {})


def _stats(model, data, monkeypatch=None, *, batch_size: int = 8, num_samples: int | None = 40):
    request = StatisticsRequest(_all_tensors(model), Calibration(num_samples=num_samples, batch_size=batch_size, seed=1))
    with pytest.MonkeyPatch.context() as mp:
        if monkeypatch:
            mp.setattr(calibrate, "reducing", _whole)
        return collect(model, data, request)


def _assert_identical(reduced, whole) -> None:
    assert reduced.num_samples == whole.num_samples
    assert dict(reduced.skipped) == dict(whole.skipped)
    assert set(reduced.observers) == set(whole.observers)
    for name, obs in whole.observers.items():
        assert reduced.observers[name].to_dict() == obs.to_dict(), name
        assert reduced.range(name) == whole.range(name), name


def _random_data(model: quantscope.Model, n: int, seed: int = 0) -> quantscope.Dataset:
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in model.inputs:
        shape = [n, *[d if isinstance(d, int) else 4 for d in spec.shape[1:]]]
        values = rng.integers(0, 2, size=shape) if spec.name == "mask" else rng.normal(size=shape)
        arrays[spec.name] = values.astype(spec.dtype)
    return quantscope.Dataset.from_arrays(arrays).bind(model.inputs)


@pytest.mark.parametrize("build", [tinymodels.mlp, tinymodels.conv_bn_relu, tinymodels.residual_block,
                                   tinymodels.attention_block])
def test_reduced_minmax_equals_whole_tensors_on_tinymodels(build, tmp_path):
    model = quantscope.load(tinymodels.save(build(), tmp_path / "m.onnx"))
    data = _random_data(model, 37)
    _assert_identical(_stats(model, data), _stats(model, data, monkeypatch=True))


def test_reduced_minmax_equals_whole_tensors_on_digits_cnn():
    model = quantscope.load(example_path(DIGITS_MODEL))
    data = quantscope.Dataset.from_npz(example_path(DIGITS_CALIB)).bind(model.inputs)
    _assert_identical(_stats(model, data, num_samples=100), _stats(model, data, monkeypatch=True, num_samples=100))


def _elementwise(op: str, elem: int = TensorProto.FLOAT, **attrs) -> quantscope.Model:
    nodes = [helper.make_node(op, ["x"], ["y"], **attrs), helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [None, 3])],
                              [helper.make_tensor_value_info("z", elem, [None, 3])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return quantscope.Model.from_proto(proto)


def test_nan_and_inf_are_counted_exactly_as_from_whole_tensors():
    model = _elementwise("Log")  # log of a negative value: NaN, ReduceMin/Max may skip it
    x = np.array([[1.0, 2.0, 3.0]] * 5 + [[-1.0, 0.0, 2.0]] + [[4.0, 5.0, 6.0]] * 4, np.float32)
    data = quantscope.Dataset.from_arrays({"x": x}).bind(model.inputs)
    messages = []
    for whole in (False, True):
        with pytest.raises(NonFiniteDataError) as info:
            _stats(model, data, monkeypatch=whole, batch_size=4, num_samples=None)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "NaN/inf value(s)" in messages[0]


@pytest.mark.parametrize("elem,dtype", [(TensorProto.FLOAT16, np.float16), (TensorProto.DOUBLE, np.float64)])
def test_other_float_types_reduce_to_the_same_ranges(elem, dtype):
    model = _elementwise("Neg", elem)
    x = np.random.default_rng(0).normal(size=(30, 3)).astype(dtype)
    data = quantscope.Dataset.from_arrays({"x": x}).bind(model.inputs)
    _assert_identical(_stats(model, data, batch_size=7, num_samples=None),
                      _stats(model, data, monkeypatch=True, batch_size=7, num_samples=None))


def test_reduced_tensors_do_not_shrink_the_batch(monkeypatch, tmp_path):
    model = quantscope.load(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "m.onnx"))
    data = _random_data(model, 8)
    request = StatisticsRequest(_all_tensors(model), Calibration(num_samples=None, batch_size=8))
    seen: list[int] = []
    original = calibrate._batch_within_budget

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    # a budget of four whole samples' tensors: whole tensors shrink the batch, reduced ones do not
    monkeypatch.setattr(calibrate, "_batch_within_budget", spy)
    monkeypatch.setattr(calibrate, "ACTIVATION_BUDGET_BYTES", 4 * 16 * 16 * 16 * 4 * 3)
    collect(model, data, request)
    monkeypatch.setattr(calibrate, "reducing", _whole)
    collect(model, data, request)
    assert seen[0] == 8
    assert seen[1] < 8


def test_reduction_graph_is_valid_onnx(tmp_path):
    model = quantscope.load(tinymodels.save(tinymodels.residual_block(), tmp_path / "m.onnx"))
    reduced_model, exposed, reduced = calibrate.reducing(model, _all_tensors(model))
    assert not exposed  # every activation is a main-graph float tensor
    onnx.checker.check_model(reduced_model.to_proto())
    assert all(len(outs) == 4 for outs in reduced.values())
