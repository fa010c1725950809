"""scikit-learn → ONNX: an MLP pipeline that quantizes, a random forest that cannot, and pickles."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import quantscope as qs
from quantscope.analysis.evaluate import predict
from quantscope.errors import ConfigError, ConversionError, UnsupportedModelError
from quantscope.importers import from_path, importer_for, to_onnx
from quantscope.importers._proto import dedupe_opsets, finalize
from quantscope.importers.check import compare_one
from quantscope.numerics.metrics import sqnr_db


def _tabular(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes from two informative features of twelve (float64, as users have it)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)) * rng.uniform(0.5, 4.0, 12)
    y = (x[:, 0] > 0).astype(int) + (x[:, 3] > 1).astype(int)
    return x, y


@pytest.fixture(scope="module")
def mlp() -> object:
    x, y = _tabular(400, seed=0)
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=200, random_state=0)
    return make_pipeline(StandardScaler(), clf).fit(x, y)


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    x, y = _tabular(400, seed=0)
    return RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0).fit(x, y)


def test_mlp_pipeline_imports_quantizes_and_is_analyzed(mlp):
    x_ex, _ = _tabular(32, seed=1)
    model = to_onnx(mlp, x_ex)
    onnx.checker.check_model(model.to_proto(), full_check=True)
    (inp,) = model.inputs
    assert inp.dtype == np.float32 and inp.shape == ("batch", 12)  # float64 data → float32 input
    assert [o.name for o in model.outputs] == ["label", "probabilities"]
    assert model.ir.graph.name == "Pipeline"
    ops = model.op_histogram()
    assert ops["MatMul"] == 3 and "ZipMap" not in " ".join(ops)
    assert any("equal" in n and "probabilities: max |diff|" in n for n in model.notes)

    calib_x, _ = _tabular(128, seed=2)
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"X": calib_x.astype(np.float32)}))
    onnx.checker.check_model(q.model.to_proto(), full_check=True)
    decisions = {d.op_type: d for d in q.plan.decisions}
    assert sum(d.op_type == "MatMul" and d.action == "quantized" for d in q.plan.decisions) == 3
    assert decisions["Scaler"].action == "float"  # the StandardScaler: an ai.onnx.ml operator
    assert "ai.onnx.ml::Scaler is outside the default ONNX domain" in decisions["Scaler"].reason
    assert any("ai.onnx.ml operators" in n for n in q.plan.notes)  # the importer's note reaches the plan

    eval_x, eval_y = _tabular(300, seed=3)
    data = qs.Dataset.from_arrays({"X": eval_x.astype(np.float32)}, labels=eval_y)
    ref_label, ref_prob = predict(model, data)
    q_label, q_prob = predict(q.model, data)
    assert sqnr_db(ref_prob, q_prob) > 20.0  # int8 MLP probabilities: typically 30+ dB
    assert float(np.mean(ref_label == q_label)) >= 0.95
    assert float(np.mean(ref_label == eval_y)) > 0.8  # and the model is a real classifier


def test_random_forest_becomes_ml_operators_that_int8_cannot_quantize(forest):
    x_ex, _ = _tabular(64, seed=4)
    model = to_onnx(forest, x_ex)
    onnx.checker.check_model(model.to_proto(), full_check=True)
    assert model.op_histogram() == {"ai.onnx.ml::TreeEnsembleClassifier": 1}
    proto = model.to_proto()
    domains = [o.domain for o in proto.opset_import]
    assert len(domains) == len(set(domains))  # skl2onnx wrote the default opset twice; we keep one
    assert any("int8 methods cannot quantize" in n for n in model.notes)
    with pytest.raises(UnsupportedModelError, match=r"ai\.onnx\.ml::TreeEnsembleClassifier"):
        qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"X": x_ex.astype(np.float32)}))
    # analysis still applies: the ONNX model predicts what scikit-learn predicts on unseen data
    eval_x, _ = _tabular(200, seed=5)
    labels, probs = predict(model, qs.Dataset.from_arrays({"X": eval_x.astype(np.float32)}))
    x32 = eval_x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(labels, forest.predict(x32))
    np.testing.assert_allclose(probs, forest.predict_proba(x32), atol=1e-5)


def test_string_class_labels_are_checked_exactly():
    x, y = _tabular(200, seed=6)
    names = np.array(["low", "mid", "high"])[y]
    clf = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(x, names)
    model = to_onnx(clf, x[:40])
    assert model.outputs[0].dtype.kind in "OU"
    assert any("label: equal" in n for n in model.notes)


def test_duplicate_opset_imports_are_normalised():
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("ai.onnx.ml", 3),
                       onnx.helper.make_opsetid("", 18)],
    )
    before = onnx.ModelProto()
    before.CopyFrom(proto)
    model = finalize(proto)
    assert proto == before  # the converter's proto is not modified
    assert {(o.domain, o.version) for o in model.to_proto().opset_import} == {("", 18), ("ai.onnx.ml", 3)}
    assert model.inputs[0].shape == ("batch", 3)
    assert any("more than once" in n for n in model.notes)
    assert dedupe_opsets(model.to_proto()) == []


def test_pickles_need_trust(tmp_path, forest):
    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(forest))
    x_ex, _ = _tabular(16, seed=7)
    with pytest.raises(ConfigError, match="runs arbitrary code"):
        from_path(path, x_ex)
    model = from_path(path, x_ex, trust=True)
    assert model.op_histogram() == {"ai.onnx.ml::TreeEnsembleClassifier": 1}


def test_label_mismatch_and_bad_examples_are_reported(forest):
    with pytest.raises(ConversionError, match=r"in 2 of 6 value\(s\); first at index \(1,\)"):
        compare_one("label", np.array([0, 2, 1, 1, 0, 2]), np.array([0, 1, 1, 1, 0, 1]),
                    framework="scikit-learn", rtol=0, atol=0)
    with pytest.raises(ConfigError, match="fitted on 12 features but the example has 5"):
        to_onnx(forest, np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="needs example inputs"):
        to_onnx(forest)
    assert importer_for(forest).name == "sklearn"


def test_cli_convert_needs_trust_for_pickles(tmp_path, forest):
    from click.testing import CliRunner

    from quantscope import cli

    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(forest))
    x_ex, _ = _tabular(20, seed=8)
    np.savez(tmp_path / "example.npz", X=x_ex, labels=np.zeros(20))
    out = tmp_path / "forest.onnx"
    refused = CliRunner().invoke(cli.main, ["convert", str(path), "-o", str(out), "--example", str(tmp_path / "example.npz")])
    assert refused.exit_code == 3 and "runs arbitrary code" in " ".join(refused.output.split())
    assert not out.exists()
    done = CliRunner().invoke(
        cli.main, ["convert", str(path), "-o", str(out), "--example", str(tmp_path / "example.npz"), "--trust"],
    )
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "int8 methods cannot quantize" in text and "label: equal" in text
    assert qs.load(out).op_histogram() == {"ai.onnx.ml::TreeEnsembleClassifier": 1}


def test_default_ops_turn_a_linear_model_into_a_matmul_graph_that_quantizes():
    from sklearn.linear_model import LogisticRegression

    x, y = _tabular(300, seed=9)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    plain = to_onnx(clf, x[:32])
    assert "ai.onnx.ml::LinearClassifier" in plain.op_histogram()
    assert any("default_ops=True" in n for n in plain.notes)  # the note says how to do better
    model = to_onnx(clf, x[:32], default_ops=True)
    ops = model.op_histogram()
    assert "ai.onnx.ml::LinearClassifier" not in ops and ops["MatMul"] == 1
    onnx.checker.check_model(model.to_proto(), full_check=True)
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"X": x[:64].astype(np.float32)}))
    assert [d.op_type for d in q.plan.quantized_nodes] == ["Gemm"]  # MatMul + bias, fused
    data = qs.Dataset.from_arrays({"X": x[100:].astype(np.float32)})
    ref_label, ref = predict(model, data)
    got_label, got = predict(q.model, data)
    assert sqnr_db(ref, got) > 18.0  # int8 probabilities, unscaled features: measured 24 dB
    assert float(np.mean(ref_label == got_label)) >= 0.9
    with pytest.raises(ConfigError, match="does not take these options"):
        to_onnx(clf, x[:8], not_an_option=True)
