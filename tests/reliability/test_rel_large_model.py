"""A model over 2 GB (external data): load, inspect, quantize and save without a protobuf over 2 GB,
and in bounded memory: quantize + save peak below 2.5x the largest tensor over the baseline.

The weights live in a sparse file (a few KB of real data per tensor, zeros elsewhere), so the
test takes little disk for its input; the saved copy is real data (about as big), removed after.
Peak memory is measured in a fresh child process (``VmHWM``); the ONNX Runtime load check that
quantize runs in its own child counts there, not here (``python -m bench.memory`` reports both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import quantscope as qs
from quantscope.inspection import inspect_model

pytestmark = pytest.mark.slow

K, M, WEIGHTS = 24576, 8192, 3  # three fp32 [K, M] weights: 2.4 GB in all
TENSOR_BYTES = K * M * 4
PEAK_BOUND = 2.5  # peak resident memory over the baseline after imports, in largest tensors

_CHILD = r"""
import json, sys

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

import quantscope as qs
import quantscope.loadcheck, quantscope.quantization, onnxruntime  # imported before the baseline

path, out, method = sys.argv[1:4]
baseline = status("VmRSS")
config = {"weight-int8": qs.WeightInt8(), "float16": qs.Float16()}[method]
qs.quantize(qs.load(path), config).save(out)
print(json.dumps({"baseline": baseline, "peak": status("VmHWM")}))
"""


def _external(name: str, offset: int, k: int = K, m: int = M) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[k, m], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.onnx.data"), ("offset", str(offset)), ("length", str(k * m * 4))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _big_model(folder: Path, k: int = K, m: int = M) -> Path:
    rng = np.random.default_rng(0)
    size = k * m * 4
    with open(folder / "big.onnx.data", "wb") as fh:  # sparse: only the first 64 KB of each tensor is written
        for i in range(WEIGHTS):
            fh.seek(i * size)
            fh.write(rng.standard_normal(16384).astype(np.float32).tobytes())
        fh.truncate(WEIGHTS * size)
    names = [f"w{i}" for i in range(WEIGHTS)]
    nodes = [helper.make_node("MatMul", ["x", n], [f"y{i}"], name=f"mm{i}") for i, n in enumerate(names)]
    nodes += [helper.make_node("Sum", [f"y{i}" for i in range(WEIGHTS)], ["y"], name="sum")]
    graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])],
        [_external(n, i * size, k, m) for i, n in enumerate(names)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "big.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _available_bytes(path: Path) -> tuple[int, int]:
    import psutil

    return shutil.disk_usage(path).free, psutil.virtual_memory().available


@pytest.fixture
def big(tmp_path: Path) -> Path:
    disk, _ = _available_bytes(tmp_path)
    if disk < 4 * WEIGHTS * TENSOR_BYTES:
        pytest.skip(f"needs {4 * WEIGHTS * TENSOR_BYTES / 2**30:.0f} GiB of free disk")
    return _big_model(tmp_path)


def test_load_inspect_and_save_a_model_over_2gb(big: Path, tmp_path: Path) -> None:
    model = qs.load(big)
    assert model.parameter_count() == WEIGHTS * K * M
    info = inspect_model(big)
    assert info["file_bytes"] > 2**31 and info["parameters"] == WEIGHTS * K * M
    out = tmp_path / "out" / "copy.onnx"
    out.parent.mkdir()
    written = qs.save(model, out)
    assert (out.parent / "copy.onnx.data").stat().st_size >= WEIGHTS * TENSOR_BYTES
    onnx.checker.check_model(str(written))
    again = qs.load(written)
    w0 = again.ir.graph.initializers["w0"].const_value.numpy()
    np.testing.assert_array_equal(w0.reshape(-1)[:16384], model.ir.graph.initializers["w0"].const_value.numpy().reshape(-1)[:16384])
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.onnx", "copy.onnx.data"]  # no temp files


def _peak_ratio(model: Path, out: Path, method: str, largest: int) -> float:
    """Quantize + save in a fresh process: its peak resident memory over its baseline, in largest tensors."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(out), method],
                          capture_output=True, text=True, env=env, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return (measured["peak"] - measured["baseline"]) / largest


def test_weight_int8_of_a_model_over_2gb_in_bounded_memory(big: Path, tmp_path: Path) -> None:
    _, memory = _available_bytes(tmp_path)
    if memory < 6 * 2**30:
        pytest.skip("needs 6 GiB of available memory")
    out = tmp_path / "q.onnx"
    ratio = _peak_ratio(big, out, "weight-int8", TENSOR_BYTES)
    assert ratio <= PEAK_BOUND, f"weight-int8 peaked at {ratio:.2f}x the largest tensor over the baseline"
    assert out.exists() and out.with_name("q.quantscope.json").exists()
    onnx.checker.check_model(str(out))
    assert os.path.getsize(out) + sum(f.stat().st_size for f in tmp_path.glob("q.onnx.data")) < WEIGHTS * TENSOR_BYTES / 3


def test_float16_of_a_large_model_in_bounded_memory(tmp_path: Path) -> None:
    """float16 writes half of every weight: a smaller model (3 x 128 MiB) shows the bound sooner."""
    k, m = 8192, 4096
    model = _big_model(tmp_path, k, m)
    out = tmp_path / "out" / "f16.onnx"
    out.parent.mkdir()
    ratio = _peak_ratio(model, out, "float16", k * m * 4)
    assert ratio <= PEAK_BOUND, f"float16 peaked at {ratio:.2f}x the largest tensor over the baseline"
    onnx.checker.check_model(str(out))
    assert sorted(p.name for p in out.parent.iterdir()) == ["f16.onnx", "f16.quantscope.json"]
    assert os.path.getsize(out) < WEIGHTS * k * m * 4 * 0.55
