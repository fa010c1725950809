"""A model over 2 GB (external data): load, inspect, quantize and save without a protobuf over 2 GB.

The weights live in a sparse file (a few KB of real data per tensor, zeros elsewhere), so the
test takes little disk for its input; the saved copy is real data (about as big), removed after.
"""

from __future__ import annotations

import os
import shutil
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


def _external(name: str, offset: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[K, M], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.onnx.data"), ("offset", str(offset)), ("length", str(TENSOR_BYTES))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _big_model(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    with open(folder / "big.onnx.data", "wb") as fh:  # sparse: only the first 64 KB of each tensor is written
        for i in range(WEIGHTS):
            fh.seek(i * TENSOR_BYTES)
            fh.write(rng.standard_normal(16384).astype(np.float32).tobytes())
        fh.truncate(WEIGHTS * TENSOR_BYTES)
    names = [f"w{i}" for i in range(WEIGHTS)]
    nodes = [helper.make_node("MatMul", ["x", n], [f"y{i}"], name=f"mm{i}") for i, n in enumerate(names)]
    nodes += [helper.make_node("Sum", [f"y{i}" for i in range(WEIGHTS)], ["y"], name="sum")]
    graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, M])],
        [_external(n, i * TENSOR_BYTES) for i, n in enumerate(names)],
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


def test_weight_int8_of_a_model_over_2gb(big: Path, tmp_path: Path) -> None:
    _, memory = _available_bytes(tmp_path)
    if memory < 12 * 2**30:
        pytest.skip("needs 12 GiB of available memory")
    q = qs.quantize(qs.load(big), qs.WeightInt8())
    out = tmp_path / "q.onnx"
    q.save(out)
    assert out.exists() and out.with_name("q.quantscope.json").exists()
    onnx.checker.check_model(str(out))
    assert os.path.getsize(out) + sum(f.stat().st_size for f in tmp_path.glob("q.onnx.data")) < WEIGHTS * TENSOR_BYTES / 3
