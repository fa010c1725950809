"""Loading and saving: round trips, atomic writes, external data, old opsets, subgraphs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import tinymodels
from quantscope import cli
from quantscope.inspection import inspect_model
from quantscope.model_io import atomic_write_text
from quantscope.numerics.metrics import sqnr_db


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))  # hidden temporary files included


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.fixture
def conv_path(tmp_path: Path) -> Path:
    return Path(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "model.onnx"))


# ---------------------------------------------------------------------------------------------
# round trip and atomic writes


def test_load_save_round_trip(conv_path: Path, tmp_path: Path) -> None:
    model = qs.load(conv_path)
    assert model.path == conv_path.resolve()
    assert model.fingerprint.startswith("sha256:") and model.opset == 17
    assert [s.name for s in model.inputs] == ["x"] and [s.name for s in model.outputs] == ["y"]

    out = qs.save(model, tmp_path / "copy.onnx")
    assert out == (tmp_path / "copy.onnx").resolve()
    assert _listing(tmp_path) == ["copy.onnx", "model.onnx"]
    assert stat.S_IMODE(out.stat().st_mode) == _umask_mode()  # not mkstemp's 0600
    again = qs.load(out)
    original, copied = onnx.load(str(conv_path)), onnx.load(str(out))
    assert [(n.name, n.op_type, list(n.input)) for n in original.graph.node] == [
        (n.name, n.op_type, list(n.input)) for n in copied.graph.node
    ]
    for a, b in zip(original.graph.initializer, copied.graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert again.op_histogram() == model.op_histogram()
    assert again.inputs == model.inputs and again.outputs == model.outputs
    x = _images(4, seed=1)
    np.testing.assert_array_equal(_run(conv_path, {"x": x}), _run(out, {"x": x}))
    # saving the same in-memory model twice gives the same bytes
    assert qs.save(model, tmp_path / "copy2.onnx").read_bytes() == out.read_bytes()


def test_save_never_overwrites_the_loaded_model(conv_path: Path) -> None:
    before = conv_path.read_bytes()
    with pytest.raises(qs.OutputError, match="is the input model"):
        qs.save(qs.load(conv_path), conv_path)
    assert conv_path.read_bytes() == before
    assert _listing(conv_path.parent) == ["model.onnx"]


def _failing_replace(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("existing", [False, True])
def test_save_is_atomic(
    conv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    model = qs.load(conv_path)
    dest = tmp_path / "dest.onnx"
    if existing:
        dest.write_bytes(b"previous content")
    before = _listing(tmp_path)
    monkeypatch.setattr(os, "replace", _failing_replace)
    with pytest.raises(qs.OutputError, match="No space left on device"):
        qs.save(model, dest)
    with pytest.raises(qs.OutputError, match="No space left on device"):
        atomic_write_text(tmp_path / "dest.json", "{}")
    assert _listing(tmp_path) == before  # no temporary file left behind
    if existing:
        assert dest.read_bytes() == b"previous content"
    else:
        assert not dest.exists()


def test_quantized_save_is_atomic_and_writes_no_sidecar_alone(
    conv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = qs.quantize(
        qs.load(conv_path), qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(8, seed=2)})
    )
    before = _listing(tmp_path)
    monkeypatch.setattr(os, "replace", _failing_replace)
    with pytest.raises(qs.OutputError):
        q.save(tmp_path / "q.onnx")
    assert _listing(tmp_path) == before
    monkeypatch.undo()
    # the sidecar's own write fails: the model written just before it is removed again
    real_replace = os.replace

    def fail_for_sidecar(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith(".quantscope.json"):
            raise OSError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_for_sidecar)
    with pytest.raises(qs.OutputError, match="Permission denied"):
        q.save(tmp_path / "q.onnx")
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# external data


def test_external_data_model_loads_inspects_and_quantizes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = src / "model.onnx"
    onnx.save_model(
        tinymodels.conv_bn_relu(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.data",
        size_threshold=0,
    )
    assert _listing(src) == ["model.onnx", "w.data"]
    model = qs.load(path)
    assert model.parameter_count() > 5000
    info = inspect_model(path)
    assert info["file_bytes"] == path.stat().st_size + (src / "w.data").stat().st_size

    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(16, seed=3)}))
    data_before = (src / "w.data").read_bytes()
    with pytest.raises(qs.OutputError, match="data files"):
        q.save(src / "w.data")  # the input's weights are an input too
    assert (src / "w.data").read_bytes() == data_before
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = q.save(out_dir / "q.onnx")
    assert _listing(out_dir) == ["q.onnx", "q.quantscope.json"]
    x = _images(4, seed=4)
    ref, got = _run(path, {"x": x}), _run(out, {"x": x})
    assert sqnr_db(ref, got) > 20.0
    # the quantized file does not depend on the source's data file
    (src / "w.data").unlink()
    _run(out, {"x": x})


def test_missing_external_data_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save_model(
        tinymodels.conv_bn_relu(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.data",
        size_threshold=0,
    )
    (tmp_path / "w.data").unlink()
    with pytest.raises(qs.ModelError, match=r"w\.data") as info:
        qs.load(path)
    assert "external data" in str(info.value) and "beside the model" in str(info.value)
    result = CliRunner().invoke(cli.main, ["inspect", str(path)])
    assert result.exit_code == 3
    assert "w.data" in result.output and "ModelError" in result.output


def test_truncated_external_data_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save_model(
        tinymodels.conv_bn_relu(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.data",
        size_threshold=0,
    )
    data = (tmp_path / "w.data").read_bytes()
    (tmp_path / "w.data").write_bytes(data[: len(data) // 3])
    with pytest.raises(qs.ModelError):
        qs.load(path)


# ---------------------------------------------------------------------------------------------
# an old opset


def test_opset_11_is_upgraded_and_the_file_has_per_channel_scales(tmp_path: Path) -> None:
    path = Path(tinymodels.save(tinymodels.conv_bn_relu(opset=11), tmp_path / "old.onnx"))
    np.savez(tmp_path / "calib.npz", x=_images(16, seed=5))
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(
        cli.main, ["quantize", str(path), "--calib", str(tmp_path / "calib.npz"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 13
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    per_channel = [
        n
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        and any(a.name == "axis" for a in n.attribute)
        and n.input[0] in inits
        and inits[n.input[0]].dtype == np.int8
        and inits[n.input[0]].ndim >= 2
        and inits[n.input[1]].size == inits[n.input[0]].shape[0] > 1
    ]
    # the int8 weights of conv1, conv2 and fc, each with one scale per output channel
    assert len(per_channel) == 3
    side = json.loads((tmp_path / "q.quantscope.json").read_text())
    assert any("opset upgraded from 11" in note for note in side["plan"]["notes"])
    x = _images(4, seed=6)
    assert sqnr_db(_run(path, {"x": x}), _run(out, {"x": x})) > 20.0


# ---------------------------------------------------------------------------------------------
# subgraphs


def _branch(name: str, weight: np.ndarray, source: str) -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("MatMul", [source, f"{name}_w"], [f"{name}_out"], name=f"{name}_matmul")],
        name,
        [],
        [
            helper.make_tensor_value_info(
                f"{name}_out", TensorProto.FLOAT, ["batch", weight.shape[1]]
            )
        ],
        [numpy_helper.from_array(weight, f"{name}_w")],
    )


def if_model(outer_matmul: bool, d: int = 16, seed: int = 0) -> onnx.ModelProto:
    """An ``If`` whose branches each hold a MatMul; with ``outer_matmul`` a MatMul feeds it."""
    rng = np.random.default_rng(seed)

    def w() -> np.ndarray:
        return (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)

    inits = [numpy_helper.from_array(np.array(True), "cond")]
    nodes = []
    if outer_matmul:
        nodes.append(helper.make_node("MatMul", ["x", "w0"], ["h"], name="outer_matmul"))
        inits.append(numpy_helper.from_array(w(), "w0"))
        source = "h"
    else:
        source = "x"
    nodes.append(
        helper.make_node(
            "If",
            ["cond"],
            ["y"],
            name="branch",
            then_branch=_branch("then", w(), source),
            else_branch=_branch("else", w(), source),
        )
    )
    return tinymodels._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d])],
        inits,
    )


def test_if_subgraph_left_float_with_reason_and_outer_matmul_quantized(tmp_path: Path) -> None:
    path = Path(tinymodels.save(if_model(outer_matmul=True), tmp_path / "if.onnx"))
    x = np.random.default_rng(7).standard_normal((64, 16)).astype(np.float32)
    q = qs.quantize(qs.load(path), qs.StaticInt8(), qs.Dataset.from_arrays({"x": x}))
    decisions = {d.node: d for d in q.plan.decisions}
    assert decisions["branch"].action == "float"
    assert "subgraph" in decisions["branch"].reason
    assert decisions["outer_matmul"].action == "quantized"
    assert any("subgraphs" in w for w in q.plan.warnings)
    out = q.save(tmp_path / "q.onnx")
    assert sqnr_db(_run(path, {"x": x[:8]}), _run(out, {"x": x[:8]})) > 25.0
    # the CLI shows the warning
    np.savez(tmp_path / "calib.npz", x=x)
    result = CliRunner().invoke(
        cli.main,
        [
            "quantize",
            str(path),
            "--calib",
            str(tmp_path / "calib.npz"),
            "-o",
            str(tmp_path / "cli.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "subgraphs" in result.output


def test_network_only_inside_a_subgraph_is_never_a_success(tmp_path: Path) -> None:
    path = Path(tinymodels.save(if_model(outer_matmul=False), tmp_path / "if_only.onnx"))
    x = np.random.default_rng(8).standard_normal((32, 16)).astype(np.float32)
    with pytest.raises(qs.UnsupportedModelError, match="subgraph"):
        qs.quantize(qs.load(path), qs.StaticInt8(), qs.Dataset.from_arrays({"x": x}))
    np.savez(tmp_path / "calib.npz", x=x)
    before = _listing(tmp_path)
    result = CliRunner().invoke(
        cli.main,
        [
            "quantize",
            str(path),
            "--calib",
            str(tmp_path / "calib.npz"),
            "-o",
            str(tmp_path / "q.onnx"),
        ],
    )
    assert result.exit_code == 3, result.output
    assert "UnsupportedModelError" in result.output and "nothing to quantize" in " ".join(
        result.output.split()
    )
    assert _listing(tmp_path) == before
