"""What the README promises: exit codes, atomic writes, no model without its sidecar, a full disk handled."""

from __future__ import annotations

import importlib
import resource
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from reltools import assert_no_traceback, cli, hidden_entries, mlp_with_calib

import quantscope as qs
from quantscope import cli as qcli
from quantscope.errors import RuntimeFailure


def test_exit_2_for_a_command_line_that_does_not_parse() -> None:
    assert CliRunner().invoke(qcli.main, ["quantize", "--no-such-option"]).exit_code == 2
    assert CliRunner().invoke(qcli.main, ["quantize"]).exit_code == 2  # missing argument


def test_exit_3_for_a_refused_input(tmp_path: Path) -> None:
    result = cli("inspect", tmp_path / "missing.onnx")
    assert result.returncode == 3 and result.stderr.startswith("error: ModelError:")
    assert_no_traceback(result.stderr)


def test_no_model_without_its_sidecar_when_onnx_runtime_refuses(tmp_path: Path, monkeypatch) -> None:
    model = qs.load(mlp_with_calib(tmp_path)[0])
    q = qs.quantize(model, qs.DynamicInt8())

    def refuse(*args, **kwargs):
        raise RuntimeFailure("ONNX Runtime cannot load the model: injected")

    monkeypatch.setattr(importlib.import_module("quantscope.quantization"), "make_session", refuse)
    with pytest.raises(RuntimeFailure):
        q.save(tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "q.quantscope.json").exists()
    assert hidden_entries(tmp_path) == []


def _small_files_only() -> None:  # in the child: writes past 16 KB fail with EFBIG, like a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))


@pytest.mark.parametrize("method", ["dynamic-int8", "float16"])
def test_full_disk_keeps_the_old_pair_and_leaves_no_temp_files(tmp_path: Path, method: str) -> None:
    model, _ = mlp_with_calib(tmp_path)
    out = tmp_path / "out" / "q.onnx"
    out.parent.mkdir()
    assert cli("quantize", model, "-m", "weight-int4", "-o", out).returncode == 0
    side = out.with_name("q.quantscope.json")
    before = (out.read_bytes(), side.read_bytes())
    result = cli("quantize", model, "-m", method, "-o", out, preexec_fn=_small_files_only)  # 30+ KB: too big
    assert result.returncode == 3, result.stderr
    # quantscope's own write (OutputError), or float16's scratch model for its ONNX Runtime check
    assert result.stderr.startswith("error: OutputError" if method == "dynamic-int8" else "error: ")
    assert_no_traceback(result.stderr)
    assert (out.read_bytes(), side.read_bytes()) == before
    assert hidden_entries(out.parent) == []
