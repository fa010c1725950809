"""analyze, sweep and the quality gate on a tiny classifier; the CLI verbs and their exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from analysis_models import CLASSES, classifier, conv_matmul, inputs
from click.testing import CliRunner

import quantscope as qs
from quantscope.analysis import AnalysisOptions, analyze, quality_gate, sweep
from quantscope.analysis.evaluate import predict
from quantscope.analysis.memory import peak_memory
from quantscope.analysis.results import Results
from quantscope.cli import main
from quantscope.errors import DataMismatchError, EmptyDatasetError, ModelError, QualityGateError

FAST = AnalysisOptions(latency=False, memory=False, sensitivity=0, layer_samples=16)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.onnx (damaged fc2), model.int8.onnx + sidecar, calib.npz, eval.npz with known labels."""
    root = tmp_path_factory.mktemp("analysis")
    onnx.save(classifier(damaged=True), root / "model.onnx")
    x = inputs(256)
    model = qs.load(root / "model.onnx")
    float_pred = predict(model, qs.Dataset.from_arrays({"x": x[128:]}))[0].argmax(1)
    labels = float_pred.copy()
    labels[96:] = (labels[96:] + 1) % CLASSES  # the float model is right on exactly 96 of 128
    np.savez(root / "calib.npz", x=x[:128])
    np.savez(root / "eval.npz", x=x[128:], labels=labels)
    qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_npz(root / "calib.npz")).save(root / "model.int8.onnx")
    return {"root": root, "model": root / "model.onnx", "int8": root / "model.int8.onnx",
            "calib": root / "calib.npz", "eval": root / "eval.npz"}


def test_quality_against_a_hand_computation(files: dict[str, Path]) -> None:
    model = qs.load(files["model"])
    data = qs.Dataset.from_npz(files["eval"])
    results = analyze(model, [files["int8"]], data, options=FAST)
    assert results.metric == "accuracy" and results.higher_is_better
    assert [v.name for v in results.variants] == ["float", "int8"]
    ref, q = results.variants
    assert ref.quality["accuracy"] == 96 / 128 and ref.quality["agreement"] == 1.0
    assert math.isinf(ref.quality["sqnr_db"]) and ref.quality["kl"] == 0.0
    labels = data.labels
    f_out = predict(model, data)[0]
    q_out = predict(qs.load(files["int8"]), data)[0]
    assert q.quality["accuracy"] == pytest.approx(np.mean(q_out.argmax(1) == labels))
    assert q.quality["agreement"] == pytest.approx(np.mean(q_out.argmax(1) == f_out.argmax(1)))
    assert q.quality["agreement"] < 0.9  # the damaged layer shows
    assert results.drop(q) == pytest.approx(ref.quality["accuracy"] - q.quality["accuracy"])
    # size, parameters, plan and layers come from the file and its sidecar
    assert q.size_bytes == files["int8"].stat().st_size and ref.size_bytes == files["model"].stat().st_size
    assert q.param_bytes.get("int8", 0) > 0 and set(ref.param_bytes) == {"float32"}
    assert q.method == "static-int8" and q.config is not None and q.config["method"] == "static-int8"
    assert q.plan is not None and q.plan.quantized_ops.get("Gemm") == 3
    assert q.plan.runtime_ops.get("QGemm", 0) + q.plan.runtime_ops.get("QLinearMatMul", 0) >= 1
    assert q.layers[0].node == "fc2" and not ref.layers
    assert q.energy is not None and ref.energy is not None and q.energy.total_uj < ref.energy.total_uj
    assert q.warnings == []
    again = Results.from_dict(json.loads(json.dumps(results.to_dict())))
    assert again.variant("int8").quality == q.quality


def test_latency_memory_and_sensitivity(files: dict[str, Path]) -> None:
    model = qs.load(files["model"])
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_npz(files["calib"]))
    opts = AnalysisOptions(batch_sizes=(1, 8), threads=(1,), warmup=1, runs=3, memory=True, sensitivity=2,
                           sensitivity_samples=64, calib_samples=64, layer_samples=16)
    results = analyze(model, {"int8": q}, qs.Dataset.from_npz(files["eval"]), metric="agreement",
                      calib=qs.Dataset.from_npz(files["calib"]), options=opts)
    v = results.variant("int8")
    assert {(lat.batch, lat.threads) for lat in v.latency} == {(1, 1), (8, 1)}
    assert all(lat.median_ms > 0 and lat.p90_ms >= lat.median_ms for lat in v.latency)
    assert v.memory is not None and v.memory.peak_rss_mb > v.memory.baseline_rss_mb > 0
    assert v.sensitivity and v.sensitivity[0].node == "fc2" and v.sensitivity[0].delta < 0
    assert results.machine["cores"] >= 1 and "onnxruntime" in results.machine["versions"]


def test_memory_is_measured_in_a_subprocess(files: dict[str, Path]) -> None:
    m = peak_memory(files["model"], {"x": inputs(2)})
    assert m.peak_rss_mb > 0 and m.model_rss_mb >= 0 and m.batch == 2


def test_custom_metric_becomes_the_primary_metric(files: dict[str, Path]) -> None:
    def mean_max(outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
        return float(np.mean(outputs[0].max(axis=1)))

    results = analyze(qs.load(files["model"]), [files["int8"]], qs.Dataset.from_npz(files["eval"]),
                      metric=mean_max, options=FAST)
    assert results.metric == "mean_max"
    out = predict(qs.load(files["model"]), qs.Dataset.from_npz(files["eval"]))[0]
    assert results.reference.quality["mean_max"] == pytest.approx(float(np.mean(out.max(axis=1))))


def test_quality_gate(files: dict[str, Path]) -> None:
    results = analyze(qs.load(files["model"]), [files["int8"]], qs.Dataset.from_npz(files["eval"]),
                      max_drop=0.01, options=FAST)
    with pytest.raises(QualityGateError, match="budget") as exc:
        quality_gate(results)
    assert exc.value.exit_code == 4
    assert [v.name for v in quality_gate(results, 0.99)] == ["int8"]


def test_fingerprint_mismatch_warns(files: dict[str, Path], tmp_path: Path, caplog) -> None:
    other = tmp_path / "other.onnx"
    onnx.save(classifier(seed=5, damaged=True), other)
    with caplog.at_level("WARNING"):
        results = analyze(qs.load(other), [files["int8"]], qs.Dataset.from_npz(files["eval"]), options=FAST)
    assert any("different float model" in w for w in results.variant("model.int8").warnings)
    assert "different float model" in caplog.text


def test_bad_inputs_raise_clear_errors(files: dict[str, Path], tmp_path: Path) -> None:
    model = qs.load(files["model"])
    with pytest.raises(DataMismatchError):
        analyze(model, [files["int8"]], qs.Dataset.from_arrays({"x": np.zeros((4, 7), np.float32)}), options=FAST)
    with pytest.raises(EmptyDatasetError):
        analyze(model, [files["int8"]], qs.Dataset.from_arrays({"x": np.zeros((0, 16), np.float32)}),
                options=FAST)
    onnx.save(conv_matmul(), tmp_path / "conv.onnx")  # 10 outputs per sample, not 4
    with pytest.raises(ModelError, match="differs in shape"):
        analyze(model, [tmp_path / "conv.onnx"], qs.Dataset.from_npz(files["eval"]), options=FAST)


def test_sweep_records_failures_and_goes_on(files: dict[str, Path]) -> None:
    model = qs.load(files["model"])
    configs = {"static-int8/minmax": qs.StaticInt8(), "binary": qs.config_from_dict({"method": "binary"}),
               "dynamic-int8": qs.config_from_dict({"method": "dynamic-int8"})}
    seen: list[str] = []
    results = sweep(model, qs.Dataset.from_npz(files["calib"]), qs.Dataset.from_npz(files["eval"]),
                    methods=configs, options=FAST, progress=lambda what, done, total: seen.append(what))
    names = [v.name for v in results.variants]
    assert names[0] == "float" and "static-int8/minmax" in names
    assert any(w.startswith("quantizing") for w in seen)
    # binary leaves these small weights (< min_size) alone: nothing to quantize is a note, not a crash
    assert "binary" in names or any(n.startswith("binary:") for n in results.notes)


def test_sweep_configs_cover_every_calibrator() -> None:
    from quantscope.analysis import sweep_configs

    configs = sweep_configs()
    assert {"static-int8/minmax", "static-int8/percentile", "static-int8/entropy", "static-int8/mse",
            "cluster-4", "cluster-8", "ternary", "binary", "float16"} <= set(configs)


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_analyze_writes_results_and_gates(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["analyze", str(files["model"]), str(files["int8"]), "--data", str(files["eval"]),
            "--no-memory", "--no-latency", "--top", "0"]
    out = runner.invoke(main, [*base, "--report", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    results = Results.load(tmp_path / "r" / "results.json")
    assert [v.name for v in results.variants] == ["float", "int8"]
    gated = runner.invoke(main, [*base, "--max-drop", "1%", "--report", str(tmp_path / "g")])
    assert gated.exit_code == 4, gated.output
    assert (tmp_path / "g" / "results.json").exists()  # the report is written before the gate fails
    relaxed = runner.invoke(main, [*base, "--max-drop", "99%"])
    assert relaxed.exit_code == 0, relaxed.output


def test_cli_analyze_bad_input_exits_3(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 7), np.float32))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 16), np.float32))
    for data in ("wrong.npz", "empty.npz"):
        out = runner.invoke(main, ["analyze", str(files["model"]), str(files["int8"]), "--data",
                                   str(tmp_path / data), "--no-memory", "--no-latency"])
        assert out.exit_code == 3, out.output
    bad = runner.invoke(main, ["analyze", str(files["model"]), "--data", str(files["eval"]), "--max-drop", "lots"])
    assert bad.exit_code == 3


def test_cli_sweep_one_method(files: dict[str, Path], tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["sweep", str(files["model"]), "--calib", str(files["calib"]), "--data",
                                    str(files["eval"]), "-m", "dynamic-int8", "--no-memory", "--no-latency",
                                    "--report", str(tmp_path / "s")])
    assert out.exit_code == 0, out.output
    results = Results.load(tmp_path / "s" / "results.json")
    assert [v.name for v in results.variants] == ["float", "dynamic-int8"]
    unknown = CliRunner().invoke(main, ["sweep", str(files["model"]), "--calib", str(files["calib"]), "--data",
                                        str(files["eval"]), "-m", "no-such-method"])
    assert unknown.exit_code == 3, unknown.output
