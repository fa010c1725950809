"""The ``quantscope`` command: inspect, quantize with every option, the sidecar, progress, the entry point."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner, Result
from onnx import numpy_helper

import quantscope as qs
import tinymodels
from quantscope import cli
from quantscope.graph.queries import node_label
from quantscope.methods import method_for
from quantscope.methods.static_int8 import preview

N_CALIB = 20


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns when not on a terminal; keep messages on one line for asserts."""
    monkeypatch.setattr(cli.console, "_width", 400)
    monkeypatch.setattr(cli.err_console, "_width", 400)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    tinymodels.save(tinymodels.conv_bn_relu(), path)
    return path


@pytest.fixture
def calib_path(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    x = np.random.default_rng(1).standard_normal((N_CALIB, 3, 16, 16)).astype(np.float32)
    np.savez(path, x=x)
    return path


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def sidecar_of(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.stem + ".quantscope.json").read_text())


def run_float_and_file(model: Path, out: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return ref, got


def weight_scales(proto: onnx.ModelProto) -> list[tuple[np.ndarray, int | None]]:
    """(scale array, axis attribute) of every DequantizeLinear that reads an int8 weight initializer."""
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        if inits[node.input[0]].dtype != np.int8 or inits[node.input[0]].ndim < 2:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        out.append((inits[node.input[1]], axis))
    return out


# ---------------------------------------------------------------------------------------------
# inspect


def test_inspect_prints_io_opset_ops_and_quantizable_count(model_path: Path) -> None:
    result = invoke("inspect", model_path)
    assert result.exit_code == 0, result.output
    text = result.stdout
    expected = sum(d.action == "quantized" for d in preview(qs.load(model_path), qs.StaticInt8()))
    assert expected >= 3
    assert "opset 17" in text
    assert "producer quantscope-tests" in text
    lines = text.splitlines()
    assert any(
        line.split()[:4] == ["input", "│", "x", "│"] and "[batch, 3, 16, 16]" in line
        for line in lines
    )
    assert any(
        line.split()[:4] == ["output", "│", "y", "│"] and "[batch, 10]" in line for line in lines
    )
    conv = next(line for line in lines if line.split()[:1] == ["Conv"])
    assert conv.split()[2] == "2" and conv.split()[-1] == "2/2"
    bn = next(line for line in lines if line.split()[:1] == ["BatchNormalization"])
    assert bn.split()[2] == "1"
    assert f"static-int8 would quantize {expected} node(s)" in text


def test_inspect_json(model_path: Path) -> None:
    result = invoke("inspect", model_path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert set(info) >= {
        "path",
        "file_bytes",
        "opset",
        "ir_version",
        "producer",
        "inputs",
        "outputs",
        "ops",
        "parameters",
        "parameter_bytes",
        "quantizable_by_op",
        "quantizable",
        "nodes",
    }
    assert info["opset"] == 17
    assert info["file_bytes"] == model_path.stat().st_size
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 3, 16, 16]}]
    assert info["outputs"] == [{"name": "y", "dtype": "float32", "shape": ["batch", 10]}]
    assert info["ops"]["Conv"] == 2 and info["ops"]["Gemm"] == 1
    assert info["quantizable_by_op"]["Conv"] == 2
    assert info["quantizable"]["quantized"] == sum(info["quantizable_by_op"].values())
    assert all(
        n["action"] in ("quantized", "fused", "float") and n["reason"] for n in info["nodes"]
    )


def test_version_and_usage_errors(model_path: Path) -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and qs.__version__ in result.output
    result = invoke("quantize", model_path)  # -o is required: a click usage error
    assert result.exit_code == 2
    assert "-o" in result.output


# ---------------------------------------------------------------------------------------------
# quantize: the written model and the sidecar


def test_quantize_entropy_writes_model_and_complete_sidecar(
    model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.onnx"
    result = invoke(
        "quantize",
        model_path,
        "--method",
        "static-int8",
        "--calib",
        calib_path,
        "--calibration",
        "entropy",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in flat(result.stdout)
    assert "out.quantscope.json" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calib.npz",
        "model.onnx",
        "out.onnx",
        "out.quantscope.json",
    ]

    # the model file loads and runs in ONNX Runtime, close to the float model
    x = np.random.default_rng(7).standard_normal((8, 3, 16, 16)).astype(np.float32)
    ref, got = run_float_and_file(model_path, out, x)
    assert got.shape == ref.shape == (8, 10) and np.isfinite(got).all()
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.95
    assert {"QuantizeLinear", "DequantizeLinear"} <= {
        n.op_type for n in onnx.load(str(out)).graph.node
    }

    side = sidecar_of(out)
    assert side["schema"] == "quantscope.sidecar/1"
    assert side["config"]["method"] == "static-int8"
    assert side["config"]["calibration"] == "entropy"
    assert side["calibration"]["samples"] == N_CALIB
    # where the time went, said on the line that reports the file
    assert re.search(r"in [0-9.]+ s \(calibration [0-9.]+ s\)", flat(result.stdout))  # too fast to time: no search

    # a decision with an action and a reason for every node of the prepared model
    config = qs.config_from_dict(side["config"])
    prepared = method_for(config).prepare(qs.load(model_path), config)
    decisions = side["plan"]["decisions"]
    assert sorted(d["node"] for d in decisions) == sorted(node_label(n) for n in prepared.ir.graph)
    assert all(d["action"] in ("quantized", "fused", "float") for d in decisions)
    assert all(isinstance(d["reason"], str) and d["reason"].strip() for d in decisions)
    assert sum(d["action"] == "quantized" for d in decisions) >= 3

    import numpy
    import onnx as onnx_mod

    versions = side["versions"]
    assert versions["onnx"] == onnx_mod.__version__
    assert versions["onnxruntime"] == ort.__version__
    assert versions["numpy"] == numpy.__version__
    assert versions["quantscope"] == qs.__version__
    assert side["source"]["fingerprint"] == qs.load(model_path).fingerprint
    assert side["source"]["path"] == str(model_path.resolve())
    assert side["output_fingerprint"] == sha256_file(out)


Check = Callable[[dict[str, Any], onnx.ModelProto, Result], None]


def _per_tensor(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["per_channel"] is False
    assert side["plan"]["weights"] and all(
        w["axis"] is None and w["channels"] == 1 for w in side["plan"]["weights"]
    )
    scales = weight_scales(proto)
    assert len(scales) == len(side["plan"]["weights"])
    assert all(s.size == 1 and axis is None for s, axis in scales)


def _per_channel_default(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["per_channel"] is True
    scales = weight_scales(proto)
    assert scales and all(s.size > 1 and axis is not None for s, axis in scales)


def _int8_activations(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["activation_dtype"] == "int8"
    assert {a["dtype"] for a in side["plan"]["activations"]} == {"int8"}
    inits = {t.name: t for t in proto.graph.initializer}
    zps = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert zps and all(z.data_type == onnx.TensorProto.INT8 for z in zps)
    assert "slower than float" in flat(result.output)  # the S8S8 speed warning is shown


def _uint8_activations(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert {a["dtype"] for a in side["plan"]["activations"]} == {"uint8"}


def _integer_io(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["integer_io"] is True
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in proto.metadata_props}
    io = json.loads(meta["quantscope.integer_io"])
    assert "x" in io and io["x"]["scale"] > 0


def _decision(side: dict[str, Any], node: str) -> dict[str, str]:
    return next(d for d in side["plan"]["decisions"] if d["node"] == node)


def _exclude_op(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["exclude"]["op_types"] == ["Gemm"]
    fc = _decision(side, "fc")
    assert fc["action"] == "float" and "excluded" in fc["reason"] and "Gemm" in fc["reason"]
    assert _decision(side, "conv1")["action"] == "quantized"


def _exclude_name(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["exclude"]["names"] == ["conv2"]
    conv2 = _decision(side, "conv2")
    assert (
        conv2["action"] == "float" and "excluded" in conv2["reason"] and "conv2" in conv2["reason"]
    )
    assert _decision(side, "conv1")["action"] == "quantized"


def _exclude_regex(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["exclude"]["patterns"] == ["^conv[12]$"]
    for name in ("conv1", "conv2"):
        d = _decision(side, name)
        assert d["action"] == "float" and "pattern" in d["reason"]
    assert _decision(side, "fc")["action"] == "quantized"


def _num_samples(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["num_samples"] == 8
    assert side["calibration"]["samples"] == 8
    assert side["plan"]["extra"]["calibration_samples"] == 8


def _percentile(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["calibration"] == "percentile" and side["config"]["percentile"] == 99.5
    sources = {
        a["source"] for a in side["plan"]["activations"] if a["source"].startswith("calibrated")
    }
    assert sources == {"calibrated:percentile"}
    assert side["config"]["range_guard"] is False and side["plan"]["extra"]["ranges"]["guard"] is False


def _percentile_guarded(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["range_guard"] is True
    by_tensor = {a["tensor"]: a["source"] for a in side["plan"]["activations"]}
    inputs = [i.name for i in proto.graph.input if i.name in by_tensor]
    assert inputs and all(by_tensor[n] == "calibrated:minmax, guard against percentile" for n in inputs)
    assert set(side["plan"]["extra"]["ranges"]["guarded"]) >= set(inputs)


def _batch_and_seed(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["batch_size"] == 4 and side["config"]["seed"] == 5
    assert side["calibration"]["samples"] == 10


def _full_range(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["reduce_range"] is False
    assert {w["bits"] for w in side["plan"]["weights"]} == {8}


def _reduce_range(side: dict[str, Any], proto: onnx.ModelProto, result: Result) -> None:
    assert side["config"]["reduce_range"] is True
    assert {w["bits"] for w in side["plan"]["weights"]} == {7}


OPTION_CASES: list[tuple[str, list[str], Check]] = [
    ("per-channel-default", [], _per_channel_default),
    ("per-tensor", ["--per-tensor"], _per_tensor),
    ("uint8-default", [], _uint8_activations),
    ("activation-int8", ["--activation-dtype", "int8"], _int8_activations),
    ("integer-io", ["--integer-io"], _integer_io),
    ("exclude-op", ["--exclude-op", "Gemm"], _exclude_op),
    ("exclude-name", ["--exclude-name", "conv2"], _exclude_name),
    ("exclude-regex", ["--exclude-regex", "^conv[12]$"], _exclude_regex),
    ("num-samples", ["--num-samples", "8"], _num_samples),
    ("percentile", ["--calibration", "percentile", "--percentile", "99.5", "--no-range-guard"], _percentile),
    ("percentile-guarded", ["--calibration", "percentile", "--percentile", "99.5"], _percentile_guarded),
    (
        "batch-size-seed",
        ["--batch-size", "4", "--seed", "5", "--num-samples", "10"],
        _batch_and_seed,
    ),
    ("full-range", ["--full-range"], _full_range),
    ("reduce-range", ["--reduce-range"], _reduce_range),
]


@pytest.mark.parametrize(
    ("args", "check"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_quantize_options(
    model_path: Path, calib_path: Path, tmp_path: Path, args: list[str], check: Check
) -> None:
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "--calib", calib_path, "-o", out, *args)
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # loads
    check(sidecar_of(out), proto, result)


def test_paths_that_look_like_rich_markup_are_printed_as_text(
    model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "q[bold]x[red].onnx"
    result = invoke("quantize", model_path, "--calib", calib_path, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in flat(result.stdout)
    assert out.is_file() and out.with_name("q[bold]x[red].quantscope.json").is_file()


def test_sidecar_config_as_config_file_reproduces_the_model_byte_for_byte(
    model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.onnx"
    result = invoke(
        "quantize",
        model_path,
        "--calib",
        calib_path,
        "-o",
        first,
        "--calibration",
        "entropy",
        "--num-samples",
        "12",
        "--exclude-op",
        "Gemm",
        "--per-tensor",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    config = sidecar_of(first)["config"]
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))

    second = tmp_path / "second.onnx"
    result = invoke(
        "quantize", model_path, "--calib", calib_path, "-o", second, "--config", config_file
    )
    assert result.exit_code == 0, result.output
    assert second.read_bytes() == first.read_bytes()
    assert sidecar_of(second)["config"] == config
    assert sidecar_of(second)["plan"] == sidecar_of(first)["plan"]

    # command-line options override the file
    third = tmp_path / "third.onnx"
    result = invoke(
        "quantize",
        model_path,
        "--calib",
        calib_path,
        "-o",
        third,
        "--config",
        config_file,
        "--calibration",
        "minmax",
    )
    assert result.exit_code == 0, result.output
    assert sidecar_of(third)["config"] == {**config, "calibration": "minmax"}


# ---------------------------------------------------------------------------------------------
# calibration progress


@pytest.mark.parametrize(("num_samples", "batch_size", "expected"), [(256, 8, 20), (12, 5, 12)])
def test_progress_callback_counts_up_to_the_calibration_samples(
    model_path: Path, num_samples: int, batch_size: int, expected: int
) -> None:
    x = np.random.default_rng(2).standard_normal((20, 3, 16, 16)).astype(np.float32)
    calls: list[tuple[int, int | None]] = []
    q = qs.quantize(
        qs.load(model_path),
        qs.StaticInt8(num_samples=num_samples, batch_size=batch_size),
        qs.Dataset.from_arrays({"x": x}),
        progress=lambda done, total: calls.append((done, total)),
    )
    done = [c[0] for c in calls]
    assert len(calls) == -(-expected // batch_size)
    assert all(b > a for a, b in itertools.pairwise(done))
    assert done[-1] == expected == q.calibration["samples"]
    assert {c[1] for c in calls} <= {expected, None}


# ---------------------------------------------------------------------------------------------
# the installed console script


def test_console_script_entry_point(model_path: Path, calib_path: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "quantscope"
    assert exe.is_file(), f"console script not installed at {exe}"
    out = tmp_path / "cli.onnx"
    proc = subprocess.run(
        [str(exe), "quantize", str(model_path), "--calib", str(calib_path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    assert sidecar_of(out)["output_fingerprint"] == sha256_file(out)
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
