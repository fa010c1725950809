"""Security: nothing that runs code is loaded without --trust; model text cannot drive the terminal."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
from reltools import UNSAFE, cli, hostile_model
from rich.console import Console
from rich.table import Table

from quantscope.cli.output import safe
from quantscope.textsafe import clean, markup


def _assert_clean(text: str) -> None:
    raw = [ch for ch in UNSAFE if ch in text]
    assert not raw, f"raw control characters {raw!r} in output:\n{text!r}"


def test_clean_spells_control_characters() -> None:
    assert clean("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert clean("t\x1b]0;title\x07") == "t\\x1b]0;title\\x07"
    assert clean("\u202eabc\x9b\x7f") == "\\u202eabc\\x9b\\x7f"
    assert clean("line1\nline2", newlines=True) == "line1\nline2"
    assert clean("line1\nline2") == "line1\\x0aline2"
    assert clean("plain naïve 名前") == "plain naïve 名前"
    assert markup("[bold]\x1b") == "\\[bold]\\x1b"


def test_inspect_of_a_hostile_model_prints_no_control_characters(tmp_path: Path) -> None:
    model = hostile_model(tmp_path / "hostile.onnx")
    result = cli("inspect", model)
    assert result.returncode == 0, result.stderr
    _assert_clean(result.stdout + result.stderr)
    assert "\\x1b[2J" in result.stdout and "\\x1b]0;pwned\\x07" in result.stdout
    as_json = cli("inspect", model, "--json")
    _assert_clean(as_json.stdout)


def test_quantize_of_a_hostile_model_prints_no_control_characters(tmp_path: Path) -> None:
    model = hostile_model(tmp_path / "hostile.onnx")
    result = cli("quantize", model, "-m", "dynamic-int8", "-o", tmp_path / "q.onnx")
    assert result.returncode == 0, result.stderr
    _assert_clean(result.stdout + result.stderr)
    refused = cli("quantize", model, "-m", "dynamic-int8", "--exclude", "nothing\x1b[2J", "-o", tmp_path / "r.onnx")
    _assert_clean(refused.stdout + refused.stderr)


def test_error_lines_escape_names(tmp_path: Path) -> None:
    result = cli("inspect", tmp_path / "missing\x1b]0;title\x07.onnx")
    assert result.returncode == 3
    _assert_clean(result.stderr)
    assert "\\x1b]0;title\\x07" in "".join(result.stderr.split())  # (wrapped at 80 columns)


def test_rich_tables_are_escaped_too() -> None:
    table = Table(title="t\x1b[2J")
    table.add_column("name\u202e")
    table.add_row("node\x1b]0;x\x07")
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(safe(table))
    _assert_clean(buffer.getvalue())
    assert "node\\x1b]0;x\\x07" in buffer.getvalue()


def test_report_text_tables_are_escaped() -> None:
    from quantscope.reporting.text import render_text
    from report_fixtures import make_results

    buffer = io.StringIO()
    results = make_results(hostile="layer\x1b[2J\x9b\u202e")
    Console(file=buffer, width=200, color_system=None).print(safe(render_text(results)))
    _assert_clean(buffer.getvalue())


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickle_is_not_loaded_without_trust(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    source = tmp_path / "model.pkl"
    source.write_bytes(pickle.dumps(_Payload(marker)))
    result = cli("convert", source, "-o", tmp_path / "out.onnx")
    assert result.returncode == 3 and "trust" in result.stderr
    assert not marker.exists()


def test_torch_files_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    source = tmp_path / "model.pt"
    source.write_bytes(pickle.dumps(_Payload(marker)))
    for extra in ((), ("--trust",)):
        result = cli("convert", source, *extra, "-o", tmp_path / "out.onnx")
        assert result.returncode == 3, result.stderr  # a 'module:function' is the way in, not torch.load
        assert not marker.exists()


def test_savedmodel_is_not_converted_without_trust(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    marker = tmp_path / "written_by_the_graph"

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(marker), "pwned")
            return {"y": x * 2.0}

    module = Writer()
    saved = tmp_path / "saved"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.__call__})
    result = cli("convert", saved, "-o", tmp_path / "out.onnx")
    assert result.returncode == 3, result.stderr
    assert "runs its graph" in " ".join(result.stderr.split()) and "--trust" in result.stderr
    assert not marker.exists()


def test_keras_file_with_a_lambda_layer_needs_trust(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from quantscope.errors import ConfigError
    from quantscope.importers import from_path

    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="double")(keras.layers.Dense(3)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ConfigError, match=r"holds code that runs when it loads .*Lambda"):
        from_path(path)
    result = cli("convert", path, "-o", tmp_path / "out.onnx")
    assert result.returncode == 3 and "--trust" in result.stderr
