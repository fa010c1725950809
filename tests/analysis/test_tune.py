"""``tune`` / ``quantscope tune``: the smallest or fastest configuration inside a quality budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import tinymodels
from quantscope.analysis.evaluate import predict
from quantscope.analysis.recommend import SIZE_TIE, speed, speed_verdict
from quantscope.analysis.tune import allowed_drop
from quantscope.cli import main
from quantscope.config.calibration import calibrator_names

D_IN = 16


def fragile_mlp(seed: int = 0) -> onnx.ModelProto:
    """fc1 → Relu → fc2 → fc3, where fc1's input carries a feature ~1e4 larger than the others.

    The feature's weights are zero, so it changes nothing in float; but quantizing fc1's input
    with one scale per tensor rounds every other feature to zero. Keeping fc1 alone in float
    leaves that tensor exact and everything else int8.
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((D_IN, 32)) * np.sqrt(2 / D_IN)).astype(np.float32)
    w1[0, :] = 0.0
    w2 = (rng.standard_normal((32, 32)) * np.sqrt(2 / 32)).astype(np.float32)
    w3 = (rng.standard_normal((32, 10)) * np.sqrt(2 / 32)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"),
        helper.make_node("MatMul", ["h2", "w3"], ["y"], name="fc3"),
    ]
    graph = helper.make_graph(
        nodes, "fragile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", D_IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("w2", w2), ("w3", w3))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="quantscope-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def fragile_inputs(n: int = 256, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D_IN)).astype(np.float32)
    x[:, 0] *= 1e4
    return x


@pytest.fixture
def fragile(tmp_path: Path) -> tuple[qs.Model, qs.Dataset, qs.Dataset, Path]:
    path = tmp_path / "fragile.onnx"
    onnx.save(fragile_mlp(), path)
    x = fragile_inputs()
    np.savez(tmp_path / "calib.npz", x=x[:64])
    np.savez(tmp_path / "eval.npz", x=x[64:])
    return qs.load(path), qs.Dataset.from_arrays({"x": x[:64]}), qs.Dataset.from_arrays({"x": x[64:]}), tmp_path


def test_keeps_exactly_the_fragile_layer_in_float(fragile) -> None:
    model, calib, data, _ = fragile
    steps: list[str] = []
    best = qs.tune(model, calib, data, max_drop=0.05, methods=["static-int8"],
                   progress=lambda what, done, total: steps.append(what))
    results = best.results
    allowed = allowed_drop(results)
    full = [v for v in results.variants if v.kind != "float" and v.config["exclude"]["names"] == []]
    assert len(full) == len(calibrator_names())  # one per calibrator, and every one misses the budget
    assert all(results.drop(v) > allowed for v in full)
    assert best.float_nodes == ("fc1",)
    assert best.config.exclude.names == ("fc1",)
    assert best.config.method == "static-int8"
    assert results.drop(results.variant(best.name)) <= allowed
    decisions = {d.node: d.action for d in best.quantized.plan.decisions}
    assert decisions["fc1"] == "float" and decisions["fc2"] == decisions["fc3"] == "quantized"
    assert any("Keeping fc1" in r and "bought back" in r for r in best.reasons), best.reasons
    assert any("misses the budget" in r for r in best.reasons)
    assert best.reasons[-1].startswith(f"Chose {best.name}")
    assert any(s.startswith("keeping fc1") for s in steps)
    # the chosen model really does stay close: top-1 agreement with float on the evaluation data
    ref, out = predict(model, data)[0], predict(best.quantized.model, data)[0]
    assert np.mean(ref.argmax(1) == out.argmax(1)) >= 1 - 0.05
    onnx.checker.check_model(best.quantized.model.to_proto())


def test_is_deterministic_for_a_seed(fragile) -> None:
    model, calib, data, _ = fragile
    a = qs.tune(model, calib, data, max_drop=0.05, methods=["static-int8"], seed=3)
    b = qs.tune(model, calib, data, max_drop=0.05, methods=["static-int8"], seed=3)
    assert a.name == b.name and a.config == b.config and a.reasons == b.reasons


def test_objective_switches_between_smallest_and_fastest(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), path)
    model = qs.load(path)
    x = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
    data = qs.Dataset.from_arrays({"x": x[32:]})
    methods = ["weight-int8", "float16", "dynamic-int8"]
    by_size = qs.tune(model, None, data, max_drop=0.5, methods=methods, objective="size")
    by_time = qs.tune(model, None, data, max_drop=0.5, methods=methods, objective="latency")
    for best in (by_size, by_time):
        assert best.float_nodes == ()
        inside = best.results.within_budget(allowed_drop(best.results))
        assert len(inside) >= 2, "the test needs a choice to make"
    inside = by_size.results.within_budget(allowed_drop(by_size.results))
    # a variant measurably slower than float loses to one that is not
    usable = [v for v in inside if speed_verdict(by_size.results, v) != "slower"] or inside
    smallest = min(usable, key=lambda v: (v.size_bytes, v.name))
    pick = by_size.results.variant(by_size.name)
    # the smallest of those, unless a variant at most SIZE_TIE larger is clearly faster (speed intervals apart)
    assert pick is smallest or (pick.size_bytes <= smallest.size_bytes * (1 + SIZE_TIE)
                                and speed(by_size.results, pick)[1] > speed(by_size.results, smallest)[2])
    # size is weighed against speed, so batch-1 one-thread latency is measured, paired with float
    for v in by_size.results.variants:
        assert [(t.batch, t.threads) for t in v.latency] == [(1, 1)]

    def ms(v) -> float:
        (lat,) = [t for t in v.latency if t.batch == 1 and t.threads == 1]
        return lat.median_ms

    inside = by_time.results.within_budget(allowed_drop(by_time.results))
    inside = [v for v in inside if speed_verdict(by_time.results, v) != "slower"] or inside
    fastest = max(inside, key=lambda v: speed(by_time.results, v)[0])
    chosen = by_time.results.variant(by_time.name)
    # the fastest, or one as fast within the timing noise and smaller
    assert chosen is fastest or (speed(by_time.results, chosen)[2] >= speed(by_time.results, fastest)[1]
                                 and chosen.size_bytes < fastest.size_bytes)
    assert all(math.isfinite(ms(v)) for v in by_time.results.variants)
    assert "optimised for speed" in by_time.reasons[-1] and "within the quality budget" in by_time.reasons[-1]
    assert "optimised for size" in by_size.reasons[-1]


def test_bad_arguments_are_config_errors(fragile) -> None:
    model, calib, data, _ = fragile
    with pytest.raises(qs.ConfigError, match="objective"):
        qs.tune(model, calib, data, max_drop=0.01, objective="energy")  # type: ignore[arg-type]
    with pytest.raises(qs.ConfigError, match="max_drop"):
        qs.tune(model, calib, data, max_drop=1.5)


def _invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_exits_4_when_the_budget_cannot_be_met(fragile) -> None:
    _, _, _, tmp = fragile
    out = tmp / "report"
    result = _invoke("tune", tmp / "fragile.onnx", "--calib", tmp / "calib.npz", "--data", tmp / "eval.npz",
                     "--max-drop", "5%", "-m", "static-int8", "-m", "dynamic-int8", "--max-float-nodes", "0",
                     "--report", out, "-o", tmp / "never.onnx")
    assert result.exit_code == 4, result.output
    assert "QualityGateError" in result.output and "the closest is" in result.output
    assert "misses the budget" in result.output
    assert not (tmp / "never.onnx").exists()
    assert (out / "results.json").is_file()  # the report of what was tried is still written


def test_cli_writes_the_chosen_model_with_its_sidecar(fragile) -> None:
    _, _, _, tmp = fragile
    out = tmp / "best.onnx"
    result = _invoke("tune", tmp / "fragile.onnx", "--calib", tmp / "calib.npz", "--data", tmp / "eval.npz",
                     "--max-drop", "5%", "-m", "static-int8", "-o", out, "--report", tmp / "report")
    assert result.exit_code == 0, result.output
    assert "Keeping fc1" in result.output
    best = qs.load(out)
    assert {n.op_type for n in best.ir.graph} >= {"QuantizeLinear", "DequantizeLinear", "MatMul"}
    sidecar = json.loads(out.with_name("best.quantscope.json").read_text())
    assert sidecar["config"]["exclude"]["names"] == ["fc1"]
    saved = json.loads((tmp / "report" / "results.json").read_text())
    assert saved["max_drop"] == pytest.approx(0.05)
    assert any(v["name"].endswith("+1float") for v in saved["variants"])
