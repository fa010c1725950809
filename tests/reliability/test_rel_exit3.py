"""Poorly handled inputs: each exits 3 with one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from reltools import assert_no_traceback, cli, mlp_with_calib

import tinymodels
from quantscope import cli as qcli


def _exit3(result, *words: str) -> str:
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 3, text
    assert_no_traceback(result.stderr)
    for word in words:  # a long path may be wrapped mid-word at the terminal's width
        assert word in text or "".join(word.split()) in "".join(text.split()), (word, text)
    return text


def _unreadable(monkeypatch, path: Path) -> None:
    """Take read permission from ``path``; as root (who reads anything) make os.access say so."""
    path.chmod(0)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == path else real(p, mode, **kw))


@pytest.mark.parametrize("which", ["model", "calib"])
def test_unreadable_model_or_calib_exits_3(tmp_path: Path, monkeypatch, which: str) -> None:
    model, calib = mlp_with_calib(tmp_path)
    _unreadable(monkeypatch, model if which == "model" else calib)
    result = CliRunner().invoke(qcli.main, ["quantize", str(model), "--calib", str(calib), "-o",
                                            str(tmp_path / "q.onnx")])
    assert result.exit_code == 3, result.output
    assert "permission denied" in result.output and "chmod" in result.output


def _ir3_model(path: Path) -> Path:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)], ir_version=3)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_ir3_opset7_model_is_upgraded_and_the_output_is_valid(tmp_path: Path) -> None:
    source = _ir3_model(tmp_path / "old.onnx")
    for method in ("dynamic-int8", "float16"):
        out = tmp_path / f"{method}.onnx"
        result = cli("quantize", source, "-m", method, "-o", out)
        assert result.returncode == 0, result.stderr
        assert "upgraded on load from IR version 3" in " ".join(result.stderr.split())
        written = onnx.load(str(out))
        onnx.checker.check_model(written, full_check=True)
        assert written.ir_version >= 7


def test_config_that_is_not_utf8_exits_3(tmp_path: Path) -> None:
    model, calib = mlp_with_calib(tmp_path)
    config = tmp_path / "cfg.json"
    config.write_bytes(b'{"method": "static-int8", "x": "\xff\xfe"}')
    _exit3(cli("quantize", model, "--calib", calib, "--config", config, "-o", tmp_path / "q.onnx"),
           "not UTF-8", "cfg.json")


@pytest.mark.parametrize("depth", [100, 200_000])
def test_deeply_nested_config_exits_3(tmp_path: Path, depth: int) -> None:
    model, calib = mlp_with_calib(tmp_path)
    config = tmp_path / "cfg.json"
    config.write_text('{"method": "static-int8", "x": ' + "[" * depth + "]" * depth + "}")
    _exit3(cli("quantize", model, "--calib", calib, "--config", config, "-o", tmp_path / "q.onnx"),
           "deeper than")


def _results_file(tmp_path: Path) -> tuple[Path, dict]:
    from report_fixtures import make_results

    path = tmp_path / "results.json"
    make_results(robustness=False).save(path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("tamper", ["wrong_type", "absurd_int", "absurd_float", "deep", "not_utf8", "not_a_list"])
def test_tampered_results_json_exits_3(tmp_path: Path, tamper: str) -> None:
    path, data = _results_file(tmp_path)
    raw: bytes | None = None
    if tamper == "wrong_type":
        data["variants"][0]["quality"] = "high"
    elif tamper == "absurd_int":
        raw = json.dumps(data).replace('"size_bytes": ', '"size_bytes": 1' + "0" * 5000 + " + ", 1).encode()
        raw = raw.replace(b" + ", b"", 1)
    elif tamper == "absurd_float":
        data["variants"][0]["size_bytes"] = "1e999"
        raw = json.dumps(data).replace('"1e999"', "1e999").encode()
    elif tamper == "deep":
        raw = json.dumps(data).replace('"variants": [', '"variants": [' + "[" * 100_000 + "]" * 100_000 + ", ", 1).encode()
    elif tamper == "not_utf8":
        raw = json.dumps(data).encode().replace(b'"float"', b'"fl\xffoat"', 1)
    elif tamper == "not_a_list":
        data["variants"] = {"float": 1}
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    _exit3(cli("report", path, "-o", tmp_path / "out"), "results")


def test_demo_out_onto_a_file_or_unwritable_place_exits_3(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    _exit3(cli("demo", "--out", afile), "not a directory")
    assert afile.read_text() == "keep me"
    _exit3(cli("demo", "--out", "/proc/quantscope-demo"), "cannot create")


def test_sweep_where_every_variant_failed_exits_3(tmp_path: Path) -> None:
    model = Path(tinymodels.save(tinymodels.no_quantizable_ops(), tmp_path / "noq.onnx"))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32))
    _exit3(cli("sweep", model, "--calib", data, "--data", data, "-m", "weight-int8", "-m", "dynamic-int8",
               "--no-memory", "--no-latency", "--top", "0"), "every variant of the sweep failed")
