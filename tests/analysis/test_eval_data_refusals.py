"""Evaluation data refused early (issue 15): NaN/inf and unusable labels exit 3, named, before any model runs.

Through the CLI (``analyze``, ``sweep``, ``tune``, ``robustness``) on a tiny MLP built in code
(10 class scores per sample), and through the library to show nothing ran first.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import quantscope as qs
import tinymodels
from quantscope import cli
from quantscope.analysis import evaluate
from quantscope.analysis.compare import AnalysisOptions
from quantscope.analysis.sweep import all_failed_error, failure_note
from quantscope.errors import QuantscopeError, UnsupportedModelError

FAST = ("--no-memory", "--no-latency", "--top", "0")


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 1000)
    monkeypatch.setattr(cli.err_console, "_width", 1000)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = Path(tinymodels.save(tinymodels.mlp(), tmp_path / "mlp.onnx"))
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    return {"model": model, "calib": tmp_path / "calib.npz", "x": x, "dir": tmp_path}  # type: ignore[dict-item]


def _run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert "Traceback" not in text, text
    return result.exit_code, text


def _eval(files: dict, name: str, x: np.ndarray, **extra: np.ndarray) -> Path:
    path = files["dir"] / f"{name}.npz"
    np.savez(path, x=x, **extra)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_eval_data_exits_3_naming_input_sample_and_fix(files: dict, bad: float) -> None:
    x = files["x"].copy()
    x[7, 3] = bad
    data = _eval(files, "bad", x, labels=np.arange(16) % 10)
    code, text = _run("analyze", files["model"], "--data", data, *FAST)
    assert code == 3, text
    kind = "1 NaN and 0 infinite" if np.isnan(bad) else "0 NaN and 1 infinite"
    assert "the evaluation data (npz file " in text and "bad.npz" in text
    assert f"input 'x': sample 7 holds {kind} value(s)" in text
    assert "clean or drop these samples" in text


@pytest.mark.parametrize("command", ["sweep", "tune", "robustness"])
def test_every_command_that_evaluates_refuses_nan(files: dict, command: str) -> None:
    x = files["x"].copy()
    x[2, 0] = np.nan
    data = _eval(files, "nan", x)
    args: list[object] = [command, files["model"], "--data", data]
    if command == "sweep":
        args += ["--calib", files["calib"], "-m", "float16", *FAST]
    elif command == "tune":
        args += ["--calib", files["calib"], "-m", "float16", "--max-drop", "0.5"]
    else:
        args += ["--modality", "tabular"]
    code, text = _run(*args)
    assert code == 3, text
    assert "sample 2 holds 1 NaN" in text and "nan.npz" in text


LABEL_CASES = {
    "out_of_range": (np.arange(16), r"6 sample(s) out of range (sample 10: 10, the labels span 0..15); "
                                    "the model scores 10 classes, so labels must lie in 0..9"),
    "float": (np.random.default_rng(1).random(16).astype(np.float32), "are float32 and not whole numbers"),
    "whole_floats": ((np.arange(16) % 10).astype(np.float64), "labels.astype(np.int64)"),
    "one_hot": (np.eye(10, dtype=np.int64)[np.arange(16) % 10], "have shape (16, 10) ((10,) per sample)"),
    "strings": (np.array(["cat", "dog"] * 8), "are text ('cat', 'dog', ...)"),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_unusable_labels_exit_3_naming_the_labels(files: dict, case: str) -> None:
    labels, expected = LABEL_CASES[case]
    data = _eval(files, case, files["x"], labels=labels)
    code, text = _run("analyze", files["model"], "--data", data, *FAST)
    assert code == 3, text
    assert "the labels of the evaluation data (npz file " in text and f"{case}.npz" in text
    assert expected in text, text
    assert "The metric 'accuracy' needs class-index labels" in text and "--metric agreement" in text
    assert "cannot be computed" not in text


def test_sweep_refuses_bad_labels_before_quantizing(files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_module = importlib.import_module("quantscope.analysis.sweep")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("quantized before the labels were checked")

    monkeypatch.setattr(sweep_module, "quantize", never)
    data = _eval(files, "oor", files["x"], labels=np.full(16, 12))
    code, text = _run("sweep", files["model"], "--calib", files["calib"], "--data", data, "-m", "float16", *FAST)
    assert code == 3, text
    assert "out of range" in text


def test_fidelity_metric_ignores_labels_it_does_not_use(files: dict) -> None:
    data = _eval(files, "regression", files["x"], labels=np.random.default_rng(2).random(16))
    code, text = _run("analyze", files["model"], "--data", data, "--metric", "cosine", *FAST)
    assert code == 0, text


def test_library_refuses_before_any_model_runs(files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model ran before the data was checked")

    monkeypatch.setattr(evaluate, "make_session", never)
    model = qs.load(files["model"])
    x = files["x"].copy()
    x[15, 63] = np.inf
    with pytest.raises(qs.NonFiniteDataError, match="sample 15"):
        qs.analyze(model, [], qs.Dataset.from_arrays(x))
    with pytest.raises(qs.DataError, match="out of range"):
        qs.analyze(model, [], qs.Dataset.from_arrays(files["x"], labels=np.full(16, -1)))


def test_good_labels_are_used_as_class_indices(files: dict) -> None:
    """(N, 1) integer labels and booleans are accepted and scored as class indices."""
    model = qs.load(files["model"])
    labels = (np.arange(16) % 2).astype(bool).reshape(16, 1)
    res = qs.analyze(model, [], qs.Dataset.from_arrays(files["x"], labels=labels),
                     options=AnalysisOptions(latency=False, memory=False, energy=False, layers=False))
    assert 0.0 <= res.reference.quality["accuracy"] <= 1.0


def test_sweep_where_every_variant_failed_says_why() -> None:
    bug = failure_note("float16", RuntimeError("boom"))
    misfit = failure_note("weight-int8", UnsupportedModelError("nothing to quantize"))
    internal = all_failed_error([bug])
    assert type(internal) is QuantscopeError and internal.exit_code == 1
    assert "internal error" in str(internal) and "boom" in str(internal)
    mixed = all_failed_error([bug, misfit])
    assert isinstance(mixed, UnsupportedModelError) and mixed.exit_code == 3
    assert "nothing to quantize" in str(mixed)
    assert all_failed_error([]).exit_code == 3


def test_a_sweep_reads_the_data_for_the_check_once(files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """sweep -> analyze -> per-layer error: the finite check is one pass, however many steps ask."""
    checks: list[str] = []
    real = qs.Dataset.require_finite

    def counted(self: qs.Dataset, purpose: str = "evaluation") -> qs.Dataset:
        checks.append(purpose)
        return real(self, purpose)

    monkeypatch.setattr(qs.Dataset, "require_finite", counted)
    model = qs.load(files["model"])
    data = qs.Dataset.from_arrays(files["x"], labels=np.arange(16) % 10)
    qs.sweep(model, None, data, methods=["float16", "weight-int8"],
             options=AnalysisOptions(latency=False, memory=False, energy=False, layers=True))
    assert checks == ["evaluation"]


@pytest.mark.parametrize("command", ["sweep", "tune"])
def test_when_every_candidate_fails_the_exit_is_3_with_the_reason(tmp_path: Path, command: str) -> None:
    model = Path(tinymodels.save(tinymodels.no_quantizable_ops(), tmp_path / "noq.onnx"))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32))
    extra = ("--max-drop", "0.1") if command == "tune" else FAST
    code, text = _run(command, model, "--calib", data, "--data", data, "-m", "weight-int8", "-m", "dynamic-int8",
                      *extra)
    assert code == 3, text
    assert "every variant of the sweep failed" in text and "weight-int8: not applicable" in text
