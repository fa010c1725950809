"""dynamic-int8 on tiny models: structure, numerics (against float and against an exact NumPy
simulation), validity, ONNX Runtime's fused integer kernels, file size, plan and sidecar.

Run with ``-s`` to see the measured values.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import tinymodels
from quantscope.config import DynamicInt8, NodeSelector
from quantscope.graph.queries import const_array
from quantscope.numerics.affine import dequantize
from quantscope.numerics.dynamic import dynamic_matmul, dynamic_qparams, dynamic_quantize
from quantscope.numerics.metrics import sqnr_db
from quantscope.quantization import sidecar_path
from quantscope.runtime import int16_saturation_risk, make_session, optimized_op_types, run

FUSED_KERNELS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def _load(proto: onnx.ModelProto, tmp_path, name: str = "model.onnx") -> qs.Model:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return qs.load(path)


def _x(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _out(model: qs.Model, feeds: dict[str, np.ndarray], optimization: str = "all") -> np.ndarray:
    return run(make_session(model, optimization=optimization), feeds)[0]  # type: ignore[arg-type]


def _inits(model: qs.Model) -> dict[str, np.ndarray]:
    return {name: const_array(v) for name, v in model.ir.graph.initializers.items()}  # type: ignore[misc]


def _check(model: qs.Model) -> None:
    onnx.checker.check_model(model.to_proto(), full_check=True)


def _decisions(q: qs.QuantizedModel) -> dict[str, qs.NodeDecision]:
    return {d.node: d for d in q.plan.decisions}


def _fused_kernels(model: qs.Model) -> int:
    ops = optimized_op_types(model)
    return sum(ops.get(k, 0) for k in FUSED_KERNELS)


# --------------------------------------------------------------------------- MatMul / Gemm


def test_mlp_structure_numerics_validity_kernels(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    before = model.serialize()
    q = qs.quantize(model, DynamicInt8())  # no data: nothing is calibrated
    assert model.serialize() == before  # the caller's model is untouched

    d = _decisions(q)
    assert set(d) == {"fc1", "fc1_bias", "relu1", "fc2", "relu2", "fc3"}  # every node has a decision
    for name in ("fc1", "fc2", "fc3"):
        assert d[name].action == "quantized" and "DynamicQuantizeLinear" in d[name].reason
    assert d["fc1_bias"].action == "fused" and "fc1" in d["fc1_bias"].reason
    assert d["relu1"].action == "float" and d["relu1"].reason

    ops = q.model.op_histogram()
    assert ops["DynamicQuantizeLinear"] == 3 and ops["MatMulInteger"] == 3
    assert "MatMul" not in ops and "Gemm" not in ops
    inits = _inits(q.model)
    assert sorted(n for n, a in inits.items() if a.dtype == np.int8 and a.ndim == 2) == [
        "w1_quantized", "w2_quantized", "w3_quantized",
    ]
    assert not [n for n, a in inits.items() if a.dtype == np.float32 and a.size > 128]  # no float weight left
    _check(q.model)

    x = _x((32, 64), seed=1)
    ref, got = _out(model, {"x": x}), _out(q.model, {"x": x})
    sqnr = sqnr_db(ref, got)
    print(f"\nmlp dynamic-int8 SQNR {sqnr:.1f} dB")
    assert sqnr >= 25.0  # measured 30.7 dB (|w| <= 64 on this CPU, 8-bit activations, 3 layers)

    # ONNX Runtime runs every product as one fused integer kernel, biases folded in
    optimized = optimized_op_types(q.model)
    assert optimized.get("DynamicQuantizeMatMul", 0) == 3, optimized
    assert not {"MatMulInteger", "Cast", "Add", "MatMul", "Gemm"} & set(optimized), optimized


@pytest.mark.parametrize("optimization", ["none", "all"])
def test_mlp_matches_an_exact_numpy_simulation(tmp_path, optimization: str) -> None:
    """With the weights this CPU gets ([-64, 64] where int16 sums saturate), ORT equals exact integer maths."""
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    w = _inits(q.model)
    x = _x((32, 64), seed=2, scale=3.0)  # wide inputs: uint8 values reach 0 and 255
    h = np.maximum(dynamic_matmul(x, w["w1_quantized"], w["w1_scale"]) + w["b1"], 0)
    h = np.maximum(dynamic_matmul(h, w["w2_quantized"], w["w2_scale"]) + w["b2"], 0)
    expected = dynamic_matmul(h, w["w3_quantized"], w["w3_scale"]) + w["b3"]
    got = _out(q.model, {"x": x}, optimization)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def _matmul_model(w: np.ndarray, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[1]])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.skipif(not int16_saturation_risk(), reason="this CPU's int8 dot products do not saturate")
def test_full_range_weights_saturate_on_this_cpu_and_auto_avoids_it(tmp_path) -> None:
    """The trap reduce_range=None (auto) avoids: 8-bit weights x uint8 activations overflow int16 pair sums."""
    model = _load(_matmul_model(_x((64, 64), seed=3, scale=0.2)), tmp_path)
    x = _x((32, 64), seed=4, scale=3.0)
    errors = {}
    for reduce_range in (False, None):
        q = qs.quantize(model, DynamicInt8(reduce_range=reduce_range))
        w = _inits(q.model)
        exact = dynamic_matmul(x, w["w_quantized"], w["w_scale"])
        errors[reduce_range] = float(np.abs(_out(q.model, {"x": x}) - exact).max()) / float(np.abs(exact).max())
        bits = 8 if reduce_range is False else 7
        assert all(wq.bits == bits for wq in q.plan.weights)
        assert int(np.abs(w["w_quantized"]).max()) == {8: 127, 7: 64}[bits]
    print(f"\nmax |ORT - exact integer product| / max |y|: full range {errors[False]:.4f}, auto {errors[None]:.2e}")
    assert errors[False] > 1e-3  # saturated sums
    assert errors[None] < 1e-5
    warned = qs.quantize(model, DynamicInt8(reduce_range=False)).plan.warnings
    assert any("reduce_range=False" in w and "saturate" in w for w in warned)


def test_attention_projections_quantized_mask_and_scores_float(tmp_path) -> None:
    model = _load(tinymodels.attention_block(), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    d = _decisions(q)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert d[name].action == "quantized", d[name]
        assert d[name.replace("proj", "bias")].action == "fused"
    for name in ("scores", "context"):  # activation x activation: nothing constant to store as int8
        assert d[name].action == "float" and "no constant weight" in d[name].reason
    for name in ("mask_invert", "mask_scale", "scores_mask", "softmax", "layernorm"):
        assert d[name].action == "float"
    _check(q.model)
    rng = np.random.default_rng(5)
    feeds = {"x": _x((4, 16, 32), seed=6), "mask": (rng.random((4, 16)) > 0.25).astype(np.float32)}
    sqnr = sqnr_db(_out(model, feeds), _out(q.model, feeds))
    print(f"\nattention block dynamic-int8 SQNR {sqnr:.1f} dB")
    assert sqnr >= 32.0  # measured 40.4 dB
    assert _fused_kernels(q.model) == 4  # q, k, v share one run-time quantization of x


def _masked_projection_model() -> onnx.ModelProto:
    """A projection that reads a tensor carrying an additive finfo.min mask, next to a clean one."""
    rng = np.random.default_rng(0)
    fmin = np.finfo(np.float32).min
    nodes = [
        helper.make_node("Sub", ["one", "mask"], ["inv"], name="mask_invert"),
        helper.make_node("Mul", ["inv", "fmin"], ["madd"], name="mask_scale"),
        helper.make_node("Add", ["x", "madd"], ["xm"], name="apply_mask"),
        helper.make_node("MatMul", ["xm", "w1"], ["y1"], name="masked_proj"),
        helper.make_node("Softmax", ["xm"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "w2"], ["y2"], name="clean_proj"),
    ]
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(fmin, np.float32), "fmin"),
        numpy_helper.from_array(_x((8, 8), seed=1), "w1"),
        numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes, "masked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_projection_reading_a_mask_sentinel_stays_float(tmp_path) -> None:
    model = _load(_masked_projection_model(), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    d = _decisions(q)
    assert d["masked_proj"].action == "float" and "sentinel" in d["masked_proj"].reason
    assert "fmin" in d["masked_proj"].reason
    assert d["clean_proj"].action == "quantized"  # Softmax bounds the values again
    feeds = {"x": _x((4, 8), seed=2), "mask": np.ones((4, 8), np.float32)}
    feeds["mask"][:, -2:] = 0.0
    ref, got = run(make_session(model), feeds), run(make_session(q.model), feeds)
    np.testing.assert_array_equal(ref[0], got[0])  # the masked product is the float one, bit for bit
    assert sqnr_db(ref[1], got[1]) >= 30.0


# --------------------------------------------------------------------------- Conv (opt-in)


def test_conv_is_opt_in_and_warned(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    default = qs.quantize(model, DynamicInt8())
    d = _decisions(default)
    assert d["conv1"].action == "float" and "not among this method's op types" in d["conv1"].reason
    assert d["fc"].action == "quantized"
    assert not default.plan.warnings

    with caplog.at_level(logging.WARNING, logger="quantscope.methods.dynamic_int8"):
        q = qs.quantize(model, DynamicInt8(op_types=("MatMul", "Gemm", "Conv")))
    assert any("ConvInteger" in w and "slower" in w for w in q.plan.warnings)
    assert any("ConvInteger" in r.getMessage() for r in caplog.records)
    d = _decisions(q)
    assert d["conv1"].action == "quantized" and d["conv2"].action == "quantized"
    ops = q.model.op_histogram()
    assert ops["ConvInteger"] == 2 and "Conv" not in ops and "BatchNormalization" not in ops
    _check(q.model)
    x = _x((8, 3, 16, 16), seed=3)
    sqnr = sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x}))
    print(f"\nconv_bn_relu dynamic-int8 with Conv SQNR {sqnr:.1f} dB")
    assert sqnr >= 30.0  # measured 36.9 dB
    assert optimized_op_types(q.model).get("ConvInteger", 0) == 2


# --------------------------------------------------------------------------- Gemm forms, opsets


def _gemm_model(*, trans_b: int, beta: float | None, with_c: bool) -> onnx.ModelProto:
    w = _x((16, 24) if trans_b else (24, 16), seed=7, scale=0.3)
    attrs = {"transB": trans_b} | ({"beta": beta} if beta is not None else {})
    inputs = ["x", "w"] + (["c"] if with_c else [])
    inits = [numpy_helper.from_array(w, "w")]
    if with_c:
        inits.append(numpy_helper.from_array(_x((16,), seed=8), "c"))
    graph = helper.make_graph(
        [helper.make_node("Gemm", inputs, ["y"], name="gemm", **attrs)], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    ("trans_b", "beta", "with_c"), [(1, None, True), (0, None, True), (1, 0.5, True), (0, None, False)]
)
def test_gemm_forms(tmp_path, trans_b: int, beta: float | None, with_c: bool) -> None:
    model = _load(_gemm_model(trans_b=trans_b, beta=beta, with_c=with_c), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    assert _decisions(q)["gemm"].action == "quantized"
    assert "Gemm" not in q.model.op_histogram()
    _check(q.model)
    x = _x((16, 24), seed=9)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 33.0
    assert _fused_kernels(q.model) == 1


def test_old_opset_is_upgraded_and_loads(tmp_path) -> None:
    model = _load(tinymodels.mlp(opset=11), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    assert q.model.opset >= 13 and any("opset upgraded" in n for n in q.plan.notes)
    x = _x((4, 64), seed=1)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 25.0


def test_per_tensor_weights(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8(per_channel=False))
    assert all(wq.axis is None and wq.channels == 1 for wq in q.plan.weights)
    assert all(a.shape == () for n, a in _inits(q.model).items() if n.endswith("_scale"))
    x = _x((16, 64), seed=1)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 22.0
    assert _fused_kernels(q.model) == 3


def test_as_good_as_onnxruntime_quantize_dynamic(tmp_path) -> None:
    """The peer, with the same choices (per channel, 7-bit where needed): we must not be worse."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = tmp_path / "wide.onnx"
    onnx.save(tinymodels.wide_mlp(), str(path))
    model = qs.load(path)
    q = qs.quantize(model, DynamicInt8())
    peer_path = tmp_path / "wide.ort.onnx"
    quantize_dynamic(
        str(path), str(peer_path), per_channel=True, reduce_range=int16_saturation_risk(),
        weight_type=QuantType.QInt8,
    )
    x = _x((64, 256), seed=11)
    ref = _out(model, {"x": x})
    ours, peer = sqnr_db(ref, _out(q.model, {"x": x})), sqnr_db(ref, _out(qs.load(peer_path), {"x": x}))
    print(f"\nwide_mlp SQNR: quantscope {ours:.2f} dB, onnxruntime.quantization {peer:.2f} dB")
    assert ours >= peer - 0.5


# --------------------------------------------------------------------------- selection, sharing, errors


def test_exclusion_by_name_pattern_and_op_type(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8(exclude=NodeSelector(names=("fc1",), patterns=("^fc3$",))))
    d = _decisions(q)
    assert d["fc1"].action == "float" and d["fc1"].reason == "excluded by name 'fc1'"
    assert d["fc3"].action == "float" and "pattern" in d["fc3"].reason
    assert d["fc2"].action == "quantized"
    assert d["fc1_bias"].action == "float"  # its MatMul stays float: nothing to fold into
    q2 = qs.quantize(model, DynamicInt8(exclude=NodeSelector(op_types=("Gemm",))))
    assert [x.node for x in q2.plan.quantized_nodes] == ["fc1"]
    with pytest.raises(qs.SelectorError, match="matched no node"):
        qs.quantize(model, DynamicInt8(exclude=NodeSelector(names=("fc9",))))


def test_excluded_bias_add_is_left_alone(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8(exclude=NodeSelector(names=("fc1_bias",))))
    d = _decisions(q)
    assert d["fc1"].action == "quantized" and d["fc1_bias"].action == "float"
    x = _x((8, 64), seed=1)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 25.0


def test_shared_weight_is_stored_once(tmp_path) -> None:
    model = _load(tinymodels.shared_weight_mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    assert len(q.plan.quantized_nodes) == 3
    int8 = [n for n, a in _inits(q.model).items() if a.dtype == np.int8 and a.ndim == 2]
    assert len(int8) == 2, int8
    assert any("share an initializer" in n for n in q.plan.notes)
    x = _x((8, 64), seed=1)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 28.0  # measured 33.2 dB


def test_nothing_to_quantize_is_an_error(tmp_path) -> None:
    model = _load(tinymodels.no_quantizable_ops(), tmp_path)
    with pytest.raises(qs.UnsupportedModelError, match="nothing to quantize"):
        qs.quantize(model, DynamicInt8())
    conv_only = _load(tinymodels.residual_block(), tmp_path, "residual.onnx")
    with pytest.raises(qs.UnsupportedModelError, match="Conv is not among"):
        qs.quantize(conv_only, DynamicInt8())


def test_deterministic(tmp_path) -> None:
    model = _load(tinymodels.attention_block(), tmp_path)
    a = qs.quantize(model, DynamicInt8()).model.serialize()
    b = qs.quantize(model, DynamicInt8()).model.serialize()
    assert a == b


# --------------------------------------------------------------------------- file size, sidecar, CLI


def test_file_size_matches_theory_on_a_weight_dominated_model(tmp_path) -> None:
    model = _load(tinymodels.wide_mlp(), tmp_path, "wide.onnx")
    q = qs.quantize(model, DynamicInt8())
    path = q.save(tmp_path / "wide.dyn.onnx")
    float_size = (tmp_path / "wide.onnx").stat().st_size
    size = path.stat().st_size
    # theory: one byte per weight, a float32 scale per output channel, float32 biases
    weights = sum(int(np.prod(w.shape)) for n, w in _inits(model).items() if n.startswith("w"))
    channels = sum(wq.channels for wq in q.plan.weights)
    biases = sum(int(np.prod(w.shape)) for n, w in _inits(model).items() if n.startswith("b"))
    theory = weights + 4 * channels + 4 * biases
    print(f"\nwide_mlp: float {float_size} B, dynamic-int8 {size} B ({size / float_size:.3f}), theory {theory} B")
    assert size / float_size <= 0.30
    assert theory <= size <= theory + 4096  # graph structure and names: a few KB


def test_sidecar_records_the_plan(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    path = q.save(tmp_path / "mlp.dyn.onnx")
    side = json.loads(sidecar_path(path).read_text())
    assert side["config"]["method"] == "dynamic-int8"
    assert {d["node"]: d["action"] for d in side["plan"]["decisions"]} == {
        "fc1": "quantized", "fc1_bias": "fused", "relu1": "float",
        "fc2": "quantized", "relu2": "float", "fc3": "quantized",
    }
    assert [w["tensor"] for w in side["plan"]["weights"]] == ["w1", "w2", "w3"]
    assert side["plan"]["extra"]["weight_range"] in ([-64, 64], [-127, 127])
    assert qs.QuantPlan.from_dict(side["plan"]) == q.plan
    assert qs.load(path).ir.metadata_props["quantscope.method"] == "dynamic-int8"


def test_cli_quantize_dynamic_int8(tmp_path) -> None:
    from click.testing import CliRunner

    from quantscope import cli

    src = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), str(src))
    out = tmp_path / "mlp.dyn.onnx"
    result = CliRunner().invoke(
        cli.main,
        ["quantize", str(src), "--method", "dynamic-int8", "-o", str(out), "--exclude-name", "fc3"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    side = json.loads(sidecar_path(out).read_text())
    d = {x["node"]: x for x in side["plan"]["decisions"]}
    assert d["fc3"]["action"] == "float" and d["fc1"]["action"] == "quantized"
    assert qs.load(out).op_histogram()["MatMulInteger"] == 2
    bad = CliRunner().invoke(
        cli.main, ["quantize", str(src), "--method", "dynamic-int8", "-o", str(tmp_path / "x.onnx"),
                   "--exclude-op", "Conv"],
    )
    assert bad.exit_code == 3


# --------------------------------------------------------------------------- numerics


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(1, 64), elements=finite))
def test_dynamic_quantize_round_trip_bound(x: np.ndarray) -> None:
    q, qp = dynamic_quantize(x)
    assert q.dtype == np.uint8
    scale = float(qp.scale)
    back = dequantize(q, qp)
    assert np.all(np.abs(back - x) <= scale / 2 + 1e-6 * max(1.0, float(np.abs(x).max())))
    assert dequantize(np.array(qp.zero_point), qp) == 0.0  # zero is exact


def test_dynamic_qparams_follow_the_onnx_definition() -> None:
    x = np.array([-1.0, 0.5, 3.0], np.float32)
    qp = dynamic_qparams(x)
    assert np.isclose(float(qp.scale), 4.0 / 255) and int(qp.zero_point) == 64  # round(1 / (4/255)) = 64
    positive = dynamic_qparams(np.array([2.0, 5.0], np.float32))
    assert int(positive.zero_point) == 0  # the range always includes 0
    zeros = dynamic_qparams(np.zeros(4, np.float32))
    assert float(zeros.scale) == 1.0 and int(zeros.zero_point) == 0
    with pytest.raises(qs.ConfigError):
        dynamic_qparams(np.array([np.inf], np.float32))


def test_dynamic_quantize_linear_matches_onnxruntime() -> None:
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])], "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in
         (("q", TensorProto.UINT8, [None]), ("s", TensorProto.FLOAT, []), ("z", TensorProto.UINT8, []))],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    session = make_session(proto.SerializeToString())
    for seed in range(5):
        x = _x((1000,), seed=seed, scale=10.0 ** (seed - 2)) + np.float32(seed - 2)
        q, s, z = session.run(None, {"x": x})
        ours, qp = dynamic_quantize(x)
        assert float(s) == float(qp.scale) and int(z) == int(qp.zero_point)
        assert np.abs(q.astype(int) - ours.astype(int)).max() <= 1
        assert np.mean(q == ours) >= 0.999


def test_grouped_conv_stays_float_with_a_reason(tmp_path) -> None:
    c = 8
    nodes = [
        helper.make_node("Conv", ["x", "wd"], ["d"], name="depthwise", group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "wp"], ["y"], name="pointwise"),
    ]
    graph = helper.make_graph(
        nodes, "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16, 8, 8])],
        [numpy_helper.from_array(_x((c, 1, 3, 3), seed=1, scale=0.3), "wd"),
         numpy_helper.from_array(_x((16, c, 1, 1), seed=2, scale=0.3), "wp")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = _load(proto, tmp_path)
    q = qs.quantize(model, DynamicInt8(op_types=("Conv",)))
    d = _decisions(q)
    assert d["depthwise"].action == "float" and "group=8" in d["depthwise"].reason
    assert d["pointwise"].action == "quantized"
    assert q.model.op_histogram()["ConvInteger"] == 1
    x = _x((2, c, 8, 8), seed=3)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 33.0


# --------------------------------------------------------------------------- Gather (embedding tables)


@pytest.mark.parametrize("per_channel", [True, False])
def test_embedding_table_is_gathered_as_int8(tmp_path, per_channel: bool) -> None:
    proto = tinymodels.embedding_mlp()
    model = _load(proto, tmp_path)
    q = qs.quantize(model, DynamicInt8(per_channel=per_channel))
    d = _decisions(q)
    assert d["embed"].action == "quantized" and ("per row" if per_channel else "per tensor") in d["embed"].reason
    assert d["proj"].action == "quantized"
    inits = _inits(q.model)
    table_q = inits["table_quantized"]
    assert table_q.dtype == np.int8 and table_q.shape == (500, 32)
    assert "table" not in inits  # the float table is gone
    ops = q.model.op_histogram()
    assert ops["Gather"] == (2 if per_channel else 1)  # int8 rows (+ their scales)
    _check(q.model)

    ids = np.random.default_rng(3).integers(0, 500, size=(6, 8)).astype(np.int64)
    # the gathered rows are exactly the dequantized int8 rows: compare the embedding itself
    table = numpy_helper.to_array(_init_proto(proto, "table"))
    scale = inits["table_scale"]
    expected_rows = (table_q.astype(np.float32) * scale)[ids]
    emb = _intermediate(q.model, next(n for n in q.model.ir.graph if n.op_type == "Mul").outputs[0].name, ids)
    np.testing.assert_array_equal(emb, expected_rows)
    assert sqnr_db(table[ids], emb) >= (40.0 if per_channel else 35.0)
    ref, got = _out(model, {"ids": ids}), _out(q.model, {"ids": ids})
    assert sqnr_db(ref, got) >= 30.0


def _init_proto(proto: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in proto.graph.initializer if t.name == name)


def _intermediate(model: qs.Model, name: str, ids: np.ndarray) -> np.ndarray:
    from quantscope.runtime import with_outputs

    session = make_session(with_outputs(model, [name]))
    return session.run([name], {"ids": ids})[0]


def test_gather_can_be_left_out(tmp_path) -> None:
    model = _load(tinymodels.embedding_mlp(), tmp_path)
    q = qs.quantize(model, DynamicInt8(op_types=("MatMul",)))
    d = _decisions(q)
    assert d["embed"].action == "float" and "not among this method's op types" in d["embed"].reason
    assert "table" in _inits(q.model)


# --------------------------------------------------------------------------- subgraphs


def _if_model(with_outer_matmul: bool) -> onnx.ModelProto:
    w = _x((16, 16), seed=1, scale=0.25)
    then_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_then"], ["t"], name="inner_matmul")], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(w, "w_then")],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"], name="inner_identity")], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch", 16])],
    )
    nodes = [helper.make_node("If", ["cond"], ["h"], name="branch", then_branch=then_graph, else_branch=else_graph)]
    inits = []
    out = "h"
    if with_outer_matmul:
        nodes.append(helper.make_node("MatMul", ["h", "w2"], ["y"], name="outer_matmul"))
        inits.append(numpy_helper.from_array(_x((16, 16), seed=2, scale=0.25), "w2"))
        out = "y"
    graph = helper.make_graph(
        nodes, "if",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 16])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def test_matmuls_inside_if_branches_are_quantized_with_labels_that_name_the_branch(tmp_path) -> None:
    model = _load(_if_model(with_outer_matmul=True), tmp_path)
    q = qs.quantize(model, DynamicInt8())
    d = _decisions(q)
    assert d["outer_matmul"].action == "quantized"
    assert d["branch"].action == "float" and "decided one by one" in d["branch"].reason
    assert d["branch/then_branch/inner_matmul"].action == "quantized"
    assert not any("subgraph" in w for w in q.plan.warnings)
    then = q.model.ir.graph.node("branch").attributes["then_branch"].as_graph()
    assert "MatMulInteger" in {n.op_type for n in then}
    for cond in (True, False):
        feeds = {"x": _x((4, 16), seed=3), "cond": np.array(cond)}
        assert sqnr_db(_out(model, feeds), _out(q.model, feeds)) >= 30.0
    only_if = _load(_if_model(with_outer_matmul=False), tmp_path, "only_if.onnx")
    inner = qs.quantize(only_if, DynamicInt8())
    assert [d.node for d in inner.plan.quantized_nodes] == ["branch/then_branch/inner_matmul"]


def test_bias_written_first_is_still_folded(tmp_path) -> None:
    w, b = _x((32, 16), seed=1, scale=0.2), _x((16,), seed=2)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Add", ["b", "h"], ["y"], name="bias_first")],
        "bias_first",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = _load(proto, tmp_path)
    q = qs.quantize(model, DynamicInt8())
    d = _decisions(q)
    assert d["bias_first"].action == "fused" and "swapped" in d["bias_first"].reason
    optimized = optimized_op_types(q.model)
    assert optimized.get("DynamicQuantizeMatMul") == 1 and "Add" not in optimized, optimized
    x = _x((8, 32), seed=3)
    assert sqnr_db(_out(model, {"x": x}), _out(q.model, {"x": x})) >= 33.0


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=finite), st.sampled_from([None, 0, 1]))
def test_u8s8_safe_weights_never_exceed_64(w: np.ndarray, axis: int | None) -> None:
    from quantscope.numerics.affine import quantize
    from quantscope.numerics.dynamic import U8S8_SAFE_MAGNITUDE, u8s8_safe_weight_qparams

    assert 255 * U8S8_SAFE_MAGNITUDE * 2 <= 32767 < 255 * (U8S8_SAFE_MAGNITUDE + 1) * 2
    qp = u8s8_safe_weight_qparams(w, axis)
    q = quantize(w, qp)
    assert int(np.abs(q.astype(np.int32)).max()) <= U8S8_SAFE_MAGNITUDE
    scale = qp.scale if axis is None else np.expand_dims(qp.scale, 1 - axis)
    assert np.all(np.abs(dequantize(q, qp) - w) <= scale / 2 * (1 + 1e-5) + 1e-30)
