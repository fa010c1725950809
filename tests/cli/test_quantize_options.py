"""The quantize command's method options are generated from the config classes' field metadata.

Also: a --method that disagrees with --config is refused (it used to write the file's method
silently), options and --set follow one documented precedence, and the old module names
(``quantscope.io``, ``quantscope.inspect``) keep working.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

import quantscope as qs
import tinymodels
from quantscope import cli
from quantscope.cli.options import method_settings
from quantscope.config import config_classes
from quantscope.config.calibration import _CALIBRATORS, Calibrator, Percentile, calibrator_names
from quantscope.config.fields import cli_settings

# every method flag the command had before the options were generated
FLAGS_BEFORE = {
    "--calibration", "--percentile", "--num-samples", "--batch-size", "--activation-dtype", "--per-tensor",
    "--reduce-range", "--full-range", "--integer-io", "--exclude-name", "--exclude-regex", "--exclude-op",
    "--bits", "--block-size", "--asymmetric", "--algorithm", "--format", "--weights-only", "--op-types",
    "--seed", "--set", "--config", "-m", "--method", "-o", "--output", "--calib",
}


@pytest.fixture(autouse=True)
def _wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
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
    np.savez(path, x=np.random.default_rng(1).standard_normal((8, 3, 16, 16)).astype(np.float32))
    return path


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def sidecar_config(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.stem + ".quantscope.json").read_text())["config"]


def refused(result: Result, *words: str) -> str:
    message = flat(result.output)
    assert result.exit_code == 3, result.output
    assert "error: ConfigError:" in message, message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    return message


# ---------------------------------------------------------------------------------------------
# the bug: --method and a config file that disagree


def test_method_flag_that_disagrees_with_the_config_file_is_refused(
    model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    dyn = tmp_path / "dyn.json"
    dyn.write_text(json.dumps({"method": "dynamic-int8"}))
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "--calib", calib_path, "--method", "static-int8", "--config", dyn, "-o", out)
    refused(result, "--method static-int8", "dyn.json", "'dynamic-int8'")
    assert not out.exists() and not out.with_name("q.quantscope.json").exists()

    # the file alone decides; a --method that agrees with it is fine
    for extra in ([], ["--method", "dynamic-int8"]):
        result = invoke("quantize", model_path, "--config", dyn, "-o", out, *extra)
        assert result.exit_code == 0, result.output
        assert sidecar_config(out)["method"] == "dynamic-int8"


def test_config_file_without_method_takes_the_flag_or_the_default(
    model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"per_channel": False}))
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "--calib", calib_path, "--config", cfg, "-o", out)
    assert result.exit_code == 0, result.output
    assert sidecar_config(out)["method"] == "static-int8" and sidecar_config(out)["per_channel"] is False
    result = invoke("quantize", model_path, "-m", "dynamic-int8", "--config", cfg, "-o", out)
    assert result.exit_code == 0, result.output
    assert sidecar_config(out)["method"] == "dynamic-int8" and sidecar_config(out)["per_channel"] is False


def test_an_option_and_a_set_for_the_same_field_are_refused(model_path: Path, calib_path: Path, tmp_path: Path) -> None:
    result = invoke("quantize", model_path, "--calib", calib_path, "--num-samples", "4", "--set", "num_samples=8",
                    "-o", tmp_path / "q.onnx")
    refused(result, "--num-samples and --set num_samples")


def test_an_option_of_another_method_is_refused(model_path: Path, tmp_path: Path) -> None:
    result = invoke("quantize", model_path, "-m", "dynamic-int8", "--bits", "4", "-o", tmp_path / "q.onnx")
    refused(result, "--bits does not apply to dynamic-int8", "cluster")
    result = invoke("quantize", model_path, "-m", "weight-int4", "--full-range", "-o", tmp_path / "q.onnx")
    refused(result, "--reduce-range does not apply to weight-int4", "static-int8, dynamic-int8")


def test_generated_options_reach_the_config(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = invoke("quantize", model_path, "-m", "dynamic-int8", "--op-types", "Gemm, MatMul", "--full-range",
                    "--per-tensor", "--exclude-name", "conv1", "-o", out)
    assert result.exit_code == 0, result.output
    config = sidecar_config(out)
    assert config["op_types"] == ["Gemm", "MatMul"]
    assert config["reduce_range"] is False and config["per_channel"] is False
    assert config["exclude"] == {"names": ["conv1"], "patterns": [], "op_types": []}


# ---------------------------------------------------------------------------------------------
# the options come from the field metadata


def _cli_fields() -> dict[str, set[str]]:
    """CLI name → the methods whose config has a field with that name (nested selectors included)."""
    out: dict[str, set[str]] = {}

    def walk(method: str, cls: type) -> None:
        for f in dataclasses.fields(cls):
            if isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory):
                walk(method, f.default_factory)
            elif "cli" in f.metadata:
                out.setdefault(f.metadata["cli"], set()).add(method)

    for method, cls in config_classes().items():
        walk(method, cls)
    return out


def test_every_cli_field_is_an_option_of_quantize_and_nothing_else_is() -> None:
    quantize = cli.main.commands["quantize"]
    declared = {opt for p in quantize.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    fields = _cli_fields()
    for name, methods in fields.items():
        for opt in name.split("/"):
            assert opt in declared, f"{opt} of {sorted(methods)} is not an option of quantize"
    generated = {s.cli: set(s.targets) for s in method_settings()}
    assert generated == fields
    assert declared >= FLAGS_BEFORE  # no flag lost its name
    from quantscope.cli.data_options import IMAGE_FLAGS, TEXT_FLAGS

    fixed = {"-m", "--method", "-o", "--output", "--calib", "--set", "--config", "--print-config", "-h", "--help",
             *IMAGE_FLAGS, *TEXT_FLAGS}
    assert declared - fixed == {opt for name in fields for opt in name.split("/")}


def test_option_types_follow_the_annotations() -> None:
    by_name = {s.cli: s for s in cli_settings(config_classes())}
    assert by_name["--per-tensor"].kind == "flag" and by_name["--per-tensor"].cli_value is False
    assert by_name["--asymmetric"].kind == "flag" and by_name["--asymmetric"].cli_value is False
    assert by_name["--reduce-range/--full-range"].kind == "switch"
    assert by_name["--num-samples"].type is int and by_name["--percentile"].type is float
    assert by_name["--op-types"].kind == "list" and by_name["--exclude-op"].kind == "multiple"
    assert by_name["--calibration"].choices == calibrator_names()


def test_help_lists_methods_calibrators_and_the_config_rule() -> None:
    result = invoke("quantize", "--help")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    for method in qs.config.method_names():
        assert method in text
    for name in calibrator_names():
        assert name in text
    assert "-m/--method must name the file's method" in text


# ---------------------------------------------------------------------------------------------
# calibrators: one registry for the command line and the config check


def test_calibration_choices_and_check_come_from_the_registry() -> None:
    from quantscope.config import CALIBRATION_METHODS

    assert calibrator_names() == CALIBRATION_METHODS
    with pytest.raises(qs.ConfigError, match="choose one of: minmax, percentile, entropy, mse"):
        qs.StaticInt8(calibration="nope")

    @dataclasses.dataclass(frozen=True)
    class Halfway(Calibrator, name="halfway-test", observer_range="minmax_range", histograms=False):
        """A test calibrator."""

    try:
        assert "halfway-test" in calibrator_names()
        assert qs.StaticInt8(calibration="halfway-test").calibration == "halfway-test"
        assert "halfway-test" in {str(c) for c in next(s for s in method_settings() if s.cli == "--calibration").choices}
    finally:
        _CALIBRATORS.pop("halfway-test")


def test_static_int8_takes_a_calibrator_value() -> None:
    by_value = qs.StaticInt8(calibration=Percentile(99.5), num_samples=8)
    assert by_value == qs.StaticInt8(calibration="percentile", percentile=99.5, num_samples=8)
    calibration = by_value.as_calibration()
    assert calibration.method == Percentile(99.5) and calibration.num_samples == 8
    assert qs.config_from_dict(by_value.to_dict()) == by_value


# ---------------------------------------------------------------------------------------------
# the old module names


def test_old_module_names_re_export_the_new_ones() -> None:
    import quantscope.inspect as old_inspect
    import quantscope.inspection as inspection
    import quantscope.io as old_io
    import quantscope.model_io as model_io

    for name in old_io.__all__:
        assert getattr(old_io, name) is getattr(model_io, name)
    assert old_inspect.inspect_model is inspection.inspect_model
    for module in (old_io, old_inspect):
        assert "kept for one release" in (module.__doc__ or "")
