"""The contract every registered method keeps, run over the method registry.

A new method is covered by registering it (``quantscope.methods.register``): each test below
runs once per registered config type, with that config's defaults, on a tiny MLP.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

import quantscope as qs
import tinymodels
from quantscope.config import MethodConfig, NodeSelector, config_from_dict
from quantscope.methods import method_for, registered_configs
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session

CONFIGS = registered_configs()


@pytest.fixture(params=CONFIGS, ids=[c.method for c in CONFIGS])
def config(request: pytest.FixtureRequest) -> MethodConfig:
    return request.param()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> qs.Model:
    path = tmp_path_factory.mktemp("contract") / "mlp.onnx"
    return qs.load(tinymodels.save(tinymodels.mlp(), path))


def _data(model: qs.Model, n: int = 32) -> qs.Dataset:
    x = np.random.default_rng(0).standard_normal((n, 64)).astype(np.float32)
    return qs.Dataset.from_arrays({model.inputs[0].name: x})


def _quantize(model: qs.Model, config: MethodConfig) -> qs.QuantizedModel:
    return qs.quantize(model, config, _data(model) if config.needs_calibration else None)


def _bytes(model: qs.Model) -> bytes:
    return ir.to_proto(model.ir).SerializeToString(deterministic=True)


def test_the_registry_holds_every_builtin_method() -> None:
    assert {c.method for c in CONFIGS} >= {
        "static-int8", "dynamic-int8", "float16", "weight-int8", "weight-int4", "cluster", "ternary", "binary",
    }


def test_input_model_is_not_modified(mlp: qs.Model, config: MethodConfig) -> None:
    before = _bytes(mlp)
    _quantize(mlp, config)
    assert _bytes(mlp) == before


def test_deterministic_for_a_seed(mlp: qs.Model, config: MethodConfig) -> None:
    a, b = _quantize(mlp, config), _quantize(mlp, config)
    assert _bytes(a.model) == _bytes(b.model)
    assert a.plan.to_dict() == b.plan.to_dict()


def test_exclusions_are_honoured_with_the_rule_named(mlp: qs.Model, config: MethodConfig) -> None:
    baseline = _quantize(mlp, config)
    target = baseline.plan.quantized_nodes[0].node
    excluded = _quantize(mlp, dataclasses.replace(config, exclude=NodeSelector(names=(target,))))
    decision = next(d for d in excluded.plan.decisions if d.node == target)
    assert decision.action == "float"
    assert f"name {target!r}" in decision.reason
    assert target in {n.name for n in excluded.model.ir.graph}  # the node itself is still there, float


def test_a_selector_matching_nothing_is_an_error(mlp: qs.Model, config: MethodConfig) -> None:
    with pytest.raises(qs.SelectorError, match="no_such_node"):
        _quantize(mlp, dataclasses.replace(config, exclude=NodeSelector(names=("no_such_node",))))


def _integers_only(tmp_path: Path) -> qs.Model:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    graph = helper.make_graph(
        nodes, "ints",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", 4]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 4])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", tinymodels.OPSET)])
    proto.ir_version = 8
    return qs.load(tinymodels.save(proto, tmp_path / "ints.onnx"))


def test_nothing_to_quantize_is_one_clear_error(tmp_path: Path, config: MethodConfig) -> None:
    model = _integers_only(tmp_path)
    ints = np.arange(32, dtype=np.int64).reshape(8, 4)
    data = qs.Dataset.from_arrays({"a": ints, "b": ints}) if config.needs_calibration else None
    with pytest.raises(qs.UnsupportedModelError, match=r"found .* in this model: .*Nothing was written"):
        qs.quantize(model, config, data)


def test_output_loads_and_runs_at_the_default_optimization_level(mlp: qs.Model, config: MethodConfig) -> None:
    q = _quantize(mlp, config)
    onnx.checker.check_model(q.model.to_proto())
    session = make_session(q.model)  # ORT_ENABLE_ALL, ONNX Runtime's default
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    (y,) = session.run(None, {mlp.inputs[0].name: x})
    assert y.shape == (4, 10) and np.all(np.isfinite(y))


def test_sidecar_round_trips_and_its_plan_applies_to_the_same_model(mlp: qs.Model, config: MethodConfig) -> None:
    q = _quantize(mlp, config)
    side = json.loads(json.dumps(q.sidecar()))
    assert config_from_dict(side["config"]) == config
    plan = QuantPlan.from_dict(side["plan"])
    assert plan == q.plan and plan.to_dict() == q.plan.to_dict()
    assert plan.payload is None  # the payload is never saved
    method = method_for(config)
    again = method.apply(method.prepare(mlp, config), config, plan)  # recomputed from the model
    assert _bytes(again) == _bytes(q.model)
