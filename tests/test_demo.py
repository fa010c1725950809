"""The bundled example end to end, as `make demo` runs it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from quantscope.cli import main
from quantscope.demo import run_demo


def test_demo_quantizes_the_bundled_cnn(tmp_path):
    result = run_demo(tmp_path)
    float_row, int8_row = result["variants"]
    print(f"\ndemo: float {float_row['accuracy']:.3f}, int8 {int8_row['accuracy']:.3f}, "
          f"size {int8_row['size'] / float_row['size']:.3f}, "
          f"b32 latency {float_row['latency_b32_ms']:.2f} -> {int8_row['latency_b32_ms']:.2f} ms")
    assert float_row["accuracy"] >= 0.98
    assert int8_row["accuracy"] >= float_row["accuracy"] - 0.01
    assert int8_row["size"] < 0.3 * float_row["size"]
    assert result["integer_kernels"].get("QLinearConv") == 6
    assert json.loads((tmp_path / "summary.json").read_text())["variants"][1]["name"] == "static-int8"
    assert (tmp_path / "digits_cnn.int8.onnx").exists()
    assert (tmp_path / "digits_cnn.int8.quantscope.json").exists()


def test_demo_command(tmp_path):
    out = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert out.exit_code == 0, out.output
    assert "static-int8" in out.output and "QLinearConv" in out.output
