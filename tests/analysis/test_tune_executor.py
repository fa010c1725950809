"""``tune(executor=)``: candidates, node rankings and float-node steps as jobs, the same choice and reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from test_tune import fragile_inputs, fragile_mlp

import quantscope as qs
from quantscope.execution import local_executor


def _tune(tmp_path: Path, executor: object) -> qs.TuneResult:
    path = tmp_path / "fragile.onnx"
    if not path.exists():
        onnx.save(fragile_mlp(), path)
    x = fragile_inputs()
    calib, data = qs.Dataset.from_arrays({"x": x[:64]}), qs.Dataset.from_arrays({"x": x[64:]})
    return qs.tune(qs.load(path), calib, data, max_drop=0.05, methods=["static-int8"], seed=3,
                   executor=executor)


def _same(a: qs.TuneResult, b: qs.TuneResult) -> None:
    assert (a.name, a.config, a.float_nodes, a.reasons) == (b.name, b.config, b.float_nodes, b.reasons)
    assert a.quantized.model.serialize() == b.quantized.model.serialize()
    assert [v.name for v in a.results.variants] == [v.name for v in b.results.variants]
    assert [v.quality for v in a.results.variants] == [v.quality for v in b.results.variants]


def test_tune_on_an_inline_executor_chooses_as_in_process(tmp_path: Path) -> None:
    here, inline = _tune(tmp_path, None), _tune(tmp_path, local_executor(1))
    _same(inline, here)
    assert inline.float_nodes == ("fc1",)
    assert all(v.measured_on for v in inline.results.variants if v.latency)
    assert inline.results.variant(inline.name).measured_on  # the float-node step was timed as a job
    assert np.isfinite(inline.results.variant(inline.name).latency[0].median_ms)


@pytest.mark.slow
def test_tune_on_a_process_pool_chooses_as_in_process(tmp_path: Path) -> None:
    pool = local_executor(2)
    try:
        _same(_tune(tmp_path, pool), _tune(tmp_path, None))
    finally:
        pool.shutdown()
