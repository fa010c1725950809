"""Bad input: a clear message, the documented exit code, nothing written, the input untouched.

Exit codes: 2 a command line that does not parse; 3 any input quantscope refuses (model, data,
option or config value, output path).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
import tinymodels
from quantscope import cli

SHAPE = (3, 16, 16)


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns when not on a terminal; keep messages on one line for asserts."""
    monkeypatch.setattr(cli.console, "_width", 400)
    monkeypatch.setattr(cli.err_console, "_width", 400)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(root: Path) -> list[str]:
    """Every file and folder under ``root``, hidden ones (temporary files) included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@dataclass
class Workspace:
    root: Path
    model: Path  # in/model.onnx: a valid conv model
    data: Path  # data/: calibration files
    out: Path  # out/: an empty output folder

    def snapshot(self) -> tuple[list[str], dict[str, str]]:
        files = {
            str(p.relative_to(self.root)): _digest(p) for p in self.root.rglob("*") if p.is_file()
        }
        return _listing(self.root), files

    def npz(self, name: str, **arrays: np.ndarray) -> Path:
        path = self.data / name
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "in").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    model = tmp_path / "in" / "model.onnx"
    tinymodels.save(tinymodels.conv_bn_relu(), model)
    w = Workspace(tmp_path, model, tmp_path / "data", tmp_path / "out")
    w.npz("calib.npz", x=_images(12))
    return w


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def expect_failure(
    ws: Workspace, args: list[str | Path], code: int, error: str, words: list[str]
) -> str:
    """Run the CLI, check the exit code and message, and that the workspace did not change at all."""
    before = ws.snapshot()
    result = invoke(*args)
    message = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert f"error: {error}:" in message, message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    assert "Traceback" not in result.output
    after = ws.snapshot()
    assert after[0] == before[0], "files were created or removed"
    assert after[1] == before[1], "a file changed"
    return message


def quantize_args(
    ws: Workspace, model: Path | None = None, calib: str = "calib.npz"
) -> list[str | Path]:
    return ["quantize", model or ws.model, "--calib", ws.data / calib, "-o", ws.out / "q.onnx"]


# ---------------------------------------------------------------------------------------------
# files that are not (whole) models


def _random_bytes(ws: Workspace) -> Path:
    path = ws.root / "in" / "random.onnx"
    path.write_bytes(np.random.default_rng(3).bytes(5000))
    return path


def _truncated(ws: Workspace) -> Path:
    path = ws.root / "in" / "truncated.onnx"
    data = ws.model.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_file(ws: Workspace) -> Path:
    path = ws.root / "in" / "notes.onnx"
    path.write_text("name,value\nalpha,1\nbeta,2\n")
    return path


def _directory(ws: Workspace) -> Path:
    path = ws.root / "in" / "a_folder.onnx"
    path.mkdir()
    return path


def _missing(ws: Workspace) -> Path:
    return ws.root / "in" / "missing.onnx"


BAD_MODELS: list[tuple[str, Callable[[Workspace], Path], list[str]]] = [
    (
        "random-bytes",
        _random_bytes,
        ["random.onnx", "not an ONNX model", "truncated/corrupt", "re-export or re-download"],
    ),
    (
        "truncated",
        _truncated,
        ["truncated.onnx", "not an ONNX model", "truncated/corrupt", "re-export or re-download"],
    ),
    ("text-file", _text_file, ["notes.onnx", "not an ONNX model", "re-export or re-download"]),
    (
        "directory",
        _directory,
        ["a_folder.onnx", "is a directory", "pass the path of an .onnx file"],
    ),
    ("missing", _missing, ["missing.onnx", "not found"]),
]


@pytest.mark.parametrize(
    ("make", "words"), [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS]
)
def test_bad_model_file(ws: Workspace, make: Callable[[Workspace], Path], words: list[str]) -> None:
    bad = make(ws)
    expect_failure(ws, quantize_args(ws, bad), 3, "ModelError", words)
    expect_failure(ws, ["inspect", bad], 3, "ModelError", words)
    with pytest.raises(qs.ModelError):
        qs.load(bad)


# ---------------------------------------------------------------------------------------------
# data that does not fit


def _with(value: float, sample: int) -> np.ndarray:
    x = _images(12, seed=4)
    x[sample, 1, 2, 3] = value
    return x


BAD_DATA: list[tuple[str, Callable[[], dict[str, np.ndarray]], str, list[str]]] = [
    (
        "input-name",
        lambda: {"image": _images(12)},
        "DataMismatchError",
        [
            "lacks model input(s) ['x']",
            "['image']",
            "the model expects: x: float32[batch, 3, 16, 16]",
        ],
    ),
    (
        "shape",
        lambda: {"x": _images(12)[:, :, :8, :8]},
        "DataMismatchError",
        ["shape mismatch", "(3, 8, 8)", "expects (3, 16, 16)"],
    ),
    (
        "dtype",
        lambda: {"x": np.random.default_rng(5).integers(0, 255, (12, *SHAPE)).astype(np.int32)},
        "DataMismatchError",
        ["wants float32", "int32", "convert the data first", "astype(np.float32)"],
    ),
    (
        "nan",
        lambda: {"x": _with(np.nan, 5)},
        "NonFiniteDataError",
        ["sample 5", "1 NaN", "needs finite data", "clean or drop"],
    ),
    (
        "inf",
        lambda: {"x": _with(np.inf, 7)},
        "NonFiniteDataError",
        ["sample 7", "1 infinite", "needs finite data", "clean or drop"],
    ),
    (
        "empty",
        lambda: {"x": np.zeros((0, *SHAPE), np.float32)},
        "EmptyDatasetError",
        ["zero samples", "give at least one sample"],
    ),
]


@pytest.mark.parametrize(
    ("arrays", "error", "words"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA]
)
def test_bad_calibration_data(
    ws: Workspace, arrays: Callable[[], dict[str, np.ndarray]], error: str, words: list[str]
) -> None:
    ws.npz("bad.npz", **arrays())
    expect_failure(ws, quantize_args(ws, calib="bad.npz"), 3, error, words)


@pytest.mark.parametrize(
    ("arrays", "error"), [(c[1], c[2]) for c in BAD_DATA], ids=[c[0] for c in BAD_DATA]
)
def test_bad_calibration_data_api(
    ws: Workspace, arrays: Callable[[], dict[str, np.ndarray]], error: str
) -> None:
    model = qs.load(ws.model)
    with pytest.raises(getattr(qs, error)) as info:
        qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays(arrays()))
    assert isinstance(info.value, qs.DataError) and isinstance(info.value, qs.QuantscopeError)
    assert info.value.exit_code == 3


def test_calib_file_missing_or_unreadable(ws: Workspace) -> None:
    expect_failure(
        ws, quantize_args(ws, calib="nope.npz"), 3, "DataError", ["nope.npz", "does not exist"]
    )
    (ws.data / "junk.npz").write_bytes(b"not a zip archive at all")
    expect_failure(
        ws, quantize_args(ws, calib="junk.npz"), 3, "DataError", ["junk.npz", "not a valid .npz"]
    )


# ---------------------------------------------------------------------------------------------
# options and config


def test_missing_calib_for_static_int8(ws: Workspace) -> None:
    expect_failure(
        ws,
        ["quantize", ws.model, "-o", ws.out / "q.onnx"],
        3,
        "ConfigError",
        ["static-int8 needs calibration data", "add --calib"],
    )
    with pytest.raises(qs.ConfigError, match="needs calibration data"):
        qs.quantize(qs.load(ws.model), qs.StaticInt8())


def test_bad_config_values(ws: Workspace) -> None:
    args = quantize_args(ws)
    expect_failure(
        ws, [*args, "--num-samples", "0"], 3, "ConfigError", ["num_samples=0", "integer >= 1"]
    )
    expect_failure(
        ws, [*args, "--percentile", "20"], 3, "ConfigError", ["percentile=20", "(50, 100]"]
    )
    expect_failure(
        ws,
        [*args, "--method", "magic"],
        3,
        "ConfigError",
        ["unknown method 'magic'", "static-int8"],
    )
    expect_failure(
        ws,
        [*args, "--exclude-op", "Convv"],
        3,
        "SelectorError",
        ["op type 'Convv'", "matched no node", "quantscope inspect"],
    )
    expect_failure(
        ws, [*args, "--exclude-regex", "("], 3, "ConfigError", ["invalid regular expression"]
    )
    # rich markup in a message is printed as text, not parsed (a closing tag used to crash the CLI)
    expect_failure(
        ws,
        [*args, "--exclude-regex", "[/x]"],
        3,
        "SelectorError",
        ["pattern '[/x]'", "matched no node"],
    )


def test_bad_config_files(ws: Workspace) -> None:
    cfg = ws.data / "cfg.json"
    cfg.write_text("{not json")
    expect_failure(
        ws,
        [*quantize_args(ws), "--config", cfg],
        3,
        "ConfigError",
        ["cannot read config file", "cfg.json"],
    )
    cfg.write_text(json.dumps(["static-int8"]))
    expect_failure(
        ws, [*quantize_args(ws), "--config", cfg], 3, "ConfigError", ["must hold a JSON object"]
    )
    cfg.write_text(json.dumps({"method": "static-int8", "calibraton": "entropy"}))
    expect_failure(
        ws,
        [*quantize_args(ws), "--config", cfg],
        3,
        "ConfigError",
        ["unknown option(s) for static-int8: calibraton", "valid:", "calibration"],
    )
    cfg.write_text(json.dumps({"method": "static-int8", "schema_version": 99}))
    expect_failure(
        ws, [*quantize_args(ws), "--config", cfg], 3, "ConfigError", ["schema version 99"]
    )
    expect_failure(
        ws,
        [*quantize_args(ws), "--config", ws.data / "absent.json"],
        3,
        "ConfigError",
        ["cannot read config file", "absent.json"],
    )


# ---------------------------------------------------------------------------------------------
# output paths


def test_output_path_is_the_input(ws: Workspace) -> None:
    args: list[str | Path] = [
        "quantize",
        ws.model,
        "--calib",
        ws.data / "calib.npz",
        "-o",
        ws.model,
    ]
    expect_failure(ws, args, 3, "OutputError", ["is the input model", "choose another path"])
    # the same file through another spelling of the path
    other = ws.root / "out" / ".." / "in" / "model.onnx"
    args = ["quantize", ws.model, "--calib", ws.data / "calib.npz", "-o", other]
    expect_failure(ws, args, 3, "OutputError", ["is the input model", "choose another path"])


def test_output_parent_missing(ws: Workspace) -> None:
    args: list[str | Path] = [
        "quantize",
        ws.model,
        "--calib",
        ws.data / "calib.npz",
        "-o",
        ws.out / "nowhere" / "q.onnx",
    ]
    expect_failure(ws, args, 3, "OutputError", ["nowhere", "does not exist", "create it first"])
    assert not (ws.out / "nowhere").exists()


def test_output_parent_is_a_regular_file(ws: Workspace) -> None:
    args: list[str | Path] = [
        "quantize",
        ws.model,
        "--calib",
        ws.data / "calib.npz",
        "-o",
        ws.data / "calib.npz" / "q.onnx",
    ]
    expect_failure(
        ws,
        args,
        3,
        "OutputError",
        ["calib.npz is a file, not a directory", "choose an output path"],
    )


def test_output_is_an_existing_directory(ws: Workspace) -> None:
    (ws.out / "taken.onnx").mkdir()
    args: list[str | Path] = [
        "quantize",
        ws.model,
        "--calib",
        ws.data / "calib.npz",
        "-o",
        ws.out / "taken.onnx",
    ]
    expect_failure(ws, args, 3, "OutputError", ["taken.onnx is a directory", "give a file name"])


def test_sidecar_path_is_an_existing_directory(ws: Workspace) -> None:
    """The sidecar cannot be written: the model must not be written either."""
    (ws.out / "q.quantscope.json").mkdir()
    expect_failure(ws, quantize_args(ws), 3, "OutputError", ["q.quantscope.json is a directory"])


def test_output_errors_api(ws: Workspace) -> None:
    model = qs.load(ws.model)
    q = qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _images(8)}))
    before = ws.snapshot()
    for target in (
        ws.model,
        ws.out / "missing" / "q.onnx",
        ws.data / "calib.npz" / "q.onnx",
        ws.out,
    ):
        with pytest.raises(qs.OutputError):
            q.save(target)
        with pytest.raises(qs.OutputError):
            qs.save(model, target)
    assert ws.snapshot() == before


# ---------------------------------------------------------------------------------------------
# models static-int8 can or cannot handle


def test_no_quantizable_nodes(ws: Workspace) -> None:
    noq = ws.root / "in" / "noq.onnx"
    tinymodels.save(tinymodels.no_quantizable_ops(), noq)
    ws.npz("vec.npz", x=np.random.default_rng(6).standard_normal((10, 8)).astype(np.float32))
    args: list[str | Path] = [
        "quantize",
        noq,
        "--calib",
        ws.data / "vec.npz",
        "-o",
        ws.out / "q.onnx",
    ]
    expect_failure(
        ws, args, 3, "UnsupportedModelError", ["found nothing to quantize", "Nothing was written"]
    )
    with pytest.raises(qs.UnsupportedModelError) as info:
        qs.quantize(qs.load(noq), qs.StaticInt8(), qs.Dataset.from_npz(ws.data / "vec.npz"))
    assert isinstance(info.value, qs.ModelError)


def conv_sin_conv(seed: int = 0) -> onnx.ModelProto:
    """Conv → Sin → Conv: Sin has no integer kernel, the Convs around it do."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Sin", ["c1"], ["s"], name="sin"),
        helper.make_node("Conv", ["s", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.2).astype(np.float32), "w2"),
        numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "b2"),
    ]
    return tinymodels._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 16, 16])],
        inits,
    )


def test_op_without_integer_kernel_stays_float(ws: Workspace) -> None:
    model = ws.root / "in" / "sin.onnx"
    tinymodels.save(conv_sin_conv(), model)
    before = _digest(model)
    out = ws.out / "q.onnx"
    result = invoke("quantize", model, "--calib", ws.data / "calib.npz", "-o", out)
    assert result.exit_code == 0, result.output
    assert _digest(model) == before
    assert sorted(os.listdir(ws.out)) == ["q.onnx", "q.quantscope.json"]
    side = json.loads((ws.out / "q.quantscope.json").read_text())
    decisions = {d["node"]: d for d in side["plan"]["decisions"]}
    assert decisions["sin"]["action"] == "float"
    assert "Sin" in decisions["sin"]["reason"] and "kept float" in decisions["sin"]["reason"]
    assert decisions["conv1"]["action"] == decisions["conv2"]["action"] == "quantized"
    assert "float x1" in result.stdout  # the float reason is shown
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {"Sin", "QuantizeLinear", "Conv"}


# ---------------------------------------------------------------------------------------------
# the exception tree through the Python API


def test_api_exception_classes(ws: Workspace) -> None:
    model = qs.load(ws.model)
    data = qs.Dataset.from_arrays({"x": _images(8)})
    cases: list[tuple[type[qs.QuantscopeError], Callable[[], object]]] = [
        (qs.ModelError, lambda: qs.load(ws.root / "in" / "missing.onnx")),
        (qs.ModelError, lambda: qs.quantize("model.onnx", qs.StaticInt8(), data)),  # type: ignore[arg-type]
        (qs.ConfigError, lambda: qs.StaticInt8(calibration="bogus")),
        (qs.ConfigError, lambda: qs.config_from_dict({"method": "nope"})),
        (qs.ConfigError, lambda: qs.quantize(model, qs.StaticInt8(), None)),
        (
            qs.SelectorError,
            lambda: qs.quantize(model, qs.StaticInt8(exclude=qs.NodeSelector(names=("zz",))), data),
        ),
        (
            qs.DataMismatchError,
            lambda: qs.quantize(model, qs.StaticInt8(), qs.Dataset.from_arrays({"z": _images(4)})),
        ),
        (
            qs.EmptyDatasetError,
            lambda: qs.Dataset.from_arrays({"x": np.zeros((0, *SHAPE), np.float32)}),
        ),
        (
            qs.NonFiniteDataError,
            lambda: qs.quantize(
                model, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _with(np.nan, 0)})
            ),
        ),
        (qs.OutputError, lambda: qs.save(model, ws.model)),
        (
            qs.UnsupportedModelError,
            lambda: qs.quantize(
                qs.Model.from_proto(tinymodels.no_quantizable_ops()),
                qs.StaticInt8(),
                qs.Dataset.from_arrays({"x": np.ones((4, 8), np.float32)}),
            ),
        ),
    ]
    before = ws.snapshot()
    for cls, call in cases:
        with pytest.raises(cls) as info:
            call()
        assert isinstance(info.value, qs.QuantscopeError)
        assert str(info.value).strip()
    assert ws.snapshot() == before


# ---------------------------------------------------------------------------------------------
# every method: bad settings and models they cannot work on (exit 3, nothing written)


def test_cluster_bits_out_of_range(ws: Workspace) -> None:
    for bits in ("9", "1"):
        expect_failure(
            ws,
            ["quantize", ws.model, "--method", "cluster", "--bits", bits, "-o", ws.out / "q.onnx"],
            3,
            "ConfigError",
            [f"bits={bits}"],
        )


@pytest.mark.parametrize(
    "method",
    ["static-int8", "dynamic-int8", "weight-int8", "weight-int4", "cluster", "ternary", "binary"],
)
def test_model_with_nothing_to_quantize(ws: Workspace, method: str) -> None:
    model = ws.root / "in" / "plain.onnx"
    tinymodels.save(tinymodels.no_quantizable_ops(), model)
    name = onnx.load(model).graph.input[0].name
    shape = [d.dim_value or 2 for d in onnx.load(model).graph.input[0].type.tensor_type.shape.dim]
    ws.npz("plain.npz", **{name: np.ones(shape, np.float32)})
    args = ["quantize", model, "--method", method, "-o", ws.out / "q.onnx"]
    if method == "static-int8":
        args += ["--calib", ws.data / "plain.npz"]
    message = expect_failure(ws, args, 3, "UnsupportedModelError", [])
    assert "quantiz" in message or "weight" in message, message


def test_block_size_that_does_not_divide_a_weight(ws: Workspace) -> None:
    model = ws.root / "in" / "mlp.onnx"
    tinymodels.save(tinymodels.mlp(d_in=48), model)  # the first weight has K = 48
    expect_failure(
        ws,
        ["quantize", model, "--method", "weight-int4", "--block-size", "32", "--set", "min_size=0",
         "-o", ws.out / "q.onnx"],
        3,
        "UnsupportedModelError",
        ["block_size=32", "K=48"],
    )
