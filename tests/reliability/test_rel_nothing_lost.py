"""Nothing lost: every input protected from -o, odd outputs refused, the model+sidecar pair one transaction."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from reltools import cli, hidden_entries, mlp_with_calib

import quantscope as qs
from quantscope import transaction
from quantscope.errors import OutputError
from quantscope.output_paths import check_output_path
from quantscope.quantization import sidecar_path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return mlp_with_calib(tmp_path)


def _refused(result, path: Path, before: bytes) -> None:
    assert result.returncode == 3, result.stdout + result.stderr
    assert path.read_bytes() == before
    assert "Traceback" not in result.stderr


def test_output_onto_calib_file_is_refused(pair) -> None:
    model, calib = pair
    before = calib.read_bytes()
    _refused(cli("quantize", model, "--calib", calib, "-o", calib), calib, before)


def test_output_onto_hard_link_of_calib_is_refused(pair, tmp_path: Path) -> None:
    model, calib = pair
    link = tmp_path / "linked.onnx"
    os.link(calib, link)
    before = calib.read_bytes()
    result = cli("quantize", model, "--calib", calib, "-o", link)
    _refused(result, calib, before)
    assert "is the input model" in " ".join(result.stderr.split())


def test_output_onto_symlink_of_model_is_refused(pair, tmp_path: Path) -> None:
    model, calib = pair
    link = tmp_path / "alias.onnx"
    link.symlink_to(model)
    before = model.read_bytes()
    _refused(cli("quantize", model, "--calib", calib, "-o", link), model, before)


def test_output_onto_config_file_is_refused(pair, tmp_path: Path) -> None:
    model, _calib = pair
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"method": "dynamic-int8"}))
    before = config.read_bytes()
    _refused(cli("quantize", model, "--config", config, "-o", config), config, before)


def test_convert_output_onto_source_is_refused(tmp_path: Path) -> None:
    for name in ("plain.keras", "mlp.pkl"):
        source = tmp_path / name
        source.write_bytes(b"not really a model, and it must stay")
        before = source.read_bytes()
        _refused(cli("convert", source, "--trust", "-o", source), source, before)


def test_convert_output_onto_factory_file_is_refused(tmp_path: Path) -> None:
    factory = tmp_path / "models.py"
    factory.write_text("def make():\n    raise SystemExit('must not run')\n")
    before = factory.read_bytes()
    _refused(cli("convert", f"{factory}:make", "-o", factory), factory, before)


def test_tune_output_onto_data_is_refused_before_tuning(pair) -> None:
    model, calib = pair
    before = calib.read_bytes()
    result = cli("tune", model, "--calib", calib, "--data", calib, "--max-drop", "1%", "-o", calib)
    _refused(result, calib, before)


def test_convert_output_onto_example_is_refused(pair) -> None:
    model, calib = pair
    before = calib.read_bytes()
    _refused(cli("convert", model, "--example", calib, "-o", calib), calib, before)


def test_output_onto_dev_null_is_refused(pair) -> None:
    model, calib = pair
    result = cli("quantize", model, "--calib", calib, "-o", "/dev/null")
    assert result.returncode == 3, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert "not a regular file" in " ".join(result.stderr.split())


def test_output_onto_fifo_is_refused(pair, tmp_path: Path) -> None:
    model, calib = pair
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    result = cli("quantize", model, "--calib", calib, "-o", fifo)
    assert result.returncode == 3 and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_output_with_trailing_slash_is_refused(pair, tmp_path: Path) -> None:
    model, calib = pair
    result = cli("quantize", model, "--calib", calib, "-o", f"{tmp_path}/out/")
    assert result.returncode == 3 and "names a directory" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()
    result = cli("quantize", model, "--calib", calib, "-o", tmp_path)  # an existing directory
    assert result.returncode == 3 and "is a directory" in " ".join(result.stderr.split())


def test_output_name_too_long_is_refused(pair, tmp_path: Path) -> None:
    model, calib = pair
    result = cli("quantize", model, "--calib", calib, "-o", tmp_path / ("m" * 300 + ".onnx"))
    assert result.returncode == 3, result.stderr
    assert "shorter name" in " ".join(result.stderr.split())
    with pytest.raises(OutputError, match="shorter name"):  # a name that fits, but its sidecar would not
        check_output_path(tmp_path / ("m" * 250 + ".onnx"), siblings=[sidecar_path("m" * 250 + ".onnx").name])


def _old_pair(tmp_path: Path) -> tuple[Path, Path, bytes, bytes, qs.QuantizedModel]:
    model = qs.load(mlp_with_calib(tmp_path)[0])
    out = tmp_path / "out.onnx"
    qs.quantize(model, qs.DynamicInt8()).save(out)
    new = qs.quantize(model, qs.WeightInt8(min_size=0))
    return out, sidecar_path(out), out.read_bytes(), sidecar_path(out).read_bytes(), new


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_between_the_two_renames_keeps_the_old_pair(tmp_path: Path, monkeypatch, failure) -> None:
    out, side, old_model, old_side, new = _old_pair(tmp_path)
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the model is in place, the sidecar is not yet
            raise failure
        return real(src, dst)

    monkeypatch.setattr(transaction.os, "replace", flaky)
    with pytest.raises((OutputError, KeyboardInterrupt)):
        new.save(out)
    monkeypatch.undo()
    assert out.read_bytes() == old_model and side.read_bytes() == old_side
    assert hidden_entries(tmp_path) == []


def test_failure_with_no_old_pair_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    model = qs.load(mlp_with_calib(tmp_path)[0])
    q = qs.quantize(model, qs.DynamicInt8())
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(transaction.os, "replace", flaky)
    with pytest.raises(OutputError):
        q.save(tmp_path / "new.onnx")
    monkeypatch.undo()
    assert not (tmp_path / "new.onnx").exists() and not (tmp_path / "new.quantscope.json").exists()
    assert hidden_entries(tmp_path) == []


def test_save_without_sidecar_removes_a_stale_one(tmp_path: Path) -> None:
    out, side, _, _, new = _old_pair(tmp_path)
    new.save(out, sidecar=False)
    assert out.exists() and not side.exists()
