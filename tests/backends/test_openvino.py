"""The OpenVINO backend: float and static-int8 ONNX files run by OpenVINO's CPU runtime, into Results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import tinymodels

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'quantscope[openvino]')")

import quantscope as qs
from quantscope.analysis.options import AnalysisOptions
from quantscope.backends import openvino as qov
from quantscope.errors import ModelError

QUICK = AnalysisOptions(latency=False, memory=False, energy=False, layers=False, sensitivity=0)


def _ort(path: Path | str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ov")
    float_path = Path(tinymodels.save(tinymodels.conv_bn_relu(), tmp / "cnn.onnx"))
    model = qs.load(float_path)
    quantized = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(64, 1)}))
    return {"float": float_path, "int8": quantized.save(tmp / "cnn.int8.onnx")}


@pytest.mark.parametrize("which,tol", [("float", 1e-4), ("int8", 0.15)])
def test_openvino_runs_float_and_static_int8_close_to_onnxruntime(cnn_files, which, tol):
    x = _images(10, 2)
    variant, notes = qov.variant_for(which, cnn_files[which])
    assert variant.name == f"{which} [openvino]" and not notes
    out = variant.predict(qs.Dataset.from_arrays({"x": x}), batch_size=4)
    ref = _ort(cnn_files[which], {"x": x})
    assert out[0].shape == ref.shape
    scale = float(np.abs(ref).max())
    assert float(np.abs(out[0] - ref).max()) <= tol * max(scale, 1.0)
    lat = variant.measure_latency({"x": x[:1]}, threads=1, warmup=1, runs=3)
    assert lat.batch == 1 and lat.threads == 1 and lat.median_ms > 0


def test_add_to_results_measures_every_variant_with_openvino(cnn_files):
    model = qs.load(cnn_files["float"])
    data = qs.Dataset.from_arrays({"x": _images(24, 3)})
    options = AnalysisOptions(memory=False, energy=False, layers=False, sensitivity=0, batch_sizes=(1,),
                              threads=(1,), warmup=1, runs=3)
    results = qs.analyze(model, {"static-int8": cnn_files["int8"]}, data, options=options)
    both = qov.add_to_results(results, model, data, options=options)
    rows = {v.name: v for v in both.variants}
    assert {"float [openvino]", "static-int8 [openvino]"} <= rows.keys()
    for name in ("float [openvino]", "static-int8 [openvino]"):
        row = rows[name]
        assert row.kind == "openvino"
        assert row.latency and row.latency[0].threads == 1 and row.latency[0].median_ms > 0
        assert row.path is not None and Path(row.path).suffix == ".onnx"
    ov_float = rows["float [openvino]"].quality
    assert ov_float["agreement"] == 1.0 and ov_float["sqnr_db"] > 80  # float32 arithmetic, not bfloat16
    assert both.reference is not None and both.reference.name == "float"  # speed stays against ORT float


def test_a_variant_without_a_file_gets_a_note(cnn_files):
    model = qs.load(cnn_files["float"])
    data = qs.Dataset.from_arrays({"x": _images(8, 4)})
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(16, 5)}))
    results = qs.analyze(model, {"in-memory": q}, data, options=QUICK)
    both = qov.add_to_results(results, model, data, options=QUICK)
    assert "float [openvino]" in {v.name for v in both.variants}
    assert any(n.startswith("in-memory [openvino]: not measured") for n in both.notes)


# -- the bias Add after a conv: which QDQ pattern both runtimes accept -----------------------

C_IN, C = 4, 6
_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(2, C_IN, 8, 8)).astype(np.float32)
_W = (_RNG.normal(size=(C, C_IN, 3, 3)) * 0.3).astype(np.float32)
_B = _RNG.normal(size=(C,)).astype(np.float32)


def _init(name: str, a) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a), name)


def _qparams(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    return np.float32(scale), np.uint8(round(-lo / scale))


def _qdq(name: str, qp, nodes: list, inits: list) -> str:
    inits += [_init(name + "_s", qp[0]), _init(name + "_z", qp[1])]
    nodes += [helper.make_node("QuantizeLinear", [name, name + "_s", name + "_z"], [name + "_q"]),
              helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"], [name + "_dq"])]
    return name + "_dq"


def _conv_add_bias(pattern: str | None) -> onnx.ModelProto:
    """Conv without bias, then ``Add`` of the bias reshaped to [1, C, 1, 1] (as Paddle exports it), then Relu.

    ``pattern``: None (float); ``reshape-qdq`` (what static-int8 writes today: the Reshape of the
    bias quantized at run time, an Add of two DequantizeLinear outputs); ``const-dq`` (the bias
    as a uint8 initializer [1, C, 1, 1] straight into a DequantizeLinear); ``bias-in-conv`` (the
    Add folded into Conv's third input, int32 with scale x_scale * w_scale, zero point 0).
    """
    nodes: list = []
    inits = [_init("shape", np.array([1, C, 1, 1], np.int64)), _init("b", _B)]
    x, out = "x", "y"
    if pattern is None:
        inits.append(_init("w", _W))
        nodes += [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                  helper.make_node("Reshape", ["b", "shape"], ["rb"]), helper.make_node("Add", ["c", "rb"], ["a"])]
    else:
        xq = _qparams(float(_X.min()), float(_X.max()))
        ws = (np.abs(_W).reshape(C, -1).max(1) / 127).astype(np.float32)
        inits += [_init("wq", np.round(_W / ws[:, None, None, None]).astype(np.int8)), _init("ws", ws),
                  _init("wz", np.zeros(C, np.int8))]
        x = _qdq("x", xq, nodes, inits)
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0))
        if pattern == "bias-in-conv":
            bs = (xq[0] * ws).astype(np.float32)
            inits += [_init("bq", np.round(_B / bs).astype(np.int32)), _init("bs", bs), _init("bz", np.zeros(C, np.int32))]
            nodes += [helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bdq"], axis=0),
                      helper.make_node("Conv", [x, "w", "bdq"], ["a"], pads=[1, 1, 1, 1])]
        else:
            nodes.append(helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]))
            c = _qdq("c", _qparams(-8, 8), nodes, inits)
            bq = _qparams(float(_B.min()), float(_B.max()))
            if pattern == "reshape-qdq":
                nodes.append(helper.make_node("Reshape", ["b", "shape"], ["rb"]))
                rb = _qdq("rb", bq, nodes, inits)
            else:  # const-dq
                q = np.clip(np.round(_B / bq[0]) + int(bq[1]), 0, 255).astype(np.uint8).reshape(1, C, 1, 1)
                inits += [_init("rbq", q), _init("rbs", bq[0]), _init("rbz", bq[1])]
                nodes.append(helper.make_node("DequantizeLinear", ["rbq", "rbs", "rbz"], ["rb"]))
                rb = "rb"
            nodes.append(helper.make_node("Add", [c, rb], ["a"]))
        a = _qdq("a", _qparams(-8, 8), nodes, inits)
        nodes.append(helper.make_node("Relu", [a], ["y"]))
        out = None
    if out is not None:
        nodes.append(helper.make_node("Relu", ["a"], ["y"]))
    graph = helper.make_graph(nodes, "conv_add_bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, C_IN, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, C, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("pattern", ["const-dq", "bias-in-conv"])
def test_bias_patterns_that_load_in_both_runtimes(pattern, tmp_path):
    ref = _ort(_save(_conv_add_bias(None), tmp_path / "float.onnx"), {"x": _X})
    path = _save(_conv_add_bias(pattern), tmp_path / f"{pattern}.onnx")
    by_ort = _ort(path, {"x": _X})
    by_ov = qov.OpenVINOVariant(pattern, path).predict(qs.Dataset.from_arrays({"x": _X}))[0]
    assert np.abs(by_ort - ref).max() < 0.2
    assert np.abs(by_ov - by_ort).max() < 0.1
    ops = qs.runtime.optimized_op_types(qs.load(path))
    assert ops.get("QLinearConv") == 1  # ORT still runs the conv in int8
    assert ("QLinearAdd" in ops) == (pattern == "const-dq")


def test_quantized_bias_reshape_is_folded_so_openvino_loads_it(tmp_path):
    """Today's pattern: OpenVINO 2026's AddTransformation throws on it; folding the constant fixes it."""
    path = _save(_conv_add_bias("reshape-qdq"), tmp_path / "reshape-qdq.onnx")
    try:
        qov.compile_model(path)
    except ModelError as exc:
        assert "OpenVINO cannot load the model" in str(exc)
    folded, count = qov.fold_constant_quantization(path)
    assert count == 1
    np.testing.assert_array_equal(
        ort.InferenceSession(folded, providers=["CPUExecutionProvider"]).run(None, {"x": _X})[0], _ort(path, {"x": _X})
    )
    variant, _ = qov.variant_for("static-int8", path)
    out = variant.predict(qs.Dataset.from_arrays({"x": _X}))[0]
    assert np.abs(out - _ort(path, {"x": _X})).max() < 0.1


@pytest.mark.real
def test_static_int8_ppocr_classifier_runs_in_openvino(ppocr_cls_onnx, tmp_path):
    import realmodels

    x, _ = realmodels.ppocr_cls_dataset(24, seed=5)
    model = qs.load(ppocr_cls_onnx)
    path = qs.quantize(model, qs.StaticInt8(measure=False), qs.Dataset.from_arrays({"x": x[:16]})).save(tmp_path / "cls.int8.onnx")
    variant, _ = qov.variant_for("static-int8", path)  # loads as written, or after folding constants
    out = variant.predict(qs.Dataset.from_arrays({"x": x[16:]}), batch_size=4)[0]
    ref = _ort(path, {"x": x[16:]})
    assert out.shape == ref.shape
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75
