"""Smoke run of the benchmark (bench/) on the bundled example CNN with tiny settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("bench")
    results = out / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--models", "digits", "--calibrations", "minmax",
         "--work-dir", str(out / "work"), "--results", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(results.with_suffix(".json").read_text()), results.read_text(), proc.stdout


def test_both_tools_quantized_and_were_measured(smoke: tuple[dict, str, str]) -> None:
    data, _, _ = smoke
    (section,) = data["models"]
    runs = {(r["tool"], r["variant"]): r for r in section["runs"]}
    for tool in ("quantscope", "ort"):
        r = runs[(tool, "static-minmax")]
        assert r["status"] == "ok", r
        assert r["samples"] == 32
        assert 0.5 <= r["quality"] <= 1.0  # accuracy on the bundled 400 eval digits
        assert _finite(r["seconds"]) and r["seconds"] > 0
        # the worker's own peak (VmHWM), above its post-import RSS, far below a parent's size
        assert _finite(r["peak_rss_mb"]) and r["rss_before_mb"] <= r["peak_rss_mb"] < 4096
        assert r["size"] > 0
        lat = r.get("latency_ms", {})
    # the best static model of each tool, and the float model, were timed in every setting
    for key in (("float", "float32"), ("quantscope", "static-minmax"), ("ort", "static-minmax")):
        lat = runs[key]["latency_ms"]
        assert set(lat) == {"b1t1", "b1t2", "b8t1", "b8t2"}
        assert all(_finite(v) and v > 0 for v in lat.values())
    # an int8 model is smaller than the float one (weights stored in 8 bits)
    assert runs[("quantscope", "static-minmax")]["size"] < runs[("float", "float32")]["size"] / 2
    for r in section["runs"]:
        assert r["status"] in ("ok", "not available"), r


def test_results_file_names_machine_versions_and_ratios(smoke: tuple[dict, str, str]) -> None:
    data, text, stdout = smoke
    assert data["machine"]["cores"] >= 1 and data["versions"]["onnxruntime"] != "not installed"
    assert "## Targets" in text and "## digits-cnn" in text
    assert data["date"][:10] in text
    assert "keras" not in data["models"]  # only digits was asked for
    ratio_rows = [ln for ln in text.splitlines() if ln.startswith("| static-minmax | 32 |")]
    assert len(ratio_rows) == 1
    cells = [c.strip() for c in ratio_rows[0].strip("|").split("|")]
    # quantize time, peak RSS, size and the four latencies are real ratios
    for cell in cells[3:]:
        assert cell.endswith("x") and math.isfinite(float(cell[:-1])), cells
    assert "quantscope / onnxruntime.quantization" in stdout
