"""cluster, ternary and binary on tiny models: structure, numerics against float, validity, size, folding.

Run with ``-s`` to see the measured values (ternary and binary are reported, not hidden).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.config import Binary, Cluster, Ternary, config_from_dict
from quantscope.numerics.kmeans import cluster_weights
from quantscope.numerics.lowbit import binarize, ternarize
from quantscope.numerics.metrics import sqnr_db
from quantscope.numerics.packing import packed_size
from quantscope.runtime import make_session, optimized_op_types, run

EXPANSION_OPS = {"BitShift", "Gather", "ReduceSum", "Cast", "Transpose", "Slice"}


def _load(proto: onnx.ModelProto, tmp_path, name: str = "model.onnx") -> qs.Model:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return qs.load(path)


def _x(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _out(model: qs.Model, x: np.ndarray) -> np.ndarray:
    return run(make_session(model), {"x": x})[0]


def _float_initializers(model: qs.Model, min_elements: int = 256) -> list[str]:
    return [
        name
        for name, v in model.ir.graph.initializers.items()
        if v.const_value.dtype.name == "FLOAT"
        and v.const_value.size > min_elements
        and "codebook" not in name
    ]


def _decoded_reference(model: qs.Model, q: qs.QuantizedModel, code) -> qs.Model:
    """The float model with each coded weight replaced by its NumPy decoding."""
    proto = model.to_proto()
    inits = {t.name: t for t in proto.graph.initializer}
    for wq in {(w.tensor, w.axis) for w in q.plan.weights}:
        tensor = inits[wq[0]]
        w = onnx.numpy_helper.to_array(tensor)
        tensor.CopyFrom(onnx.numpy_helper.from_array(code(w, wq[1]).decode(), wq[0]))
    return qs.Model.from_proto(proto)


@pytest.mark.parametrize(("bits", "floor_db"), [(8, 30.0), (4, 10.0)])
def test_cluster_mlp_structure_numerics_validity(tmp_path, bits: int, floor_db: float) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    cfg = Cluster(bits=bits)
    q = qs.quantize(model, cfg)

    decisions = {d.node: d for d in q.plan.decisions}
    assert set(decisions) == {"fc1", "fc1_bias", "relu1", "fc2", "relu2", "fc3"}  # every node
    for name in ("fc1", "fc2", "fc3"):
        assert decisions[name].action == "quantized", decisions[name]
        assert f"{bits}-bit k-means" in decisions[name].reason and "SQNR" in decisions[name].reason
    assert decisions["fc1_bias"].action == "float" and decisions["fc1_bias"].reason
    ops = q.model.op_histogram()
    assert ops["Gather"] == 3
    assert ops.get("BitShift", 0) == (0 if bits == 8 else 6)
    packed = [
        n for n, v in q.model.ir.graph.initializers.items() if v.const_value.dtype.name == "UINT8"
    ]
    assert len(packed) >= 3
    assert not _float_initializers(q.model)  # no float weight left behind; biases (128) stay float
    assert {"b1", "b2", "b3"} <= set(q.model.ir.graph.initializers)
    onnx.checker.check_model(q.model.to_proto(), full_check=True)

    x = _x((64, 64), seed=1)
    ref, got = _out(model, x), _out(q.model, x)
    sqnr = sqnr_db(ref, got)
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    per_weight = {d["tensor"]: round(d["sqnr_db"], 1) for d in q.plan.extra["weights"]}
    print(
        f"\nmlp cluster {bits}-bit: output SQNR {sqnr:.1f} dB, top-1 agreement {agreement:.3f}, weights {per_weight}"
    )
    assert sqnr > floor_db
    assert min(per_weight.values()) > (40.0 if bits == 8 else 18.0)
    # the graph computes exactly the NumPy decoding of the codes
    reference = _decoded_reference(
        model, q, lambda w, axis: cluster_weights(w, bits, axis=axis, seed=cfg.seed)
    )
    np.testing.assert_allclose(got, _out(reference, x), rtol=1e-5, atol=1e-5)
    # ONNX Runtime folded the expansion: only the float model's ops remain
    kernels = optimized_op_types(q.model)
    assert not EXPANSION_OPS & set(kernels), kernels


@pytest.mark.parametrize(("bits", "per_channel"), [(3, False), (5, True), (2, True)])
def test_cluster_odd_widths_and_per_channel_match_numpy(
    tmp_path, bits: int, per_channel: bool
) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(model, Cluster(bits=bits, per_channel=per_channel, iterations=10))
    for wq in q.plan.weights:
        assert wq.bits == bits
        assert wq.axis == ({"fc1": 1, "fc2": 0, "fc3": 0}[wq.node] if per_channel else None)
    ops = q.model.op_histogram()
    assert ("ReduceSum" in ops) == (bits in (3, 5))  # general unpacking for widths not dividing 8
    assert ("Transpose" in ops) == per_channel  # MatMul weights keep channels on axis 1
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    x = _x((32, 64), seed=2)
    code = lambda w, axis: cluster_weights(w, bits, axis=axis, iterations=10)  # noqa: E731
    np.testing.assert_allclose(
        _out(q.model, x), _out(_decoded_reference(model, q, code), x), rtol=1e-5, atol=1e-5
    )
    assert not EXPANSION_OPS & set(optimized_op_types(q.model))


def test_cluster_conv_bn_relu(tmp_path) -> None:
    model = _load(tinymodels.conv_bn_relu(), tmp_path)
    q = qs.quantize(model, Cluster(bits=4, per_channel=True))
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["conv2"].action == "quantized"
    assert (
        decisions["conv1"].action == "float" and "min_size" in decisions["conv1"].reason
    )  # 432 weights
    assert decisions["fc"].action == "float"
    assert "bn1" not in decisions  # folded by prepare
    assert all(d.action in ("quantized", "float") and d.reason for d in q.plan.decisions)
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    x = _x((16, 3, 16, 16), seed=3)
    sqnr = sqnr_db(_out(model, x), _out(q.model, x))
    print(f"\nconv_bn_relu cluster 4-bit per channel: output SQNR {sqnr:.1f} dB")
    assert sqnr > 18.0
    assert not EXPANSION_OPS & set(optimized_op_types(q.model))


@pytest.mark.parametrize("config", [Ternary(), Binary()], ids=["ternary", "binary"])
def test_ternary_binary_run_and_report_their_drop(tmp_path, config) -> None:
    for name, proto, shape in (
        ("mlp", tinymodels.mlp(), (64, 64)),
        ("conv", tinymodels.conv_bn_relu(), (16, 3, 16, 16)),
    ):
        model = _load(proto, tmp_path, f"{name}.onnx")
        q = qs.quantize(model, config)
        onnx.checker.check_model(q.model.to_proto(), full_check=True)
        assert any("without retraining" in w and "chance" in w for w in q.plan.warnings), (
            q.plan.warnings
        )
        bits = 2 if config.method == "ternary" else 1
        assert q.plan.weights and all(w.bits == bits and w.axis is not None for w in q.plan.weights)
        x = _x(shape, seed=4)
        ref, got = _out(model, x), _out(q.model, x)
        sqnr = sqnr_db(ref, got)
        agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
        errors = [round(d["rel_error"], 3) for d in q.plan.extra["weights"]]
        print(
            f"\n{name} {config.method}: output SQNR {sqnr:.1f} dB, top-1 agreement {agreement:.3f}, weight rel. errors {errors}"
        )
        code = (lambda w, axis: ternarize(w, axis)) if config.method == "ternary" else binarize
        np.testing.assert_allclose(
            got, _out(_decoded_reference(model, q, code), x), rtol=1e-5, atol=1e-5
        )
        assert not EXPANSION_OPS & set(optimized_op_types(q.model))


def test_size_on_disk_follows_bits(tmp_path) -> None:
    model = _load(tinymodels.wide_mlp(), tmp_path)
    float_size = (tmp_path / "model.onnx").stat().st_size
    sizes = {}
    for bits in (2, 4, 8):
        q = qs.quantize(model, Cluster(bits=bits, iterations=10))
        path = q.save(tmp_path / f"cluster{bits}.onnx")
        size = path.stat().st_size
        details = q.plan.extra["weights"]
        weights = sum(d["float_bytes"] for d in details)
        packed = sum(d["packed_bytes"] for d in details)
        books = sum(d["codebook_bytes"] for d in details)
        assert packed == sum(packed_size(d["float_bytes"] // 4, bits) for d in details)
        assert packed == pytest.approx(weights * bits / 32, abs=len(details))
        others = float_size - weights  # biases, graph, names
        theory = others + packed + books
        print(
            f"\nwide_mlp cluster {bits}-bit: {size} bytes on disk, theory {theory}, float {float_size} "
            f"(ratio {size / float_size:.4f}, b/32 = {bits / 32:.4f})"
        )
        assert packed + books <= size <= theory + 4096  # + names and shapes of the expansion ops
        sizes[bits] = size
        sidecar = json.loads((tmp_path / f"cluster{bits}.quantscope.json").read_text())
        assert sidecar["plan"]["extra"]["weights"][0]["bits"] == bits
    assert sizes[2] < sizes[4] < sizes[8] < float_size * 0.27


def test_shared_weight_is_coded_once(tmp_path) -> None:
    model = _load(tinymodels.shared_weight_mlp(), tmp_path)
    q = qs.quantize(model, Cluster(bits=4))
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["tied1"].action == decisions["tied2"].action == "quantized"
    assert "coded once" in decisions["tied2"].reason
    assert decisions["head"].action == "float"  # 640 weights < min_size
    assert len(q.plan.extra["weights"]) == 1 and q.plan.extra["weights"][0]["nodes"] == [
        "tied1",
        "tied2",
    ]
    assert q.model.op_histogram()["Gather"] == 1
    tied = [n for n in q.model.ir.graph if n.op_type == "MatMul"]
    assert tied[0].inputs[1] is tied[1].inputs[1]
    x = _x((8, 64), seed=5)
    assert sqnr_db(_out(model, x), _out(q.model, x)) > 12.0


def test_input_model_is_not_modified_and_runs_are_deterministic(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    before = model.to_proto().SerializeToString()
    a = qs.quantize(model, Cluster(bits=4, seed=3))
    b = qs.quantize(model, Cluster(bits=4, seed=3))
    assert model.to_proto().SerializeToString() == before
    assert a.model.serialize() == b.model.serialize()
    assert a.model.path is None and a.model.fingerprint == ""


def test_exclusion_and_op_types(tmp_path) -> None:
    model = _load(tinymodels.mlp(), tmp_path)
    q = qs.quantize(
        model, Cluster(bits=4, op_types=("Gemm",), exclude=qs.NodeSelector(names=("fc3",)))
    )
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["fc1"].action == "float" and "op types" in decisions["fc1"].reason
    assert decisions["fc3"].action == "float" and "excluded" in decisions["fc3"].reason
    assert decisions["fc2"].action == "quantized"


def test_bad_input() -> None:
    for bad in (9, 1, 0, "4", 4.0, True):
        with pytest.raises(qs.ConfigError, match="bits"):
            Cluster(bits=bad)
    with pytest.raises(qs.ConfigError, match="bits"):
        config_from_dict({"method": "cluster", "bits": 9})
    with pytest.raises(qs.ConfigError, match="threshold"):
        Ternary(threshold=0.0)
    with pytest.raises(qs.ConfigError, match="op_types"):
        Binary(op_types=("Add",))


@pytest.mark.parametrize(
    "config", [Cluster(), Ternary(), Binary()], ids=["cluster", "ternary", "binary"]
)
def test_model_without_eligible_weights_is_refused(tmp_path, config) -> None:
    with pytest.raises(qs.UnsupportedModelError, match="no weight"):
        qs.quantize(_load(tinymodels.no_quantizable_ops(), tmp_path), config)
    big = type(config)(min_size=10**6)
    with pytest.raises(qs.UnsupportedModelError, match="min_size"):
        qs.quantize(_load(tinymodels.mlp(), tmp_path, "mlp.onnx"), big)
