"""The bundled example end to end, as `make demo` runs it: a sweep of every method and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import quantscope.demo as demo
from quantscope.analysis import AnalysisOptions
from quantscope.analysis.results import Results
from quantscope.cli import main

# the demo's own code path, with fewer timed runs (the demo's budget is checked by hand: < 2 min)
LIGHT = AnalysisOptions(batch_sizes=(1, 8), threads=(1,), warmup=1, runs=2, memory=False, layer_samples=8,
                        sensitivity=1, sensitivity_samples=32, calib_samples=32)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "DEMO_OPTIONS", LIGHT)
        result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_sweeps_every_method_on_the_bundled_cnn(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    results = Results.load(out / "results.json")
    names = [v.name for v in results.variants]
    assert names[0] == "float"
    assert {"static-int8/minmax", "static-int8/percentile", "static-int8/entropy", "static-int8/mse",
            "float16", "cluster-4", "binary"} <= set(names)
    ref = results.reference
    int8 = results.variant("static-int8/percentile")
    print(f"\ndemo: float {ref.quality['accuracy']:.3f}, int8 {int8.quality['accuracy']:.3f}, "
          f"size {int8.size_bytes / ref.size_bytes:.3f}, energy {int8.energy.total_uj:.1f} vs "
          f"{ref.energy.total_uj:.1f} µJ")
    assert ref.quality["accuracy"] >= 0.98
    assert int8.quality["accuracy"] >= ref.quality["accuracy"] - 0.01
    assert int8.size_bytes < 0.3 * ref.size_bytes
    assert int8.plan is not None and int8.plan.runtime_ops.get("QLinearConv") == 6
    assert int8.layers and int8.energy.total_uj < ref.energy.total_uj
    assert any(v.sensitivity for v in results.variants)
    assert (out / "models" / "digits_cnn.static-int8-percentile.onnx").exists()
    assert (out / "models" / "digits_cnn.static-int8-percentile.quantscope.json").exists()


def test_demo_command_prints_the_table_and_where_the_report_is(demo_run: tuple[Path, str]) -> None:
    out, output = demo_run
    assert "static-int8" in output and "report:" in output
    assert (out / "results.json").exists()
    if (out / "index.html").exists():
        assert (out / "summary.md").exists()
