"""`quantscope quantize --config` with TOML and hostile config files, through click's runner (exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import tinymodels
from quantscope import cli


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = Path(tinymodels.save(tinymodels.mlp(), tmp_path / "mlp.onnx"))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32))
    return {"model": model, "calib": calib, "out": tmp_path / "q.onnx"}


def _quantize(files: dict[str, Path], config: Path) -> Result:
    args = ["quantize", files["model"], "--calib", files["calib"], "-o", files["out"], "--config", config]
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_toml_config_drives_quantize(files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "quant.toml"
    config.write_text('method = "static-int8"\ncalibration = "percentile"\npercentile = 99.5\nnum_samples = 4\n\n[exclude]\nnames = ["fc3"]\n')
    result = _quantize(files, config)
    assert result.exit_code == 0, result.output
    side = json.loads(files["out"].with_name("q.quantscope.json").read_text())["config"]
    assert side["calibration"] == "percentile" and side["percentile"] == 99.5
    assert side["exclude"]["names"] == ["fc3"] and side["num_samples"] == 4


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("latin.toml", b'method = "static-int8"\n# caf\xe9\n', "is not UTF-8 text"),
        ("latin.json", b'{"method": "caf\xe9"}', "is not UTF-8 text"),
        ("deep.json", b"[" * 200_000 + b"]" * 200_000, "nests tables or arrays deeper"),
        ("deep.toml", b"x = " + b"[" * 200_000 + b"]" * 200_000, "nests tables or arrays deeper"),
        ("bad.toml", b"method = static-int8\n", "not valid TOML"),
        ("typo.toml", b'method = "static-int8"\ncalibraton = "entropy"\n', "unknown option(s) for static-int8: calibraton"),
    ],
)
def test_hostile_config_files_exit_3_with_a_message(
    files: dict[str, Path], tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    config = tmp_path / name
    config.write_bytes(content)
    result = _quantize(files, config)
    assert result.exit_code == 3, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output and not files["out"].exists()
