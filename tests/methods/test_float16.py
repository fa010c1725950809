"""float16 on tiny models: structure (boundary Casts, float16 tensors, blocked ops), numerics
against float (seeded inputs, stated tolerances), validity (onnx.checker), file size vs theory.

Tolerances: float16 keeps 11 significant bits (relative rounding error <= 2**-11 ≈ 4.9e-4 per
value). Through a few layers of dot products the error stays a small multiple of that, so we
ask for SQNR >= 45 dB (relative RMS error <= 0.56 %) against the float model.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import tinymodels
from quantscope.config import Float16, NodeSelector, config_from_dict
from quantscope.errors import ConfigError, SelectorError
from quantscope.methods.float16 import MIN_WEIGHT_ELEMENTS
from quantscope.numerics.half import FLOAT16_MAX, FLOAT16_TINY, to_float16
from quantscope.numerics.metrics import sqnr_db
from quantscope.quantization import sidecar_path
from quantscope.runtime import make_session, optimized_op_types, run

SQNR_FLOOR_DB = 45.0
F16 = int(ir.DataType.FLOAT16)
F32 = int(ir.DataType.FLOAT)


def _load(proto: onnx.ModelProto, tmp_path, name: str = "model.onnx") -> qs.Model:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return qs.load(path)


def _x(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _outputs(model: qs.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return run(make_session(model), feeds)


def _nodes(model: qs.Model) -> dict[str, ir.Node]:
    return {n.name: n for n in ir.traversal.RecursiveGraphIterator(model.ir.graph)}


def _check(model: qs.Model) -> None:
    onnx.checker.check_model(model.to_proto(), full_check=True)


def _typed_ops() -> onnx.ModelProto:
    """MatMul, a blocked CumSum, Constant(value_float), ConstantOfShape, Cast to float, a float64 branch."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("CumSum", ["h", "axis"], ["cs"], name="cumsum"),
        helper.make_node("Constant", [], ["half"], name="const_half", value_float=0.5),
        helper.make_node("Mul", ["cs", "half"], ["m"], name="scale"),
        helper.make_node("Shape", ["m"], ["s"], name="shape"),
        helper.make_node("ConstantOfShape", ["s"], ["ones"], name="ones",
                         value=numpy_helper.from_array(np.array([0.25], np.float32))),
        helper.make_node("Add", ["m", "ones"], ["a"], name="add_ones"),
        helper.make_node("Cast", ["s"], ["sf"], name="shape_to_float", to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["sf"], ["sfm"], name="shape_max", keepdims=0),
        helper.make_node("Div", ["a", "sfm"], ["b"], name="div_shape"),
        helper.make_node("Cast", ["b"], ["d"], name="to_double", to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["d", "c64"], ["d2"], name="mul_double"),
        helper.make_node("Cast", ["d2"], ["y2"], name="from_double", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["b"], ["y"], name="relu"),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 8)) * 0.3).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
        numpy_helper.from_array(np.array(1.0 / 3.0, np.float64), "c64"),
    ]
    graph = helper.make_graph(
        nodes, "typed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [2, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _if_model() -> onnx.ModelProto:
    """An If whose branches hold MatMuls on a captured outer tensor (weights inside each branch)."""
    rng = np.random.default_rng(5)

    def branch(name: str) -> onnx.GraphProto:
        w = numpy_helper.from_array((rng.standard_normal((8, 8)) * 0.3).astype(np.float32), f"{name}_w")
        return helper.make_graph(
            [helper.make_node("MatMul", ["r", f"{name}_w"], [f"{name}_out"], name=f"{name}_mm"),
             helper.make_node("Tanh", [f"{name}_out"], [f"{name}_t"], name=f"{name}_tanh")],
            name, [], [helper.make_tensor_value_info(f"{name}_t", TensorProto.FLOAT, [2, 8])], [w],
        )

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("If", ["cond"], ["z"], name="branch", then_branch=branch("then"),
                         else_branch=branch("else")),
        helper.make_node("Add", ["z", "r"], ["y"], name="residual"),
    ]
    graph = helper.make_graph(
        nodes, "with_if",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


# -- structure, numerics, validity ---------------------------------------------------------
def test_mlp_float16_structure_numerics_validity(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, Float16())

    graph = q.model.ir.graph
    # the boundary: float32 in and out, a Cast right after the input and right before the output
    assert [v.dtype for v in graph.inputs] == [ir.DataType.FLOAT]
    assert [v.dtype for v in graph.outputs] == [ir.DataType.FLOAT]
    assert [v.name for v in graph.outputs] == ["y"]
    first = [u for u, _ in graph.inputs[0].uses()]
    assert [(n.op_type, n.attributes["to"].as_int()) for n in first] == [("Cast", F16)]
    last = graph.outputs[0].producer()
    assert last.op_type == "Cast" and last.attributes["to"].as_int() == F32
    assert q.model.op_histogram()["Cast"] == 2  # nothing else needed a Cast
    # every weight and bias is float16, and every node computes on float16 tensors
    assert {v.dtype for v in graph.initializers.values()} == {ir.DataType.FLOAT16}
    for node in graph:
        if node.op_type != "Cast":
            assert all(v.dtype == ir.DataType.FLOAT16 for v in [*node.inputs, *node.outputs]), node
    decisions = {d.node: d for d in q.plan.decisions}
    assert all(decisions[n].action == "quantized" for n in ("fc1", "fc1_bias", "relu1", "fc2", "relu2", "fc3"))
    assert all("float16 compute" in d.reason for d in decisions.values())
    _check(q.model)

    x = _x((16, 64), seed=1)
    ref = _outputs(model, {"x": x})[0]
    got = _outputs(q.model, {"x": x})[0]
    assert got.dtype == np.float32
    assert sqnr_db(ref, got) >= SQNR_FLOOR_DB
    assert not np.array_equal(ref, got)  # weights really were rounded


def test_excluded_and_blocked_nodes_stay_float32_between_casts(tmp_path) -> None:
    model = _load(_typed_ops(), tmp_path)
    q = qs.quantize(model, Float16(exclude=NodeSelector(names=("relu",))))
    nodes = _nodes(q.model)
    decisions = {d.node: d for d in q.plan.decisions}

    assert decisions["cumsum"].action == "float" and "block list" in decisions["cumsum"].reason
    assert decisions["relu"].action == "float" and "excluded by name 'relu'" in decisions["relu"].reason
    assert decisions["mm"].action == "quantized"
    for name in ("cumsum", "relu"):
        node = nodes[name]
        src = node.inputs[0].producer()  # a Cast back to float32 feeds it ...
        assert src.op_type == "Cast" and src.attributes["to"].as_int() == F32
        assert src.inputs[0].dtype == ir.DataType.FLOAT16
        assert node.outputs[0].dtype == ir.DataType.FLOAT
    # ... and a Cast to float16 takes the blocked CumSum's output back into the float16 region
    after = [u for u, _ in nodes["cumsum"].outputs[0].uses()]
    assert [(n.op_type, n.attributes["to"].as_int()) for n in after] == [("Cast", F16)]
    _check(q.model)


def test_typed_attributes_constants_and_float64(tmp_path) -> None:
    model = _load(_typed_ops(), tmp_path)
    q = qs.quantize(model, Float16())
    nodes = _nodes(q.model)
    decisions = {d.node: d for d in q.plan.decisions}

    # Cast(int64 -> float) now casts to float16; ConstantOfShape's value is a float16 tensor
    assert nodes["shape_to_float"].attributes["to"].as_int() == F16
    value = nodes["ones"].attributes["value"].as_tensor()
    assert value.dtype == ir.DataType.FLOAT16 and float(value.numpy()[0]) == 0.25
    assert nodes["ones"].outputs[0].dtype == ir.DataType.FLOAT16
    # the scalar Constant (value_float) holds a float16 tensor now (or was lifted to one)
    half = nodes["scale"].inputs[1]
    assert half.dtype == ir.DataType.FLOAT16
    # float64 stays float64: the Cast to double reads float16, the Mul runs in double
    assert nodes["to_double"].attributes["to"].as_int() == int(ir.DataType.DOUBLE)
    assert nodes["mul_double"].outputs[0].dtype == ir.DataType.DOUBLE
    assert decisions["mul_double"].action == "float"
    assert q.model.ir.graph.initializers["c64"].dtype == ir.DataType.DOUBLE
    # Cast(double -> float) becomes Cast(double -> float16), and the output is cast back to float32
    assert nodes["from_double"].attributes["to"].as_int() == F16
    assert [v.dtype for v in q.model.ir.graph.outputs] == [ir.DataType.FLOAT, ir.DataType.FLOAT]
    _check(q.model)

    x = _x((2, 8), seed=2)
    for ref, got in zip(_outputs(model, {"x": x}), _outputs(q.model, {"x": x}), strict=True):
        assert sqnr_db(ref, got) >= SQNR_FLOOR_DB


def test_if_subgraphs_are_converted_inside_with_float32_boundaries(tmp_path) -> None:
    model = _load(_if_model(), tmp_path)
    q = qs.quantize(model, Float16())
    decisions = {d.node: d for d in q.plan.decisions}
    nodes = _nodes(q.model)

    assert decisions["branch"].action == "float" and "control flow" in decisions["branch"].reason
    for name in (
        "branch/then_branch/then_mm", "branch/else_branch/else_mm", "branch/then_branch/then_tanh",
        "branch/else_branch/else_tanh", "relu", "residual",
    ):  # body labels say which branch they sit in
        assert decisions[name].action == "quantized", decisions[name]
    if_node = nodes["branch"]
    assert if_node.outputs[0].dtype == ir.DataType.FLOAT
    for key in ("then_branch", "else_branch"):
        body = if_node.attributes[key].as_graph()
        # the branch weights (lifted to the main graph, read from the body) are float16
        assert {v.dtype for n in body for v in n.inputs if v is not None and v.is_initializer()} == {ir.DataType.FLOAT16}
        assert [v.dtype for v in body.outputs] == [ir.DataType.FLOAT]
        assert body.outputs[0].producer().op_type == "Cast"
        mm = next(n for n in body if n.op_type == "MatMul")
        assert mm.inputs[0].dtype == ir.DataType.FLOAT16  # the captured Relu output, in float16
    _check(q.model)

    x = _x((2, 8), seed=4)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        assert sqnr_db(_outputs(model, feeds)[0], _outputs(q.model, feeds)[0]) >= SQNR_FLOOR_DB


def test_out_of_range_mask_constant_is_clamped_not_infinite(tmp_path) -> None:
    model = _load(tinymodels.attention_block(), tmp_path)
    q = qs.quantize(model, Float16())

    assert any("clamped to ±65504" in w for w in q.plan.warnings)
    assert q.plan.extra["clamped_values"]["large"] >= 1
    for v in q.model.ir.graph.initializers.values():
        if v.dtype == ir.DataType.FLOAT16:
            assert np.all(np.isfinite(v.const_value.numpy())), v.name
    _check(q.model)

    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 16, 32)).astype(np.float32)
    mask = np.ones((4, 16), np.float32)
    mask[:, 11:] = 0.0  # padding: the clamped -65504 must still mask these keys out
    ref = _outputs(model, {"x": x, "mask": mask})[0]
    got = _outputs(q.model, {"x": x, "mask": mask})[0]
    assert np.all(np.isfinite(got))
    assert sqnr_db(ref, got) >= SQNR_FLOOR_DB


def test_weights_only_stores_float16_and_computes_float32(tmp_path) -> None:
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    q = qs.quantize(model, Float16(weights_only=True))
    graph = q.model.ir.graph

    halves = {n: v for n, v in graph.initializers.items() if v.dtype == ir.DataType.FLOAT16}
    # 3 weights + 2 conv biases (BatchNorm folded into conv1); the 10-element fc bias is below
    # MIN_WEIGHT_ELEMENTS and stays float32
    assert len(halves) == 5
    small = {n: v.const_value.size for n, v in graph.initializers.items() if n not in halves}
    assert small and all(size < 16 for size in small.values()), small
    for value in halves.values():
        users = [u for u, _ in value.uses()]
        assert [(u.op_type, u.attributes["to"].as_int()) for u in users] == [("Cast", F32)]
    for node in graph:  # every compute node reads and writes float32
        if node.op_type != "Cast":
            assert all(v.dtype == ir.DataType.FLOAT for v in [*node.inputs, *node.outputs]), node
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["conv1"].action == "quantized" and "computes in float32" in decisions["conv1"].reason
    assert decisions["relu1"].action == "float"
    assert q.plan.extra["mode"] == "weights-only"
    # ONNX Runtime folds the weight Casts at load: no Cast is left to run
    assert "Cast" not in optimized_op_types(q.model, optimization="basic")
    _check(q.model)

    x = _x((4, 3, 16, 16), seed=7)
    assert sqnr_db(_outputs(model, {"x": x})[0], _outputs(q.model, {"x": x})[0]) >= SQNR_FLOOR_DB


@pytest.mark.parametrize("weights_only", [False, True])
def test_file_size_is_half_of_float_as_theory_says(tmp_path, weights_only: bool) -> None:
    model = _load(tinymodels.wide_mlp(), tmp_path, "wide.onnx")
    q = qs.quantize(model, Float16(weights_only=weights_only))
    path = q.save(tmp_path / f"wide.f16.{weights_only}.onnx")

    float_size = (tmp_path / "wide.onnx").stat().st_size
    min_elements = MIN_WEIGHT_ELEMENTS if weights_only else 1
    weight_bytes = sum(
        v.const_value.nbytes for v in model.ir.graph.initializers.values() if v.const_value.size >= min_elements
    )
    # theory: every float32 weight byte becomes half a byte; the graph itself is a few hundred bytes
    theory = (float_size - weight_bytes / 2) / float_size
    ratio = path.stat().st_size / float_size
    print(f"\nwide MLP float16 (weights_only={weights_only}): size ratio {ratio:.4f}, theory {theory:.4f}")
    assert abs(ratio - theory) < 0.01
    assert 0.49 < ratio < 0.52
    assert q.plan.extra["weight_bytes"]["float"] == weight_bytes


def test_sidecar_records_config_and_per_node_plan(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, Float16(exclude=NodeSelector(op_types=("Relu",))))
    path = q.save(tmp_path / "mlp.f16.onnx")
    side = json.loads(sidecar_path(path).read_text())

    assert side["config"]["method"] == "float16" and side["config"]["weights_only"] is False
    assert config_from_dict(side["config"]) == q.config
    decisions = {d["node"]: d for d in side["plan"]["decisions"]}
    assert decisions["relu1"]["action"] == "float" and "op type 'Relu'" in decisions["relu1"]["reason"]
    assert decisions["fc1"]["action"] == "quantized"
    assert {w["dtype"] for w in side["plan"]["weights"]} == {"float16"}
    assert "float32_between_casts" in side["plan"]["extra"]["ort_cpu"]


def test_caller_model_is_not_modified(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    before = model.to_proto().SerializeToString(deterministic=True)
    qs.quantize(model, Float16())
    qs.quantize(model, Float16(weights_only=True))
    assert model.to_proto().SerializeToString(deterministic=True) == before


def test_bad_config_and_selectors_fail_with_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match="weights_only"):
        Float16(weights_only="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="block_ops"):
        Float16(block_ops="Resize")  # type: ignore[arg-type]
    model = _load(tinymodels.mlp(), tmp_path)
    with pytest.raises(SelectorError, match="op type 'Conv'"):
        qs.quantize(model, Float16(exclude=NodeSelector(op_types=("Conv",))))


def test_cli_quantize_float16_weights_only(tmp_path) -> None:
    from click.testing import CliRunner

    from quantscope.cli import main

    src = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), str(src))
    out = tmp_path / "mlp.f16.onnx"
    result = CliRunner().invoke(main, ["quantize", str(src), "--method", "float16", "--weights-only", "-o", str(out)])
    assert result.exit_code == 0, result.output
    side = json.loads(sidecar_path(out).read_text())
    assert side["config"]["weights_only"] is True
    assert any(d["action"] == "quantized" for d in side["plan"]["decisions"])


# -- numerics: the float16 rounding itself -------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 64), elements=st.floats(-1e6, 1e6, width=32)))
def test_to_float16_bounds(x: np.ndarray) -> None:
    conv = to_float16(x)
    h = conv.array.astype(np.float32)
    assert conv.array.dtype == np.float16 and np.all(np.isfinite(h))
    inside = np.abs(x) <= FLOAT16_MAX
    # in range: round to nearest with 11 significant bits, or the subnormal spacing near zero
    bound = np.maximum(np.abs(x) * 2.0**-11, FLOAT16_TINY)
    assert np.all(np.abs(h - x)[inside] <= bound[inside])
    assert np.all(np.abs(h[~inside]) == FLOAT16_MAX) and np.all(np.sign(h[~inside]) == np.sign(x[~inside]))
    assert conv.clamped_large == int((~inside).sum())
    assert np.all((h != 0) == (x != 0))  # nothing non-zero flushes to zero


def test_to_float16_keeps_nan_inf_and_counts_tiny() -> None:
    conv = to_float16(np.array([np.nan, np.inf, -np.inf, 1e-12, -1e-30, 0.0, -3.4e38], np.float32))
    h = conv.array
    assert np.isnan(h[0]) and h[1] == np.inf and h[2] == -np.inf
    assert h[3] == np.float16(FLOAT16_TINY) and h[4] == -np.float16(FLOAT16_TINY) and h[5] == 0
    assert h[6] == -FLOAT16_MAX
    assert (conv.raised_tiny, conv.clamped_large) == (2, 1)
