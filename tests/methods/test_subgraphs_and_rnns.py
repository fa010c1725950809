"""Every method inside If/Loop/Scan bodies and on LSTM/GRU layers: structure, numerics, validity.

Each fixture (tests/subgraph_models.py) goes through every registered method via
``quantscope.quantize``; the written model must load and run in ONNX Runtime at
``ORT_ENABLE_ALL``, its plan must quantize nodes inside the bodies (or the recurrent node), and
its outputs must stay close to the float model's (cosine floors per method below, seeded data).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import quantscope as qs
import subgraph_models as sm
import tinymodels
from quantscope import cli
from quantscope.config import MethodConfig
from quantscope.methods import method_for, registered_configs
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session

CONFIGS = registered_configs()
# cosine similarity of every output to the float model's, on random data; ternary/binary without
# retraining only keep the direction roughly (see their warnings)
COSINE_FLOOR = {
    "float16": 0.9999, "static-int8": 0.999, "dynamic-int8": 0.999, "weight-int8": 0.999,
    "weight-int4": 0.97, "cluster": 0.95, "ternary": 0.3, "binary": 0.3,
}
SAMPLES = 16


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(np.float32)


# name -> (model builder, feeds for n samples): the models the current Dataset can batch
Fixture = tuple[Callable[[], onnx.ModelProto], Callable[[int, int], dict[str, np.ndarray]]]
FIXTURES: dict[str, Fixture] = {
    # the If's condition is a constant here (rate as an initializer): the Dataset cannot feed a scalar yet
    "gru_in_if": (lambda: sm._rnn_in_if("GRU", 0, 8, 32, 64, stateful=False, rate_input=False),
                  lambda n, s: {"x": _x(n, 8, 32, seed=s)}),
    "loop": (sm.loop_matmul, lambda n, s: {"x": _x(n, sm.D, seed=s)}),
    "scan": (sm.scan_matmul, lambda n, s: {"h0": _x(n, sm.D, seed=s), "x": _x(n, 6, sm.D, seed=s + 1)}),
    "lstm": (lambda: sm.recurrent("LSTM"), lambda n, s: {"x": _x(n, 8, 32, seed=s)}),
    "gru": (lambda: sm.recurrent("GRU"), lambda n, s: {"x": _x(n, 8, 32, seed=s)}),
}
# where each fixture's quantized nodes must be: inside a body (label holder/attribute/...) or the RNN
INNER = {"gru_in_if": "per_rate/", "loop": "repeat/body/", "scan": "scan/body/", "lstm": "rnn_lstm", "gru": "rnn_gru"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, qs.Model]:
    root = tmp_path_factory.mktemp("subgraphs")
    return {name: qs.load(tinymodels.save(build(), root / f"{name}.onnx")) for name, (build, _) in FIXTURES.items()}


def _outputs(model: qs.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model, optimization="all").run(None, feeds)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _quantize(model: qs.Model, config: MethodConfig, feeds: Callable[[int, int], dict[str, np.ndarray]]) -> qs.QuantizedModel:
    data = qs.Dataset.from_arrays(feeds(SAMPLES, 100)) if config.needs_calibration else None
    return qs.quantize(model, config, data)


@pytest.mark.parametrize("config_type", CONFIGS, ids=[c.method for c in CONFIGS])
@pytest.mark.parametrize("name", list(FIXTURES))
def test_every_method_quantizes_inside_bodies_and_recurrent_layers(
    models: dict[str, qs.Model], name: str, config_type: type[MethodConfig]
) -> None:
    config = config_type(measure=False) if config_type is qs.StaticInt8 else config_type()  # structure, not speed
    model = models[name]
    q = _quantize(model, config, FIXTURES[name][1])
    quantized = [d.node for d in q.plan.quantized_nodes]
    assert any(label.startswith(INNER[name]) for label in quantized), (name, quantized)
    assert not any("left in float" in w for w in q.plan.warnings)
    if name in ("lstm", "gru"):  # the recurrent layer itself is decided, with what stays float said
        rnn = next(d for d in q.plan.decisions if d.node == INNER[name])
        assert rnn.action == "quantized", rnn
        if "DynamicQuantizeLSTM" not in rnn.reason and config.method != "float16":
            assert "arithmetic stays float" in rnn.reason, rnn.reason
    onnx.checker.check_model(q.model.to_proto())
    # a plan read back from the sidecar (no payload) writes the same model
    plan = QuantPlan.from_dict(json.loads(json.dumps(q.plan.to_dict())))
    method = method_for(config)
    again = method.apply(method.prepare(model, config), config, plan)
    assert again.serialize() == q.model.serialize()
    feeds = FIXTURES[name][1](4, 7)
    for ref, got in zip(_outputs(model, feeds), _outputs(q.model, feeds), strict=True):
        assert _cosine(ref, got) >= COSINE_FLOOR[config.method], (name, config.method, _cosine(ref, got))


def test_an_if_on_a_scalar_input_with_a_state_is_quantized_in_both_branches(tmp_path: Path) -> None:
    """The data-free methods (no calibration data needed) on the full fixture: scalar rate, GRU state."""
    model = qs.load(tinymodels.save(sm.rnn_in_if("GRU"), tmp_path / "rnn_in_if.onnx"))
    for config_type in CONFIGS:
        config = config_type()
        if config.needs_calibration:
            continue
        q = qs.quantize(model, config)
        labels = {d.node for d in q.plan.quantized_nodes}
        assert {"per_rate/then_branch/r16k_gru", "per_rate/else_branch/r8k_gru"} <= labels, (config.method, labels)
        for rate in (16000, 8000):
            feeds = {"x": _x(3, 8, 32, seed=rate), "state": _x(1, 3, 64, seed=1), "rate": np.array(rate, np.int64)}
            for ref, got in zip(_outputs(model, feeds), _outputs(q.model, feeds), strict=True):
                assert _cosine(ref, got) >= COSINE_FLOOR[config.method], (config.method, rate)


def test_dynamic_int8_writes_lstm_as_dynamic_quantize_lstm(models: dict[str, qs.Model]) -> None:
    q = qs.quantize(models["lstm"], qs.DynamicInt8())
    ops = {(n.domain, n.op_type) for n in q.model.ir.graph}
    assert ("com.microsoft", "DynamicQuantizeLSTM") in ops and ("", "LSTM") not in ops
    node = next(n for n in q.model.ir.graph if n.op_type == "DynamicQuantizeLSTM")
    w, w_scale = node.inputs[1].const_value.numpy(), node.inputs[8].const_value.numpy()
    assert w.dtype == np.int8 and w.shape == (1, 32, 4 * 64)  # transposed: [directions, input, 4*hidden]
    assert w_scale.shape == (1, 4 * 64)  # per direction and gate row
    assert "DynamicQuantizeLSTM" in next(d for d in q.plan.decisions if d.node == "rnn_lstm").reason


def test_gru_weights_are_int8_or_int4_behind_dequantize_linear(models: dict[str, qs.Model]) -> None:
    for config, dtype in ((qs.DynamicInt8(), "int8"), (qs.WeightInt8(), "int8"), (qs.WeightInt4(), "int4")):
        q = qs.quantize(models["gru"], config)
        gru = next(n for n in q.model.ir.graph if n.op_type == "GRU")
        for index in (1, 2):
            producer = gru.inputs[index].producer()
            while producer.op_type == "Reshape":
                producer = producer.inputs[0].producer()
            assert producer.op_type == "DequantizeLinear", config.method
            assert producer.inputs[0].const_value.dtype.name.lower() == dtype, config.method
        # ONNX Runtime folds the DequantizeLinear: the file shrinks
        assert len(q.model.serialize()) < 0.5 * len(models["gru"].serialize()), config.method


def test_static_int8_quantizes_around_the_lstm_and_stores_its_weights_int8(models: dict[str, qs.Model]) -> None:
    q = _quantize(models["lstm"], qs.StaticInt8(), FIXTURES["lstm"][1])
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["proj_in"].action == decisions["proj_out"].action == "quantized"
    assert "W and R stored int8" in decisions["rnn_lstm"].reason
    lstm = next(n for n in q.model.ir.graph if n.op_type == "LSTM")
    assert all(lstm.inputs[i].producer().op_type == "DequantizeLinear" for i in (1, 2))
    assert lstm.inputs[0].producer().op_type != "DequantizeLinear"  # its input stays float


def test_static_int8_calibrates_inside_loop_and_scan_bodies(models: dict[str, qs.Model]) -> None:
    for name, inner in (("loop", "repeat/body/step_matmul"), ("scan", "scan/body/state_matmul")):
        q = _quantize(models[name], qs.StaticInt8(), FIXTURES[name][1])
        assert inner in {d.node for d in q.plan.quantized_nodes}
        calibrated = [a for a in q.plan.activations if a.source.startswith("calibrated")]
        body = {v.name for g in q.model.ir.graph.subgraphs() for n in g for v in n.inputs if v is not None}
        # a tensor of the body (its state) got calibrated parameters, and a Q/DQ inside the body reads them
        assert any(a.tensor in {"h_in", "h_prev"} for a in calibrated), name
        assert any(v.endswith("_scale") for v in body), name


def test_a_branch_the_data_never_takes_stays_float_with_the_reason(models: dict[str, qs.Model]) -> None:
    q = _quantize(models["gru_in_if"], qs.StaticInt8(), FIXTURES["gru_in_if"][1])
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["per_rate/else_branch/proj_out"].action == "quantized"  # rate 8000: else runs
    untaken = decisions["per_rate/then_branch/proj_out"]
    assert untaken.action == "float" and "no calibration statistics" in untaken.reason


def test_excluding_the_holder_excludes_its_bodies(models: dict[str, qs.Model]) -> None:
    config = qs.DynamicInt8(exclude=qs.NodeSelector(names=("repeat",)))
    q = qs.quantize(models["loop"], config)
    inner = next(d for d in q.plan.decisions if d.node == "repeat/body/step_matmul")
    assert inner.action == "float" and "excluded by name 'repeat'" in inner.reason
    assert [d.node for d in q.plan.quantized_nodes] == ["head"]


def test_cli_quantize_with_no_special_flags(tmp_path: Path) -> None:
    """``quantscope quantize model --calib data.npz -o out.onnx`` on an If model and an LSTM model.

    The If's condition is a constant there: the current Dataset cannot feed a scalar input, so
    the fixture with a scalar ``rate`` and a ``[1, batch, hidden]`` state goes through a method
    that needs no data.
    """
    for name in ("gru_in_if", "lstm"):
        build, feeds = FIXTURES[name]
        path = tinymodels.save(build(), tmp_path / f"{name}.onnx")
        np.savez(tmp_path / f"{name}.npz", **feeds(SAMPLES, 3))
        out = tmp_path / f"{name}_q.onnx"
        result = CliRunner().invoke(
            cli.main, ["quantize", str(path), "--calib", str(tmp_path / f"{name}.npz"), "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        sample = feeds(4, 9)
        for ref, got in zip(_outputs(qs.load(path), sample), _outputs(qs.load(out), sample), strict=True):
            assert _cosine(ref, got) >= COSINE_FLOOR["static-int8"]
    # the full fixture (scalar rate, GRU state) with a method that needs no data
    path = tinymodels.save(sm.rnn_in_if("GRU"), tmp_path / "rnn_in_if.onnx")
    out = tmp_path / "rnn_in_if_q.onnx"
    result = CliRunner().invoke(cli.main, ["quantize", str(path), "-m", "dynamic-int8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    sample = {"x": _x(2, 8, 32, seed=4), "state": _x(1, 2, 64, seed=5), "rate": np.array(16000, np.int64)}
    for ref, got in zip(_outputs(qs.load(path), sample), _outputs(qs.load(out), sample), strict=True):
        assert _cosine(ref, got) >= COSINE_FLOOR["dynamic-int8"]


def _growing_loop() -> onnx.ModelProto:
    """A Loop whose carried tensor doubles its rows every step: ORT cannot stack it per iteration."""
    from onnx import TensorProto, helper, numpy_helper

    d = sm.D
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("Concat", ["h_in", "h_in"], ["g"], name="double", axis=0),
            helper.make_node("MatMul", ["g", "w_loop"], ["h_next"], name="step_matmul"),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_next", TensorProto.FLOAT, [None, d])],
    )
    w = np.random.default_rng(3).standard_normal((d, d)).astype(np.float32) / 8
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_in"], ["h0"], name="head"),
         helper.make_node("Loop", ["steps", "", "h0"], ["y"], name="repeat", body=body)],
        "growing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, d])],
        [numpy_helper.from_array(np.array(2, np.int64), "steps"), numpy_helper.from_array(w, "w_loop"),
         numpy_helper.from_array(w.T.copy(), "w_in")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_body_tensors_runtime_cannot_return_stay_float_and_the_rest_is_quantized(tmp_path: Path) -> None:
    model = qs.load(tinymodels.save(_growing_loop(), tmp_path / "growing.onnx"))
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _x(SAMPLES, sm.D)}))
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["head"].action == "quantized"
    inner = decisions["repeat/body/step_matmul"]
    assert inner.action == "float" and "no calibration statistics" in inner.reason
    feeds = {"x": _x(4, sm.D, seed=5)}
    assert _cosine(_outputs(model, feeds)[0], _outputs(q.model, feeds)[0]) >= COSINE_FLOOR["static-int8"]


def test_recurrent_input_sizes_block_size_does_not_divide_get_a_smaller_block(tmp_path: Path) -> None:
    """40 audio features: W's K=40 takes blocks of 20 (R's K=64 keeps 32); a MatMul with K=40 is still refused."""
    model = qs.load(tinymodels.save(sm.recurrent("GRU", inputs=40), tmp_path / "gru40.onnx"))
    with pytest.raises(qs.UnsupportedModelError, match="block_size=32 does not divide"):
        qs.quantize(model, qs.WeightInt4())
    q = qs.quantize(model, qs.WeightInt4(exclude=qs.NodeSelector(names=("proj_in",))))
    reason = next(d.reason for d in q.plan.decisions if d.node == "rnn_gru")
    assert "W: 4-bit block-wise, 20 values per block along K=40" in reason
    assert "R: 4-bit block-wise, 32 values per block along K=64" in reason
    feeds = {"x": _x(4, 8, 40, seed=2)}
    assert _cosine(_outputs(model, feeds)[0], _outputs(q.model, feeds)[0]) >= COSINE_FLOOR["weight-int4"]


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_torch_exported_bidirectional_two_layer_rnn_through_every_method(tmp_path: Path, cell: str) -> None:
    torch = pytest.importorskip("torch")
    import io

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(24, 64, num_layers=2, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(128, 10)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.fc(y[:, -1])

    buf = io.BytesIO()
    torch.onnx.export(Net().eval(), (torch.randn(2, 12, 24),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    model = qs.load(tinymodels.save(onnx.load_from_string(buf.getvalue()), tmp_path / f"{cell}.onnx"))
    data = qs.Dataset.from_arrays({"x": _x(SAMPLES, 12, 24, seed=2)})
    feeds = {"x": _x(3, 12, 24, seed=1)}
    for config_type in CONFIGS:
        config = config_type(measure=False) if config_type is qs.StaticInt8 else config_type()  # structure, not speed
        q = qs.quantize(model, config, data if config.needs_calibration else None)
        rnn = [d for d in q.plan.decisions if d.op_type == cell]
        assert len(rnn) == 2 and all(d.action == "quantized" for d in rnn), (config.method, rnn)
        if config.method == "dynamic-int8" and cell == "LSTM":
            assert sum(n.op_type == "DynamicQuantizeLSTM" for n in q.model.ir.graph) == 2
        cosine = _cosine(_outputs(model, feeds)[0], _outputs(q.model, feeds)[0])
        assert cosine >= COSINE_FLOOR[config.method], (config.method, cosine)
