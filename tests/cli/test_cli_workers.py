"""``quantscope sweep --workers N`` / ``--scheduler``: the jobs run on a Dask cluster; ``-v`` logs each job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tinymodels
from quantscope.cli import main

FAST = ["--no-memory", "--runs", "2", "--batch", "4", "--top", "0", "-m", "dynamic-int8", "-m", "static-int8"]


def _files(tmp_path: Path) -> list[Path]:
    model = tinymodels.mlp()
    (tmp_path / "mlp.onnx").write_bytes(model.SerializeToString())
    x = np.random.default_rng(0).standard_normal((48, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{model.graph.input[0].name: x[:24]})
    np.savez(tmp_path / "eval.npz", **{model.graph.input[0].name: x[24:]})
    return [tmp_path / "mlp.onnx", tmp_path / "calib.npz", tmp_path / "eval.npz"]


def _sweep(tmp_path: Path, *extra: object, verbose: bool = False):
    model, calib, data = _files(tmp_path)
    args = [*(["-v"] if verbose else []), "sweep", model, "--calib", calib, "--data", data, *FAST, *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def test_scheduler_and_workers_together_are_refused(tmp_path: Path) -> None:
    result = _sweep(tmp_path, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2")
    assert result.exit_code == 3, result.output
    assert "--workers" in result.output


def test_workers_must_be_positive(tmp_path: Path) -> None:
    assert _sweep(tmp_path, "--workers", "0").exit_code == 2


@pytest.mark.slow
def test_sweep_on_two_local_workers_logs_each_job_and_says_where_it_timed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "report"
    with caplog.at_level(logging.INFO, logger="quantscope"):
        result = _sweep(tmp_path, "--workers", "2", "--report", out, verbose=True)
    assert result.exit_code == 0, result.output
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("quantscope"))
    assert "quantizing static-int8/minmax: done" in logged
    assert "timing float: done" in logged
    assert "worker kind" in " ".join(result.output.split())
    assert "worker kind" in (out / "summary.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert all(v["measured_on"] for v in saved["variants"])


@pytest.mark.parametrize("command", ["tune", "robustness"])
def test_tune_and_robustness_take_the_executor_flags(tmp_path: Path, command: str) -> None:
    model, calib, data = _files(tmp_path)
    args = {"tune": ["tune", model, "--calib", calib, "--data", data, "--max-drop", "1%"],
            "robustness": ["robustness", model, "--data", data, "--modality", "tabular"]}[command]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"]])
    assert result.exit_code == 3, result.output
    assert "--workers" in result.output


@pytest.mark.slow
def test_robustness_cells_on_two_local_workers(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    model, _, data = _files(tmp_path)
    args = ["robustness", model, "--data", data, "--modality", "tabular", "--severities", "1", "--workers", "2",
            "--report", tmp_path / "report"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert {p["severity"] for p in saved["robustness"]["shifts"]} == {0.0, 1.0}
