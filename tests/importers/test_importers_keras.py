"""Keras 3 → ONNX (tf2onnx from_function) → static-int8 → analysis; .keras files and SavedModels."""

from __future__ import annotations

import keras  # the [tensorflow] extra is part of [test]: CI runs these tests, nothing is skipped
import numpy as np
import onnx
import pytest

import kerasmodels
import quantscope as qs
from quantscope.analysis.evaluate import predict
from quantscope.errors import ConfigError
from quantscope.importers import from_path, importer_for, to_onnx
from quantscope.numerics.metrics import sqnr_db, top1_agreement
from quantscope.runtime import make_session, optimized_op_types, run


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return kerasmodels.small_cnn(seed=0)


@pytest.fixture(scope="module")
def imported(cnn) -> qs.Model:
    x, _ = kerasmodels.quadrant_images(8, seed=1)
    return to_onnx(cnn, x)


def test_import_structure_and_validity(cnn, imported):
    assert importer_for(cnn).name == "keras"
    onnx.checker.check_model(imported.to_proto(), full_check=True)
    (inp,) = imported.inputs
    assert inp.name == "image" and inp.shape == ("batch", 16, 16, 3)  # NHWC, as Keras takes it
    assert [o.name for o in imported.outputs] == ["output"]
    assert imported.ir.graph.name == "small_cnn"
    ops = imported.op_histogram()
    assert ops["Conv"] == 2 and "BatchNormalization" not in ops  # tf2onnx folds inference-mode BN
    assert any("from_function" in n for n in imported.notes)
    assert any("max |diff|" in n for n in imported.notes)


def test_import_numerics_on_another_batch(cnn, imported):
    x, _ = kerasmodels.quadrant_images(11, seed=2)
    got = run(make_session(imported), {"image": x})[0]
    np.testing.assert_allclose(got, cnn(x, training=False).numpy(), atol=1e-4, rtol=1e-3)


def test_import_quantize_analyze(imported):
    calib_x, _ = kerasmodels.quadrant_images(64, seed=3)
    eval_x, eval_y = kerasmodels.quadrant_images(128, seed=4)
    q = qs.quantize(imported, qs.StaticInt8(), qs.Dataset.from_arrays({"image": calib_x}))
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    # the Dense layer's MatMul + bias Add is quantized as one Gemm, BatchNorm folded into Conv
    assert {"Conv", "Gemm"} <= {d.op_type for d in q.plan.quantized_nodes}
    assert not {"Mul", "Add"} & set(optimized_op_types(q.model))
    assert any("tf2onnx" in n for n in q.plan.notes)  # where the model came from, in the plan
    data = qs.Dataset.from_arrays({"image": eval_x}, labels=eval_y)
    ref = predict(imported, data)[0]
    got = predict(q.model, data)[0]
    assert sqnr_db(ref, got) > 20.0  # int8 on a 2-conv CNN: typically 30+ dB
    assert top1_agreement(ref, got) >= 0.95
    assert float(np.mean(ref.argmax(1) == eval_y)) > 0.8  # the model learned (chance: 0.25)


def test_keras_file_and_savedmodel_directory(tmp_path, cnn):
    x, _ = kerasmodels.quadrant_images(6, seed=5)
    expected = cnn(x, training=False).numpy()
    path = tmp_path / "cnn.keras"
    cnn.save(path)
    from_file = from_path(path, x)
    saved = tmp_path / "saved"
    cnn.export(saved, verbose=False)
    with pytest.raises(ConfigError, match="runs its graph"):  # a SavedModel is a program: refused by default
        to_onnx(str(saved), {"image": x})
    from_saved = to_onnx(str(saved), {"image": x}, trust=True)
    assert [o.name for o in from_saved.outputs] == ["output_0"]  # the signature's output key
    for model in (from_file, from_saved):
        got = run(make_session(model), {"image": x})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_multi_input_model_with_random_examples():
    keras.utils.set_random_seed(7)
    left = keras.Input((6,), name="left")
    right = keras.Input((3,), name="right")
    h = keras.layers.Dense(8, activation="relu", name="h")(keras.layers.Concatenate()([left, right]))
    model = keras.Model([left, right], [keras.layers.Dense(2, name="a")(h), keras.layers.Dense(1, name="b")(h)])
    m = to_onnx(model)  # no examples: seeded random ones, and the notes say so
    assert [i.name for i in m.inputs] == ["left", "right"]
    assert [o.name for o in m.outputs] == ["a", "b"]
    assert any("seeded random example inputs" in n for n in m.notes)
    rng = np.random.default_rng(8)
    feeds = {"left": rng.standard_normal((5, 6)).astype(np.float32),
             "right": rng.standard_normal((5, 3)).astype(np.float32)}
    got = run(make_session(m), feeds)
    want = model([feeds["left"], feeds["right"]], training=False)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-4)


def test_bad_paths_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        from_path(tmp_path / "missing.keras")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="not a TensorFlow SavedModel"):
        from_path(tmp_path / "plain")
    (tmp_path / "model.xyz").write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot tell what kind of model"):
        from_path(tmp_path / "model.xyz")


def test_cli_convert_a_keras_file(tmp_path, cnn):
    from click.testing import CliRunner

    from quantscope import cli

    path = tmp_path / "cnn.keras"
    cnn.save(path)
    out = tmp_path / "cnn.onnx"
    result = CliRunner().invoke(cli.main, ["convert", str(path), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "reproduces tensorflow" in " ".join(result.output.split())
    x, _ = kerasmodels.quadrant_images(3, seed=9)
    got = run(make_session(qs.load(out)), {"image": x})[0]
    np.testing.assert_allclose(got, cnn(x, training=False).numpy(), atol=1e-4, rtol=1e-3)
