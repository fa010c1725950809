"""static-int8 on tiny models: structure, numerics against float, validity, ORT integer kernels.

The speed search is off here (``measure=False``): which regions stay float for speed depends on
the machine; tests/methods/test_static_int8_latency.py covers that decision.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.numerics.metrics import sqnr_db
from quantscope.runtime import make_session, optimized_op_types, run


def _load(proto: onnx.ModelProto, tmp_path, name: str = "model.onnx") -> qs.Model:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return qs.load(path)


def _images(n: int, seed: int, shape=(3, 16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def _ops(model: qs.Model) -> dict[str, int]:
    return model.op_histogram()


def _outputs(model: qs.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return run(make_session(model), feeds)


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy", "mse"])
def test_conv_bn_relu_structure_numerics_and_kernels(tmp_path, calibration):
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    calib = qs.Dataset.from_arrays({"x": _images(64, seed=1)})
    q = qs.quantize(model, qs.StaticInt8(measure=False, calibration=calibration), calib)

    ops = _ops(q.model)
    assert "BatchNormalization" not in ops  # folded
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["conv1"].action == "quantized"
    assert decisions["relu1"].action == "fused"
    assert decisions["pool1"].action == "quantized"
    # weights are stored as int8 behind DequantizeLinear
    int8_weights = [
        v for name, v in q.model.ir.graph.initializers.items()
        if v.const_value.dtype.name == "INT8" and name.endswith("_quantized")
    ]
    assert len(int8_weights) == len(q.plan.weights) == 3
    assert not [v for v in q.model.ir.graph.initializers.values() if v.const_value.dtype.name == "FLOAT"
                and v.const_value.size > 64]  # no float weight left behind

    x = _images(32, seed=2)
    ref = _outputs(model, {"x": x})[0]
    got = _outputs(q.model, {"x": x})[0]
    sqnr = sqnr_db(ref, got)
    print(f"conv_bn_relu {calibration}: SQNR {sqnr:.1f} dB")
    assert sqnr > 20.0

    kernels = optimized_op_types(q.model)
    assert kernels.get("QLinearConv", 0) == 2, kernels
    assert "QuantizeLinear" in kernels or "QLinearGlobalAveragePool" in kernels


def test_residual_block_uses_integer_add(tmp_path):
    model = _load(tinymodels.residual_block(), tmp_path)
    calib = qs.Dataset.from_arrays({"x": _images(32, seed=3)})
    q = qs.quantize(model, qs.StaticInt8(measure=False), calib)
    decisions = {d.node: d.action for d in q.plan.decisions}
    assert decisions["residual_add"] == "quantized"
    assert decisions["relu_out"] == "fused"
    x = _images(16, seed=4)
    sqnr = sqnr_db(_outputs(model, {"x": x})[0], _outputs(q.model, {"x": x})[0])
    print(f"residual block SQNR {sqnr:.1f} dB")
    assert sqnr > 20.0
    kernels = optimized_op_types(q.model)
    assert kernels.get("QLinearConv", 0) == 4, kernels
    assert kernels.get("QLinearAdd", 0) == 1, kernels


def test_mlp_matmul_and_gemm(tmp_path):
    model = _load(tinymodels.mlp(), tmp_path)
    rng = np.random.default_rng(5)
    calib = qs.Dataset.from_arrays({"x": rng.standard_normal((128, 64)).astype(np.float32)})
    q = qs.quantize(model, qs.StaticInt8(measure=False, calibration="mse"), calib)
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["fc1"].action == "quantized"
    # MatMul + bias Add is fused into one Gemm first (else ORT fuses them into a float Gemm)
    assert "fc1_bias" not in decisions and decisions["fc1"].op_type == "Gemm"
    assert any("MatMul + bias Add" in n for n in q.plan.notes)
    assert decisions["fc2"].action == "quantized"
    assert decisions["fc3"].action == "quantized"
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    ref, got = _outputs(model, {"x": x})[0], _outputs(q.model, {"x": x})[0]
    sqnr = sqnr_db(ref, got)
    print(f"mlp SQNR {sqnr:.1f} dB, top-1 agreement {np.mean(ref.argmax(1) == got.argmax(1)):.3f}")
    assert sqnr > 25.0
    kernels = optimized_op_types(q.model)
    integer = {k: v for k, v in kernels.items() if k in ("MatMulIntegerToFloat", "QLinearMatMul", "QGemm", "MatMulInteger")}
    assert sum(integer.values()) == 3, kernels


def test_attention_mask_is_kept_float_and_matmuls_quantized(tmp_path):
    model = _load(tinymodels.attention_block(), tmp_path)
    rng = np.random.default_rng(6)
    n, seq, d = 64, 16, 32
    x = rng.standard_normal((n, seq, d)).astype(np.float32)
    lengths = rng.integers(4, seq + 1, size=n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.float32)
    calib = qs.Dataset.from_arrays({"x": x, "mask": mask})
    q = qs.quantize(model, qs.StaticInt8(measure=False), calib)
    decisions = {d.node: d for d in q.plan.decisions}
    for name in ("q_proj", "k_proj", "v_proj", "out_proj", "scores", "context"):
        assert decisions[name].action == "quantized", decisions[name]
    assert decisions["scores_mask"].action == "float"
    assert decisions["softmax"].action == "float"
    quantized_tensors = {t.tensor for t in q.plan.activations}
    assert "madd4" not in quantized_tensors and "s2" not in quantized_tensors
    softmax_out = next(t for t in q.plan.activations if t.tensor == "p")
    assert softmax_out.source.startswith("fixed")
    ref = _outputs(model, {"x": x[:16], "mask": mask[:16]})[0]
    got = _outputs(q.model, {"x": x[:16], "mask": mask[:16]})[0]
    sqnr = sqnr_db(ref, got)
    print(f"attention block SQNR {sqnr:.1f} dB")
    assert sqnr > 20.0


def test_input_model_is_not_modified(tmp_path):
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    before = model.to_proto().SerializeToString()
    file_before = (tmp_path / "model.onnx").read_bytes()
    qs.quantize(model, qs.StaticInt8(measure=False), qs.Dataset.from_arrays({"x": _images(8, seed=0)}))
    assert model.to_proto().SerializeToString() == before
    assert (tmp_path / "model.onnx").read_bytes() == file_before


def test_integer_io(tmp_path):
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    q = qs.quantize(model, qs.StaticInt8(measure=False, integer_io=True), qs.Dataset.from_arrays({"x": _images(32, seed=1)}))
    graph = q.model.ir.graph
    assert graph.inputs[0].dtype.name == "UINT8"
    assert graph.outputs[0].dtype.name == "UINT8"
    meta = q.model.ir.metadata_props["quantscope.integer_io"]
    import json

    io = json.loads(meta)
    x = _images(8, seed=9)
    s_in, z_in = io["x"]["scale"], io["x"]["zero_point"]
    xq = np.clip(np.rint(x / s_in) + z_in, 0, 255).astype(np.uint8)
    yq = _outputs(q.model, {"x": xq})[0]
    assert yq.dtype == np.uint8
    y = (yq.astype(np.float32) - io["y"]["zero_point"]) * io["y"]["scale"]
    ref = _outputs(model, {"x": x})[0]
    assert sqnr_db(ref, y) > 15.0


def test_exclusion_by_name_and_op_type(tmp_path):
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    calib = qs.Dataset.from_arrays({"x": _images(16, seed=1)})
    cfg = qs.StaticInt8(measure=False, exclude=qs.NodeSelector(names=("conv2",), op_types=("Gemm",)))
    q = qs.quantize(model, cfg, calib)
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["conv2"].action == "float" and "excluded" in decisions["conv2"].reason
    assert decisions["fc"].action == "float"
    with pytest.raises(qs.SelectorError, match="Convv"):
        qs.quantize(model, qs.StaticInt8(measure=False, exclude=qs.NodeSelector(op_types=("Convv",))), calib)


def test_old_opset_is_upgraded(tmp_path):
    model = _load(tinymodels.conv_bn_relu(opset=11), tmp_path)
    assert model.opset == 11
    q = qs.quantize(model, qs.StaticInt8(measure=False), qs.Dataset.from_arrays({"x": _images(16, seed=1)}))
    assert q.model.opset >= 13
    assert any("opset upgraded" in n for n in q.plan.notes)
    out = q.save(tmp_path / "q.onnx")
    make_session(qs.load(out))


def test_s8s8_warns(tmp_path):
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    q = qs.quantize(model, qs.StaticInt8(measure=False, activation_dtype="int8"), qs.Dataset.from_arrays({"x": _images(16, seed=1)}))
    assert any("slower than float" in w for w in q.plan.warnings)


def test_deterministic_for_a_seed(tmp_path):
    model = _load(tinymodels.mlp(), tmp_path)
    data = qs.Dataset.from_arrays({"x": np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)})
    cfg = qs.StaticInt8(measure=False, calibration="entropy", num_samples=100, seed=3)
    a = qs.quantize(model, cfg, data).model.serialize()
    b = qs.quantize(model, cfg, data).model.serialize()
    assert a == b


def test_embedding_table_is_gathered_as_int8(tmp_path):
    model = _load(tinymodels.embedding_mlp(), tmp_path)
    ids = np.random.default_rng(7).integers(0, 500, size=(64, 8)).astype(np.int64)
    q = qs.quantize(model, qs.StaticInt8(measure=False), qs.Dataset.from_arrays({"ids": ids}))
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["embed"].action == "quantized"
    gather = next(n for n in q.model.ir.graph if n.op_type == "Gather")
    assert gather.inputs[0].const_value.dtype.name == "INT8"  # rows gathered from the int8 table
    assert gather.inputs[0].producer() is None  # no DequantizeLinear of the whole table
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    sqnr = sqnr_db(_outputs(model, {"ids": ids[:16]})[0], _outputs(q.model, {"ids": ids[:16]})[0])
    print(f"embedding SQNR {sqnr:.1f} dB")
    assert sqnr > 25.0


def test_calibration_batch_shrinks_to_the_activation_budget(monkeypatch, tmp_path) -> None:
    """A smaller batch keeps peak memory bounded; the statistics (min-max) do not change."""
    import quantscope.calibrate as calibrate

    model = qs.load(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "m.onnx"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, *[d if isinstance(d, int) else 1 for d in model.inputs[0].shape][1:]))
    data = qs.Dataset.from_arrays({model.inputs[0].name: x.astype(np.float32)})
    full = qs.quantize(model, qs.StaticInt8(measure=False, batch_size=24), data)
    seen: list[int] = []
    original = calibrate._batch_within_budget

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(calibrate, "ACTIVATION_BUDGET_BYTES", 1)
    monkeypatch.setattr(calibrate, "_batch_within_budget", spy)
    small = qs.quantize(model, qs.StaticInt8(measure=False, batch_size=24), data)
    assert seen == [1]
    assert [a.to_dict() for a in small.plan.activations] == [a.to_dict() for a in full.plan.activations]
