"""Latency-aware static-int8: regions, the selection with an injected timer (no timing outcome is
tested), and one real run that checks only invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope import cli
from quantscope.analysis.evaluate import Latency, PairedLatency
from quantscope.calibrate import collect
from quantscope.methods.static_int8.latency import choose_regions
from quantscope.methods.static_int8.method import StaticInt8Method
from quantscope.methods.static_int8.regions import find_regions

EXAMPLES = Path(qs.__file__).parent / "examples"


def _two_regions() -> qs.Model:
    """``conv_a → Relu → Exp (float) → conv_b → Relu``: two integer regions split by a float op."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, c, 3, 3)).astype(np.float32) * 0.2, f"w_{n}")
             for n, c in (("a", 3), ("b", 8))]
    nodes = [
        helper.make_node("Conv", ["x", "w_a"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("Exp", ["ra"], ["e"], name="exp"),
        helper.make_node("Conv", ["e", "w_b"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b"], ["y"], name="relu_b"),
    ]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return qs.Model.from_proto(onnx.shape_inference.infer_shapes(proto))


def _int8(model: qs.Model, conv: str) -> bool:
    node = next(n for n in model.ir.graph if n.name == conv)
    producer = node.inputs[1].producer()
    return producer is not None and producer.op_type == "DequantizeLinear"


def fake_timer(costs: dict[str, tuple[float, float]], calls: list[str] | None = None):
    """Model time = sum over convs of their (float, int8) cost; a tight interval around the ratio."""
    def cost(model: qs.Model) -> float:
        return sum(c[1] if _int8(model, name) else c[0] for name, c in costs.items())

    def timer(reference: qs.Model, variant: qs.Model) -> PairedLatency:
        if calls is not None:
            calls.append("timed")
        r, v = cost(reference), cost(variant)
        speed = r / v
        return PairedLatency(Latency(r, r, 30, 1, 1), Latency(v, v, 30, 1, 1), speed, speed * 0.98, speed * 1.02)
    return timer


def _plan(model: qs.Model, config: qs.StaticInt8, timer):
    method = StaticInt8Method()
    prepared = method.prepare(model, config)
    data = {"x": np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)}
    quiet = qs.StaticInt8(measure=False, num_samples=8)
    stats = collect(prepared, qs.Dataset.from_arrays(data).bind(prepared.inputs), method.statistics(prepared, config))
    plan = method.plan(prepared, quiet, stats)
    return choose_regions(method, prepared, config, stats, plan, timer=timer), prepared


def test_regions_are_connected_integer_nodes_between_float_boundaries() -> None:
    model = _two_regions()
    q = qs.quantize(model, qs.StaticInt8(measure=False, num_samples=4),
                    {"x": np.zeros((4, 3, 8, 8), np.float32) + 0.5})
    regions = find_regions(model.ir.graph, q.plan.decisions)
    assert [set(r.nodes) for r in regions] == [{"conv_a", "relu_a"}, {"conv_b", "relu_b"}]


def test_a_region_slower_in_int8_is_kept_float_whole_and_recorded() -> None:
    # conv_a: 1 ms float, 2 ms int8 (loses); conv_b: 2 ms float, 1 ms int8 (wins)
    timer = fake_timer({"conv_a": (1.0, 2.0), "conv_b": (2.0, 1.0)})
    plan, _ = _plan(_two_regions(), qs.StaticInt8(num_samples=8), timer)
    decisions = {d.node: d for d in plan.decisions}
    assert decisions["conv_a"].action == "float" and "kept float for speed" in decisions["conv_a"].reason
    assert decisions["relu_a"].action == "float"  # the whole region, not just its kernel
    assert decisions["conv_b"].action == "quantized"
    assert sorted(r["decision"] for r in plan.extra["regions"]) == ["float", "int8"]
    lost = next(r for r in plan.extra["regions"] if r["decision"] == "float")
    assert (lost["float_ms"], lost["int8_ms"]) == (2.0, 3.0)  # model time with the region float / int8
    latency = plan.extra["latency"]
    assert latency["measured"] and latency["float_ms"] == 3.0 and latency["int8_ms"] == 2.0
    assert latency["verdict"] == "faster" and not plan.warnings


def test_when_int8_loses_everywhere_every_node_is_kept_float_and_the_plan_says_so() -> None:
    timer = fake_timer({"conv_a": (1.0, 2.0), "conv_b": (1.0, 2.0)})
    plan, prepared = _plan(_two_regions(), qs.StaticInt8(num_samples=8), timer)
    assert not plan.quantized_nodes
    convs = [d for d in plan.decisions if d.op_type == "Conv"]
    assert all(d.action == "float" and "kept float for speed" in d.reason for d in convs)
    latency = plan.extra["latency"]
    assert latency["fastest_int8"]["verdict"] == "slower" and latency["verdict"] == "same"
    assert any("kept every node float" in w and "--objective size" in w for w in plan.warnings)
    written = StaticInt8Method().apply(prepared, qs.StaticInt8(num_samples=8, measure=False), plan)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in written.ir.graph)


def _one_region() -> qs.Model:
    """``conv_in (3 input channels, 3x3) → Relu → conv_pw (1x1) → Relu``: one integer region of two kinds."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2, "w_in"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.2, "w_pw")]
    nodes = [
        helper.make_node("Conv", ["x", "w_in"], ["a"], name="conv_in", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_in"),
        helper.make_node("Conv", ["ra", "w_pw"], ["b"], name="conv_pw"),
        helper.make_node("Relu", ["b"], ["y"], name="relu_pw"),
    ]
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return qs.Model.from_proto(onnx.shape_inference.infer_shapes(proto))


def test_a_losing_kind_inside_the_only_region_is_found_and_kept_float() -> None:
    # the first conv loses in int8, the pointwise one wins: as a whole the region is a tie
    timer = fake_timer({"conv_in": (1.0, 2.0), "conv_pw": (2.0, 1.0)})
    plan, _ = _plan(_one_region(), qs.StaticInt8(num_samples=8), timer)
    decisions = {d.node: d for d in plan.decisions}
    assert decisions["conv_in"].action == "float" and "kept float for speed" in decisions["conv_in"].reason
    assert decisions["conv_pw"].action == "quantized"
    parts = {p["part"]: p for p in plan.extra["parts"]}
    assert parts["every Conv/few input channels (1 node(s))"]["decision"] == "float"
    assert parts["every Conv/pointwise (1 node(s))"]["decision"] == "int8"
    assert plan.extra["latency"]["verdict"] == "faster" and plan.extra["latency"]["speed"] == pytest.approx(1.5)


def test_a_region_clearly_faster_is_not_searched_further() -> None:
    calls: list[str] = []
    plan, _ = _plan(_one_region(), qs.StaticInt8(num_samples=8), fake_timer({"conv_in": (2.0, 1.0), "conv_pw": (2.0, 1.0)}, calls))
    assert "parts" not in plan.extra and calls == ["timed"]
    assert all(d.action != "float" for d in plan.decisions if d.op_type == "Conv")


@pytest.mark.parametrize("config", [qs.StaticInt8(num_samples=8, objective="accuracy"),
                                    qs.StaticInt8(num_samples=8, objective="size"),
                                    qs.StaticInt8(num_samples=8, measure=False)])
def test_no_timing_unless_asked(config: qs.StaticInt8) -> None:
    calls: list[str] = []
    plan, _ = _plan(_two_regions(), config, fake_timer({"conv_a": (1.0, 2.0)}, calls))
    assert calls == []
    assert plan.extra["latency"]["measured"] is False
    assert all(d.action != "float" for d in plan.decisions if d.op_type == "Conv")


def test_config_checks_and_command_line_flags() -> None:
    with pytest.raises(qs.ConfigError):
        qs.StaticInt8(objective="fastest")
    with pytest.raises(qs.ConfigError):
        qs.StaticInt8(target_threads=0)
    help_text = CliRunner().invoke(cli.main, ["quantize", "--help"]).output
    for flag in ("--objective", "--target-threads", "--no-measure"):
        assert flag in help_text


def test_real_measurement_on_the_digits_cnn_keeps_its_invariants(tmp_path: Path) -> None:
    model = qs.load(EXAMPLES / "digits_cnn.onnx")
    calib = qs.Dataset.from_npz(EXAMPLES / "digits_calib.npz")
    q = qs.quantize(model, qs.StaticInt8(num_samples=32, target_threads=1), calib)
    latency = q.plan.extra["latency"]
    # integer nodes, or (int8 measured slower here) every node float and a warning saying so
    assert q.plan.quantized_nodes or any("kept every node float" in w for w in q.plan.warnings)
    if latency["measured"]:  # a loaded machine may make the float model look too fast to time
        assert latency["threads"] == 1 and latency["batch"] == 1
        assert latency["float_ms"] > 0 and latency["int8_ms"] > 0
        assert latency["interval"][0] <= latency["speed"] <= latency["interval"][1]
        assert latency["verdict"] in ("faster", "same", "slower", "noisy")
        for region in q.plan.extra["regions"]:
            assert region["decision"] in ("int8", "float") and region["nodes"] >= 1
    out = tmp_path / "digits.onnx"
    result = CliRunner().invoke(cli.main, ["quantize", str(EXAMPLES / "digits_cnn.onnx"), "--calib",
                                           str(EXAMPLES / "digits_calib.npz"), "-o", str(out), "--no-measure"])
    assert result.exit_code == 0, result.output
    assert "speed against float: not measured (--no-measure)" in " ".join(result.output.split())


def test_variants_share_the_first_plans_smoothing_and_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search plans variants of a model the first plan already smoothed: they keep its SmoothQuant
    records (no second smoothing of the smoothed inputs) and quantize each weight once."""
    import tinymodels
    from quantscope.methods.static_int8 import latency
    from quantscope.methods.static_int8 import method as static_method

    model = qs.Model.from_proto(tinymodels.attention_block())
    x = np.random.default_rng(2).standard_normal((16, 16, 32)).astype(np.float32)
    x[..., [3, 17]] *= 40.0  # outlier channels: SmoothQuant smooths the projections' shared input
    data = {"x": x, "mask": np.ones((16, 16), np.float32)}
    method = StaticInt8Method()
    prepared = method.prepare(model, qs.StaticInt8(num_samples=16))
    request = method.statistics(prepared, qs.StaticInt8(num_samples=16))
    stats = collect(prepared, qs.Dataset.from_arrays(data).bind(prepared.inputs), request)
    unsearched = method.plan(method.prepare(model, qs.StaticInt8()), qs.StaticInt8(num_samples=16, measure=False), stats)
    assert unsearched.extra["smoothquant"]
    # q_proj loses in int8, the others win: the search plans variants with parts kept float
    timer = fake_timer({"q_proj": (1.0, 3.0), "k_proj": (1.0, 0.5), "v_proj": (1.0, 0.5), "out_proj": (1.0, 0.5)})
    monkeypatch.setattr(latency, "paired_timer", lambda *a, **k: timer)
    monkeypatch.setattr(latency, "_fastest_call_ms", lambda *a, **k: 1.0)
    quantized: list[str] = []
    original = static_method.weight_qparams
    monkeypatch.setattr(static_method, "weight_qparams", lambda w, *a, **k: quantized.append("w") or original(w, *a, **k))
    plan = method.plan(prepared, qs.StaticInt8(num_samples=16), stats)
    assert plan.extra["latency"]["measured"] and any(d.action == "float" and d.node == "q_proj" for d in plan.decisions)
    assert plan.extra["smoothquant"] == unsearched.extra["smoothquant"]
    assert len(quantized) <= len(unsearched.weights)  # each weight once, however many variants were planned
    written = method.apply(prepared, qs.StaticInt8(num_samples=16, measure=False), plan)
    assert sum(n.name.startswith("smoothquant/") for n in written.ir.graph) == len(plan.extra["smoothquant"])
