"""The TFLite path: converter variants of a Keras CNN, run by LiteRT, measured beside ONNX variants."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter  # the [tensorflow] extra: CI runs these tests
from hypothesis import given, settings
from hypothesis import strategies as st

import kerasmodels
import quantscope as qs
from quantscope.analysis.compare import AnalysisOptions
from quantscope.analysis.evaluate import predict
from quantscope.backends import tflite
from quantscope.errors import ConfigError
from quantscope.importers import to_onnx
from quantscope.numerics.metrics import sqnr_db, top1_agreement

ALL = ("dynamic", "int8", "int8-io", "float16")


@pytest.fixture(scope="module")
def cnn():
    return kerasmodels.small_cnn(seed=0)


@pytest.fixture(scope="module")
def calib() -> qs.Dataset:
    x, _ = kerasmodels.quadrant_images(48, seed=11)
    return qs.Dataset.from_arrays({"image": x})


@pytest.fixture(scope="module")
def evaluation() -> qs.Dataset:
    x, y = kerasmodels.quadrant_images(96, seed=12)
    return qs.Dataset.from_arrays({"image": x}, labels=y)


@pytest.fixture(scope="module")
def variants(cnn, calib, tmp_path_factory) -> dict[str, tflite.TFLiteVariant]:
    out = tmp_path_factory.mktemp("tflite")
    written = tflite.convert_keras(cnn, out, calib=calib, variants=ALL, num_samples=32, stem="cnn")
    return {v.name: v for v in written}


def _tensor_dtypes(path) -> set[str]:
    interpreter = Interpreter(model_path=str(path))
    return {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}


def test_the_converter_variants_are_written_with_their_types(variants):
    assert list(variants) == [f"tflite-{v}" for v in ALL]
    for v in variants.values():
        assert v.path.is_file() and v.path.name == f"cnn.{v.name.removeprefix('tflite-')}.tflite"
        assert v.inputs[0].name == "image" and v.inputs[0].shape == ("batch", 16, 16, 3)
        assert v.inputs[0].dtype == np.float32  # int8 inputs are quantized for the caller
    assert "int8" in _tensor_dtypes(variants["tflite-dynamic"].path)  # int8 weights
    assert "int8" in _tensor_dtypes(variants["tflite-int8"].path)
    assert "float16" in _tensor_dtypes(variants["tflite-float16"].path)
    assert set(variants["tflite-int8"].io_quantization) == set()  # float inputs and outputs
    scales = variants["tflite-int8-io"].io_quantization
    assert set(scales) == {"image", "output_0"} and all(s > 0 for s, _ in scales.values())
    assert variants["tflite-int8"].size_bytes < variants["tflite-float16"].size_bytes


def test_variants_run_and_match_the_framework(cnn, variants, evaluation):
    x = evaluation.bind(variants["tflite-int8"].inputs)
    ref = cnn(next(iter(x.batches(96))).inputs["image"], training=False).numpy()
    outs = {name: v.predict(evaluation, batch_size=40)[0] for name, v in variants.items()}
    for name, out in outs.items():
        assert out.shape == ref.shape and out.dtype == np.float32, name
    # SQNR floors against the float Keras model (measured here: float16 69 dB, dynamic 51, int8 33)
    assert sqnr_db(ref, outs["tflite-float16"]) > 50.0
    assert sqnr_db(ref, outs["tflite-dynamic"]) > 25.0
    assert sqnr_db(ref, outs["tflite-int8"]) > 15.0
    assert top1_agreement(ref, outs["tflite-int8"]) >= 0.9
    # int8 in/out: the same integer model, fed through the tensors' own scale and zero point
    out_scale, _ = variants["tflite-int8-io"].io_quantization["output_0"]
    assert np.max(np.abs(outs["tflite-int8-io"] - outs["tflite-int8"])) <= 4 * out_scale + 1e-6
    assert top1_agreement(outs["tflite-int8"], outs["tflite-int8-io"]) >= 0.95


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(1e-3, 1.0),
    zero_point=st.integers(-128, 127),
    values=st.lists(st.floats(-300.0, 300.0, width=32), min_size=1, max_size=32),
)
def test_int8_inputs_round_trip_within_half_a_step(scale, zero_point, values):
    detail = {"dtype": np.int8, "quantization": (scale, zero_point)}
    x = np.asarray(values, dtype=np.float32)
    q = tflite.quantize_inputs({"x": x}, {"x": detail})["x"]
    assert q.dtype == np.int8
    back = tflite.dequantize(q, detail)
    lo, hi = (-128 - zero_point) * np.float32(scale), (127 - zero_point) * np.float32(scale)
    inside = (x >= lo) & (x <= hi)
    assert np.all(np.abs(back[inside] - x[inside]) <= np.float32(scale) / 2 + 1e-5 * max(1.0, float(np.max(np.abs(x)))))
    assert np.all(back[x > hi] == np.float32((127 - zero_point) * np.float32(scale)))  # saturates


def test_reported_side_by_side_with_onnx_variants(cnn, variants, calib, evaluation):
    float_model = to_onnx(cnn, next(iter(evaluation.batches(8))).inputs["image"])
    q = qs.quantize(float_model, qs.StaticInt8(), calib)
    options = AnalysisOptions(batch_sizes=(1, 8), threads=(1,), warmup=1, runs=3, memory=False, energy=False,
                              layers=False, sensitivity=0)
    results = qs.analyze(float_model, {"static-int8": q}, evaluation, options=options)
    both = tflite.add_to_results(results, float_model, list(variants.values()), evaluation, options=options)
    assert [v.name for v in both.variants] == ["float", "static-int8", *variants]
    assert [v.kind for v in both.variants] == ["float", "onnx", "tflite", "tflite", "tflite", "tflite"]
    for row in both.variants[2:]:
        assert row.quality["accuracy"] > 0.8 and row.quality["agreement"] >= 0.9
        assert row.size_bytes == (variants[row.name].path.stat().st_size)
        assert {(lat.batch, lat.threads) for lat in row.latency} == {(1, 1), (8, 1)}
        assert all(lat.median_ms > 0 for lat in row.latency)
    onnx_int8 = both.variant("static-int8").quality["agreement"]
    assert onnx_int8 >= 0.9  # and quantscope's own int8 variant stands beside them
    restored = type(both).from_dict(both.to_dict())  # the report's schema round-trips the rows
    assert [v.kind for v in restored.variants] == [v.kind for v in both.variants]
    reference = predict(float_model, evaluation)[0]
    assert both.variant("tflite-float16").quality["sqnr_db"] == pytest.approx(
        sqnr_db(reference, variants["tflite-float16"].predict(evaluation)[0]))


def test_bad_requests_are_config_errors(cnn, tmp_path):
    with pytest.raises(ConfigError, match="need a representative dataset"):
        tflite.convert_keras(cnn, tmp_path, variants=("int8",))
    with pytest.raises(ConfigError, match="unknown TFLite variant"):
        tflite.convert_keras(cnn, tmp_path, variants=("int4",))


def test_a_savedmodel_directory_converts_and_loads_back(cnn, tmp_path, evaluation):
    saved = tmp_path / "saved"
    cnn.export(saved, verbose=False)
    (variant,) = tflite.convert_keras(saved, tmp_path, variants=("float16",), stem="saved")
    again = tflite.load(variant.path, "again")
    x = next(iter(evaluation.batches(16))).inputs["image"]
    ref = cnn(x, training=False).numpy()
    got = again.predict(qs.Dataset.from_arrays({"image": x}), batch_size=5)[0]
    assert again.name == "again" and sqnr_db(ref, got) > 50.0


def test_a_custom_metric_is_carried_to_the_tflite_rows(cnn, variants, evaluation):
    def hits(outputs, labels):
        return float(np.sum(outputs[0].argmax(1) == labels))

    float_model = to_onnx(cnn, next(iter(evaluation.batches(4))).inputs["image"])
    options = AnalysisOptions(latency=False, memory=False, energy=False, layers=False, sensitivity=0)
    results = qs.analyze(float_model, {}, evaluation, metric=hits, options=options)
    with pytest.raises(ConfigError):  # a metric function cannot be found by its name
        tflite.add_to_results(results, float_model, [variants["tflite-float16"]], evaluation, options=options)
    both = tflite.add_to_results(results, float_model, [variants["tflite-float16"]], evaluation,
                                 options=options, metric=hits)
    row = both.variant("tflite-float16")
    labels = evaluation.labels
    assert row.quality["hits"] == hits(variants["tflite-float16"].predict(evaluation), labels)
    assert row.latency == []
