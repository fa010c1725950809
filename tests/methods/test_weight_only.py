"""weight-int8 / weight-int4 on tiny models: structure, numerics against float, validity, size, errors.

Run with ``-s`` to see the measured values.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import quantscope as qs
import tinymodels
from quantscope.cli import main as cli_main
from quantscope.config import NodeSelector, WeightInt4, WeightInt8, config_from_dict
from quantscope.errors import SelectorError, UnsupportedModelError
from quantscope.numerics.blockwise import quantize_blockwise
from quantscope.numerics.metrics import sqnr_db
from quantscope.runtime import make_session, optimized_op_types, run


def _load(proto: onnx.ModelProto, tmp_path, name: str = "model.onnx") -> qs.Model:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return qs.load(path)


def _x(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _out(model: qs.Model, feeds: dict[str, np.ndarray], optimization: str = "all") -> np.ndarray:
    return run(make_session(model, optimization=optimization), feeds)[0]


def _dequantized_reference(model: qs.Model, q: qs.QuantizedModel, config) -> qs.Model:
    """The float model with each quantized weight replaced by its NumPy dequantization."""
    proto = model.to_proto()
    inits = {t.name: t for t in proto.graph.initializer}
    for tensor, axis in {(w.tensor, w.axis) for w in q.plan.weights}:
        w = onnx.numpy_helper.to_array(inits[tensor])
        bq = quantize_blockwise(
            w, config.bits, config.block_size, symmetric=config.symmetric, k_axis=axis,
            algorithm=config.algorithm,
        )
        w_hat = bq.dequantize() if axis == 0 else bq.dequantize().T
        inits[tensor].CopyFrom(onnx.numpy_helper.from_array(w_hat.astype(np.float32), tensor))
    return qs.Model.from_proto(proto)


MLP_CASES = [
    (WeightInt4(min_size=0), 10.0),
    (WeightInt4(min_size=0, symmetric=False, block_size=64), 10.0),
    (WeightInt4(min_size=0, algorithm="hqq"), 10.0),
    (WeightInt8(min_size=0), 35.0),
    (WeightInt8(min_size=0, symmetric=False, block_size=64), 35.0),
]


@pytest.mark.parametrize(("config", "floor_db"), MLP_CASES, ids=lambda v: getattr(v, "method", v))
def test_matmulnbits_mlp_structure_numerics_validity(tmp_path, config, floor_db: float) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, config)

    decisions = {d.node: d for d in q.plan.decisions}
    assert set(decisions) == {"fc1", "fc1_bias", "relu1", "fc2", "relu2", "fc3"}  # every node
    for name in ("fc1", "fc2", "fc3"):
        assert decisions[name].action == "quantized", decisions[name]
        assert "MatMulNBits" in decisions[name].reason and "SQNR" in decisions[name].reason
    assert decisions["relu1"].action == "float" and decisions["relu1"].reason
    ops = q.model.op_histogram()
    assert ops["com.microsoft::MatMulNBits"] == 3
    assert "MatMul" not in ops and "Gemm" not in ops
    assert q.model.ir.opset_imports["com.microsoft"] == 1
    assert not [  # no float weight left behind (biases of 128/10 values stay float)
        n for n, v in q.model.ir.graph.initializers.items()
        if v.const_value.dtype.name == "FLOAT" and v.const_value.size > 256
        and not n.endswith("_scales")
    ]
    for node in q.model.ir.graph:
        if node.op_type == "MatMulNBits":
            assert node.attributes["bits"].as_int() == config.bits
            assert node.attributes["block_size"].as_int() == config.block_size
            has_zp = len(node.inputs) > 3 and node.inputs[3] is not None
            assert has_zp == (not config.symmetric)
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    assert optimized_op_types(q.model).get("MatMulNBits") == 3

    x = {"x": _x((64, 64), seed=1)}
    ref, got = _out(model, x), _out(q.model, x)
    sqnr = sqnr_db(ref, got)
    print(f"\nmlp {config.method} {config.block_size} sym={config.symmetric} {config.algorithm}: "
          f"output SQNR {sqnr:.1f} dB")
    assert sqnr > floor_db
    # the graph computes exactly x @ (NumPy dequantization) + bias: the layout is right
    np.testing.assert_allclose(
        got, _out(_dequantized_reference(model, q, config), x), rtol=1e-4, atol=1e-4
    )


def test_gemm_without_transb_and_with_beta(tmp_path) -> None:
    """Gemm with transB=0 and beta=0.5: the weight is transposed to [N, K], the bias scaled."""
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((64, 32)) * 0.2).astype(np.float32)
    c = rng.standard_normal((32,)).astype(np.float32)
    c2 = rng.standard_normal((4, 32)).astype(np.float32)
    nodes = [
        onnx.helper.make_node("Gemm", ["x", "w", "c"], ["h"], name="g1", beta=0.5),
        onnx.helper.make_node("Gemm", ["x", "w", "c2"], ["h2"], name="g2", beta=2.0),
        onnx.helper.make_node("Add", ["h", "h2"], ["y"], name="sum"),
    ]
    graph = onnx.helper.make_graph(
        nodes, "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 32])],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((w, "w"), (c, "c"), (c2, "c2"))],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = _load(proto, tmp_path)
    config = WeightInt8(min_size=0)
    q = qs.quantize(model, config)
    ops = q.model.op_histogram()
    assert ops["com.microsoft::MatMulNBits"] == 2  # the shared weight is stored once
    assert len([n for n in q.model.ir.graph.initializers if n.startswith("w_Q8")]) == 1
    assert ops["Add"] == 2  # the [4, 32] C becomes an Add; the vector C the bias input
    x = {"x": _x((4, 64), seed=2)}
    np.testing.assert_allclose(
        _out(q.model, x), _out(_dequantized_reference(model, q, config), x), rtol=1e-4, atol=1e-4
    )
    onnx.checker.check_model(q.model.to_proto(), full_check=True)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("config_type", [WeightInt4, WeightInt8])
def test_blocked_dequantize_format(tmp_path, config_type, symmetric: bool) -> None:
    model = _load(tinymodels.attention_block(), tmp_path)
    config = config_type(format="qdq", symmetric=symmetric)
    q = qs.quantize(model, config)
    assert model.opset == 17 and q.model.opset == 21
    assert any("opset upgraded from 17 to 21" in n for n in q.plan.notes)
    ops = q.model.op_histogram()
    assert ops["DequantizeLinear"] == 4 and ops["MatMul"] == 6  # 4 projections + 2 attention
    expected = {
        (4, True): "INT4", (4, False): "UINT4", (8, True): "INT8", (8, False): "UINT8"
    }[(config.bits, symmetric)]
    for node in q.model.ir.graph:
        if node.op_type == "DequantizeLinear":
            assert node.attributes["block_size"].as_int() == 32
            assert node.attributes["axis"].as_int() == 0
            assert node.inputs[0].const_value.dtype.name == expected
            assert (len(node.inputs) == 3) == (not symmetric)
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    # ORT fuses DequantizeLinear + MatMul into MatMulNBits
    assert optimized_op_types(q.model).get("MatMulNBits", 0) == 4

    feeds = {"x": _x((2, 16, 32), seed=3), "mask": np.ones((2, 16), np.float32)}
    feeds["mask"][1, 12:] = 0.0
    ref = _out(model, feeds)
    exact = _out(q.model, feeds, optimization="basic")  # DequantizeLinear then float MatMul
    fused = _out(q.model, feeds)  # MatMulNBits with int8 activations (ORT's qdq default)
    reference = _out(_dequantized_reference(model, q, config), feeds)
    np.testing.assert_allclose(exact, reference, rtol=1e-4, atol=1e-4)
    s_exact, s_fused = sqnr_db(ref, exact), sqnr_db(ref, fused)
    print(f"\nattention {config.method} qdq sym={symmetric}: SQNR {s_exact:.1f} dB unfused, "
          f"{s_fused:.1f} dB fused by ORT")
    floor = 15.0 if config.bits == 4 else 35.0
    assert s_exact > floor
    assert s_fused > 15.0


def test_file_size_on_disk_matches_theory(tmp_path) -> None:
    model = _load(tinymodels.wide_mlp(), tmp_path)  # 256x512 MatMul, 512x512 Gemm, 10x512 Gemm
    results = {}
    for config in (WeightInt4(), WeightInt4(symmetric=False, block_size=64), WeightInt8()):
        q = qs.quantize(model, config)
        path = q.save(tmp_path / f"{config.method}-{config.block_size}-{config.symmetric}.onnx")
        theory = 0
        for shape in ((256, 512), (512, 512), (10, 512)):
            k, n = (shape[0], shape[1]) if shape == (256, 512) else (shape[1], shape[0])
            blocks = n * k // config.block_size
            zp = 0 if config.symmetric else n * -(-(k // config.block_size) * config.bits // 8)
            theory += n * k * config.bits // 8 + 4 * blocks + zp
        assert q.plan.extra["weight_bytes"]["quantized"] == theory
        proto = onnx.load(str(path))
        biases = sum(
            t.raw_data.__len__() for t in proto.graph.initializer if t.name in ("b1", "b2", "b3")
        )
        overhead = path.stat().st_size - theory - biases
        results[config.method + str(config.block_size)] = (path.stat().st_size, theory)
        assert 0 < overhead < 4096, overhead  # names, attributes, graph structure
        float_size = model.path.stat().st_size
        assert path.stat().st_size < float_size * (0.16 if config.bits == 4 else 0.29)
    print(f"\nwide_mlp file bytes vs theory (weights): {results}")


def test_block_size_that_does_not_divide_is_a_clear_error(tmp_path) -> None:
    model = _load(tinymodels.mlp(d_in=48), tmp_path)  # fc1 has K=48
    with pytest.raises(UnsupportedModelError) as info:
        qs.quantize(model, WeightInt4(block_size=32, min_size=0))
    message = str(info.value)
    assert "block_size=32" in message and "'w1'" in message and "fc1" in message
    assert "K=48" in message and "16" in message and "exclude" in message
    assert info.value.exit_code == 3
    # excluding the node quantizes the rest
    q = qs.quantize(model, WeightInt4(block_size=32, min_size=0, exclude=NodeSelector(names=("fc1",))))
    assert {d.node: d.action for d in q.plan.decisions}["fc1"] == "float"
    # and from the CLI: exit code 3, nothing written
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(
        cli_main, ["quantize", str(model.path), "--method", "weight-int4", "--block-size", "32",
                   "--set", "min_size=0", "-o", str(out)],
    )
    assert result.exit_code == 3, result.output
    assert "block_size=32" in result.output
    assert not out.exists() and not out.with_name("out.quantscope.json").exists()


def test_no_quantizable_nodes_is_a_clear_error(tmp_path) -> None:
    model = _load(tinymodels.no_quantizable_ops(), tmp_path)
    with pytest.raises(UnsupportedModelError, match="no MatMul or Gemm weight"):
        qs.quantize(model, WeightInt4())
    small = _load(tinymodels.mlp(), tmp_path, "small.onnx")
    with pytest.raises(UnsupportedModelError, match="min_size"):
        qs.quantize(small, WeightInt8(min_size=1 << 20))


def test_exclusion_rules(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(
        model, WeightInt4(min_size=0, exclude=NodeSelector(patterns=("fc3",), op_types=("MatMul",)))
    )
    actions = {d.node: (d.action, d.reason) for d in q.plan.decisions}
    assert actions["fc1"][0] == "float" and "op type 'MatMul'" in actions["fc1"][1]
    assert actions["fc3"][0] == "float" and "pattern 'fc3'" in actions["fc3"][1]
    assert actions["fc2"][0] == "quantized"
    with pytest.raises(SelectorError, match="nope"):
        qs.quantize(model, WeightInt4(exclude=NodeSelector(names=("nope",))))


def test_cli_sidecar_and_input_unchanged(tmp_path) -> None:
    model = _load(tinymodels.wide_mlp(), tmp_path)
    before = model.to_proto().SerializeToString()
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(
        cli_main, ["quantize", str(model.path), "--method", "weight-int4", "--block-size", "64",
                   "--asymmetric", "--algorithm", "hqq", "--format", "qdq", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name("q.quantscope.json").read_text())
    config = config_from_dict(sidecar["config"])
    assert config == WeightInt4(block_size=64, symmetric=False, algorithm="hqq", format="qdq")
    plan = sidecar["plan"]
    assert plan["extra"]["format"] == "qdq" and plan["extra"]["algorithm_gain_db"]["min"] >= 0.0
    assert {d["node"]: d["action"] for d in plan["decisions"]}["fc2"] == "quantized"
    assert qs.load(out).opset == 21
    assert model.to_proto().SerializeToString() == before  # the caller's model is untouched
