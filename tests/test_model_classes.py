"""Every class of real model, from the CLI with no special flags: quantize (every method), analyze, sweep.

The classes (``tests/modelclasses.py``): fixed batch 1, a scalar and a ``[2, batch, H]`` state
input, a GRU inside an ``If`` on a scalar, Constant-node weights, an LSTM and a GRU; plus a
scikit-learn classifier from ``convert`` (its first output is the int64 label) and a small
transformer encoder through float16 (a pattern that crashed ONNX Runtime at its default level).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner, Result

import modelclasses
from quantscope.cli import main
from quantscope.config import method_names

pytestmark = pytest.mark.slow


def _invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _write(tmp_path: Path, name: str) -> tuple[Path, Path]:
    model, feeds = modelclasses.CLASSES[name]()
    model_path, calib_path = tmp_path / f"{name}.onnx", tmp_path / f"{name}.npz"
    onnx.save(model, model_path)
    np.savez(calib_path, **feeds)
    return model_path, calib_path


def _loads_at_default_level(path: Path) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()


@pytest.mark.parametrize("name", sorted(modelclasses.CLASSES))
def test_every_method_quantizes_every_class_from_the_cli(tmp_path: Path, name: str) -> None:
    model_path, calib_path = _write(tmp_path, name)
    for method in method_names():
        out = tmp_path / f"{name}.{method}.onnx"
        result = _invoke("quantize", model_path, "-m", method, "--calib", calib_path, "-o", out)
        assert result.exit_code == 0, f"{method} on {name}: {result.output}"
        _loads_at_default_level(out)
        plan = json.loads(out.with_name(out.stem + ".quantscope.json").read_text())["plan"]
        assert plan["summary"]["quantized"] > 0, f"{method} on {name} quantized nothing"


@pytest.mark.parametrize("name", sorted(modelclasses.CLASSES))
def test_every_class_is_analysed_and_swept_from_the_cli(tmp_path: Path, name: str) -> None:
    model_path, calib_path = _write(tmp_path, name)
    q = tmp_path / "q.onnx"
    assert _invoke("quantize", model_path, "--calib", calib_path, "-o", q).exit_code == 0
    result = _invoke("analyze", model_path, q, "--data", calib_path, "--no-memory", "--runs", 3, "--top", 1)
    assert result.exit_code == 0, result.output
    result = _invoke("sweep", model_path, "--calib", calib_path, "--data", calib_path, "--no-memory",
                     "--runs", 3, "--top", 0, "-m", "static-int8", "-m", "dynamic-int8", "-m", "weight-int8")
    assert result.exit_code == 0, result.output
