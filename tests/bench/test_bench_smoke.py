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
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(results.with_suffix(".json").read_text()), results.read_text(), proc.stdout


def test_both_tools_quantized_and_were_measured(smoke: tuple[dict, str, str]) -> None:
    data, _, _ = smoke
    (section,) = data["models"]
    runs = {(r["tool"], r.get("config", ""), r["variant"]): r for r in section["runs"]}
    for key in (("quantscope", "", "static-minmax"), ("ort", "docs", "static-minmax"), ("ort", "defaults", "static-minmax")):
        r = runs[key]
        assert r["status"] == "ok", r
        assert r["samples"] == 32
        assert 0.5 <= r["quality"] <= 1.0  # accuracy on the bundled 400 eval digits
        assert _finite(r["seconds"]) and r["seconds"] > 0
        # the worker's own peak (VmHWM), above its post-import RSS, far below a parent's size
        assert _finite(r["peak_rss_mb"]) and r["rss_before_mb"] <= r["peak_rss_mb"] < 4096
        assert r["size"] > 0
        lat = r.get("latency_ms", {})
    # the best static model of each tool, and the float model, were timed in every setting
    for key in (("float", "", "float32"), ("quantscope", "", "static-minmax"), ("ort", "docs", "static-minmax"),
                ("ort", "defaults", "static-minmax")):
        lat = runs[key]["latency_ms"]
        assert set(lat) == {"b1t1", "b1t2", "b8t1", "b8t2"}
        assert all(_finite(v) and v > 0 for v in lat.values())
        # every setting's rounds are kept, paired across models, for the ratio intervals
        assert len({len(rounds) for rounds in runs[key]["latency_rounds"].values()}) >= 1
    # an int8 model is smaller than the float one (weights stored in 8 bits)
    assert runs[("quantscope", "", "static-minmax")]["size"] < runs[("float", "", "float32")]["size"] / 2
    # the peer rows state their settings: the docs row pre-processes and goes per-channel U8S8
    docs = runs[("ort", "docs", "static-minmax")]["settings"]
    assert "quant_pre_process" in docs and "U8S8" in docs and "per_channel=True" in docs
    assert ("reduce_range=True" in docs) != data["machine"]["vnni"]  # reduce_range exactly without VNNI
    assert "defaults" in runs[("ort", "defaults", "static-minmax")]["settings"]
    for r in section["runs"]:
        # quantscope and ORT run here; a peer that fails is recorded with its error, never dropped
        if r["tool"] in ("quantscope", "ort", "float"):
            assert r["status"] in ("ok", "not available"), r
        else:
            assert r["status"] == "ok" or r.get("error"), r


def test_results_file_names_machine_versions_and_ratios(smoke: tuple[dict, str, str]) -> None:
    data, text, stdout = smoke
    assert data["machine"]["cores"] >= 1 and data["versions"]["onnxruntime"] != "not installed"
    assert "## Targets" in text and "## digits-cnn" in text and "### quantscope against float" in text
    assert data["date"][:10] in text and data["code"] in text  # one run, one code version, stated
    assert "keras" not in data["models"]  # only digits was asked for
    ratio_rows = [ln for ln in text.splitlines() if ln.startswith("| static-minmax | 32 |")]
    assert len(ratio_rows) == 3  # against float, against ORT as its docs advise, against ORT's defaults
    for row in ratio_rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # quantize time, peak RSS, size and the four latencies are real ratios (latency with an interval)
        for cell in cells[3:10]:
            value = cell.split(" ")[0]
            assert value.endswith("x") and math.isfinite(float(value[:-1])), cells
    verdicts = [ln.rsplit("|", 2)[-2].strip() for ln in text.splitlines() if ln.startswith("| digits-cnn |")]
    assert verdicts and set(verdicts) <= {"met", "not met", "tie", "n/a"}
    assert "quantscope / onnxruntime.quantization configured as its docs advise" in stdout
