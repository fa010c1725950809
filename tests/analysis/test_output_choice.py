"""Which output to measure: the most informative float output by default, ``--output NAME`` / ``output=``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import quantscope as qs
from quantscope.analysis.options import AnalysisOptions
from quantscope.analysis.outputs import choose_outputs
from quantscope.cli import main
from quantscope.errors import ConfigError

QUICK = AnalysisOptions(latency=False, memory=False, energy=False, layers=False, sensitivity=0)


def _tabular(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 12)) * rng.uniform(0.5, 4.0, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A scikit-learn pipeline converted by quantscope (outputs: int64 ``label`` first, then probabilities),
    its static-int8 variant, and labelled evaluation data."""
    out = tmp_path_factory.mktemp("sk")
    x, y = _tabular(300, seed=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0))
    model = qs.to_onnx(pipe.fit(x, y), x[:32])
    assert [o.name for o in model.outputs] == ["label", "probabilities"]
    path = qs.save(model, out / "clf.onnx")
    q = qs.quantize(qs.load(path), qs.StaticInt8(), qs.Dataset.from_arrays({"X": x[:64]}))
    variant = q.save(out / "clf.int8.onnx")
    ex, ey = _tabular(200, seed=1)
    data = out / "eval.npz"
    np.savez(data, X=ex, labels=ey)
    return path, variant, data


def test_the_default_is_the_float_output_with_the_most_information(classifier) -> None:
    path, _, _ = classifier
    model = qs.load(path)
    assert choose_outputs(model) == ["probabilities"]
    assert choose_outputs(model, "label") == ["label"]
    assert choose_outputs(model, ["probabilities", "label", "probabilities"]) == ["probabilities", "label"]
    with pytest.raises(ConfigError, match=r"no output .scores.*label"):
        choose_outputs(model, "scores")


def test_a_converted_sklearn_classifier_is_analysed_from_the_cli_with_no_special_flags(classifier, tmp_path) -> None:
    path, variant, data = classifier
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["analyze", str(path), str(variant), "--data", str(data), "--no-memory",
                                       "--top", "0", "--runs", "3", "--report", str(report)])
    assert result.exit_code == 0, result.output
    saved = json.loads((report / "results.json").read_text())
    assert saved["outputs"] == ["probabilities"] and saved["metric"] == "accuracy"
    (q,) = [v["quality"] for v in saved["variants"] if v["kind"] != "float"]
    assert 0.5 < q["accuracy"] <= 1.0 and "cosine" in q and "kl" in q  # fidelity on the probabilities
    # --output names the output; repeated, the others are measured too under "metric[output]"
    again = CliRunner().invoke(main, ["analyze", str(path), str(variant), "--data", str(data), "--no-memory",
                                      "--no-latency", "--top", "0", "--output", "label", "--output", "probabilities",
                                      "--report", str(tmp_path / "r2")])
    assert again.exit_code == 0, again.output
    saved = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert saved["outputs"] == ["label", "probabilities"]
    (q,) = [v["quality"] for v in saved["variants"] if v["kind"] != "float"]
    assert "cosine" not in q and "cosine[probabilities]" in q and "accuracy[probabilities]" in q
    bad = CliRunner().invoke(main, ["analyze", str(path), "--data", str(data), "--output", "nope"])
    assert bad.exit_code == 3 and "no output 'nope'" in bad.output


def test_the_api_takes_output_in_analyze_sweep_tune_and_robustness(classifier) -> None:
    path, variant, data = classifier
    model = qs.load(path)
    ds = qs.Dataset.from_npz(data)
    by_label = qs.analyze(model, [variant], ds, output="label", options=QUICK)
    assert by_label.outputs == ["label"] and "cosine" not in by_label.variants[1].quality
    swept = qs.sweep(model, None, ds, methods=["float16"], output=["probabilities"], options=QUICK)
    assert swept.outputs == ["probabilities"] and "cosine" in swept.variant("float16").quality
    rob = qs.robustness(model, {"int8": qs.load(variant)}, ds, modality="tabular", metric="cosine",
                        severities=(0.0, 1.0), calibration_sizes=None)
    assert rob.metric == "cosine"  # computable only on the probabilities, the default output
    tuned = qs.tune(model, None, ds, max_drop=0.5, methods=["float16"], output="probabilities")
    assert tuned.results.outputs == ["probabilities"] and tuned.name == "float16"
