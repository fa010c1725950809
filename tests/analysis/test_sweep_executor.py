"""``sweep(executor=)``: the same report from one process and from a real Dask cluster.

Quantizing and per-variant timing run as jobs; everything but timings and the machine facts
(where each latency was measured) is identical, and the quantized files are bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import quantscope as qs
import tinymodels
from quantscope.analysis.compare import AnalysisOptions
from quantscope.analysis.results import Results
from quantscope.execution import InlineExecutor, local_executor, where_timed

OPTIONS = AnalysisOptions(runs=3, warmup=1, batch_sizes=(1, 4), threads=(1,), memory=False, sensitivity=2,
                          sensitivity_samples=16, layer_samples=8, sensitivity_variants=("static-int8/minmax",))
# the automatic sensitivity pick weighs latency (timing noise): name the variant so runs compare
METHODS = ["static-int8", "dynamic-int8", "float16", "weight-int4"]
TIMING_FIELDS = ("latency", "memory", "measured_on", "path")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sweep-executor")
    path = folder / "mlp.onnx"
    path.write_bytes(tinymodels.mlp(seed=3).SerializeToString())
    model = qs.load(path)
    x = np.random.default_rng(0).standard_normal((48, 64)).astype(np.float32)
    name = model.inputs[0].name
    return {"model": model, "calib": qs.Dataset.from_arrays({name: x[:24]}),
            "data": qs.Dataset.from_arrays({name: x[24:]}), "folder": folder}


def run_sweep(inputs: dict[str, Any], save_dir: Path, executor: Any) -> Results:
    return qs.sweep(inputs["model"], inputs["calib"], inputs["data"], methods=METHODS, options=OPTIONS,
                    save_dir=save_dir, executor=executor)


def comparable_dict(results: Results) -> dict[str, Any]:
    """``results.json`` without timings, the machine facts and where files were written."""
    d = results.to_dict()
    for key in ("machine", "created"):
        d.pop(key)
    d["notes"] = [n for n in d["notes"] if "too noisy" not in n]
    for v in d["variants"]:
        for key in TIMING_FIELDS:
            v.pop(key)
    return d


def saved_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".onnx"}


def test_an_inline_executor_sweep_equals_the_default_one(inputs: dict[str, Any], tmp_path: Path) -> None:
    default = run_sweep(inputs, tmp_path / "default", None)
    inline = run_sweep(inputs, tmp_path / "inline", local_executor(1))
    assert comparable_dict(inline) == comparable_dict(default)
    assert saved_files(tmp_path / "inline") == saved_files(tmp_path / "default")
    assert all(v.measured_on is None for v in default.variants)
    assert len(inline.variant("static-int8/minmax").sensitivity) == 2  # node runs as jobs
    timed = [v for v in inline.variants if v.latency]
    assert len(timed) == len(inline.variants) and all(v.measured_on for v in timed)
    assert all(t.speed is not None for v in timed if v.kind != "float" for t in v.latency)
    assert "one worker kind" in (where_timed(inline.variants) or "")
    assert Results.from_dict(json.loads(json.dumps(inline.to_dict()))) == inline


class SeesNothing(InlineExecutor):
    """Runs inline but claims its workers see none of the driver's files: everything goes by value."""

    def sees_path(self, path: str, size: int, mtime: float) -> bool:
        return False


def test_workers_without_the_driver_files_get_them_by_value_and_send_models_back(
    inputs: dict[str, Any], tmp_path: Path
) -> None:
    fast = dataclasses.replace(OPTIONS, latency=False, sensitivity=0)
    here = qs.sweep(inputs["model"], inputs["calib"], inputs["data"], methods=METHODS, options=fast,
                    save_dir=tmp_path / "here")
    remote = qs.sweep(inputs["model"], inputs["calib"], inputs["data"], methods=METHODS, options=fast,
                      save_dir=tmp_path / "remote", executor=SeesNothing())
    assert comparable_dict(remote) == comparable_dict(here)
    assert saved_files(tmp_path / "remote") == saved_files(tmp_path / "here")
    sidecars = sorted((tmp_path / "remote").glob("*.json"))
    assert sidecars and all(str(inputs["model"].path) in p.read_text() for p in sidecars)


def test_a_failing_method_is_a_note_on_workers_too(inputs: dict[str, Any]) -> None:
    configs = {"bad": qs.StaticInt8(calibration="minmax"), "ok": qs.DynamicInt8()}
    fast = AnalysisOptions(latency=False, memory=False, sensitivity=0, layers=False, energy=False)
    results = qs.sweep(inputs["model"], None, inputs["data"], methods=configs, options=fast,
                       executor=local_executor(1))
    assert [v.name for v in results.variants] == ["float", "ok"]
    assert any(n.startswith("bad: skipped") for n in results.notes)


def test_a_version_3_results_file_reads_with_measured_on_unknown() -> None:
    v3 = {"schema": "quantscope.results", "schema_version": 3, "model": {"name": "m"}, "data": {}, "metric": "agreement",
          "variants": [{"name": "float", "kind": "float", "path": None, "method": None, "config": None,
                        "size_bytes": 1, "param_bytes": {}, "quality": {"agreement": 1.0}}]}
    r = Results.from_dict(v3)
    assert r.variants[0].measured_on is None and r.to_dict()["schema_version"] == 4


@pytest.mark.slow
def test_a_local_cluster_sweep_gives_the_inline_report_and_files(inputs: dict[str, Any], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    inline = run_sweep(inputs, tmp_path / "inline", local_executor(1))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            remote = run_sweep(inputs, tmp_path / "cluster", client)
    finally:
        cluster.close()
    assert comparable_dict(remote) == comparable_dict(inline)
    assert saved_files(tmp_path / "cluster") == saved_files(tmp_path / "inline")
    assert all(v.measured_on for v in remote.variants)
    assert where_timed(remote.variants)
