"""``quantscope sweep`` with --robustness and with --backend tflite: one report holds everything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import kerasmodels
import tinymodels
from quantscope.cli import main

FAST = ["--no-memory", "--runs", "2", "--batch", "4", "--top", "0"]


def _invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_sweep_with_robustness_reports_shifts_for_every_variant(tmp_path: Path) -> None:
    model_path = tmp_path / "mlp.onnx"
    model = tinymodels.mlp()
    model_path.write_bytes(model.SerializeToString())
    name = model.graph.input[0].name
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{name: x[:32]})
    np.savez(tmp_path / "eval.npz", **{name: x[32:]})
    out = tmp_path / "report"
    result = _invoke("sweep", model_path, "--calib", tmp_path / "calib.npz", "--data", tmp_path / "eval.npz",
                     "-m", "static-int8", "-m", "float16", "--robustness", "--modality", "tabular",
                     "--report", out, *FAST)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    rob = saved["robustness"]
    variants = {v["name"] for v in saved["variants"]}
    assert {p["variant"] for p in rob["shifts"]} == variants
    assert {"feature_noise", "feature_scaling"} <= {p["shift"] for p in rob["shifts"]}
    assert "Robustness" in (out / "index.html").read_text()


def test_sweep_robustness_needs_a_modality(tmp_path: Path) -> None:
    model_path = tmp_path / "mlp.onnx"
    model_path.write_bytes(tinymodels.mlp().SerializeToString())
    result = _invoke("sweep", model_path, "--calib", "c.npz", "--data", "d.npz", "--robustness")
    assert result.exit_code != 0 and "--modality" in result.output


def test_sweep_tflite_backend_puts_converter_variants_beside_ours(tmp_path: Path) -> None:
    cnn = kerasmodels.small_cnn(seed=0)
    keras_path = tmp_path / "cnn.keras"
    cnn.save(keras_path)
    x, y = kerasmodels.quadrant_images(96, seed=3)
    np.savez(tmp_path / "calib.npz", image=x[:48])
    np.savez(tmp_path / "eval.npz", image=x[48:], labels=y[48:])
    out = tmp_path / "report"
    result = _invoke("sweep", keras_path, "--backend", "tflite", "--calib", tmp_path / "calib.npz",
                     "--data", tmp_path / "eval.npz", "-m", "static-int8", "--report", out, *FAST)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    kinds = {v["name"]: v["kind"] for v in saved["variants"]}
    assert sorted(k for k in kinds.values() if k == "tflite") == ["tflite"] * 3, kinds
    assert "float" in kinds.values() and "onnx" in kinds.values()
    for v in saved["variants"]:
        assert 0.5 <= v["quality"]["accuracy"] <= 1.0, (v["name"], v["quality"])
    assert len(list((out / "tflite").glob("*.tflite"))) == 3
