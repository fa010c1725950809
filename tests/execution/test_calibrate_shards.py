"""Calibration as map-reduce: shards observed apart and merged give the one-pass ranges."""

from __future__ import annotations

import execution_helpers as h
import pytest

import quantscope
from quantscope.calibrate import collect
from quantscope.calibrate_shards import collect_sharded, shard_rows
from quantscope.config.calibration import calibrator_names
from quantscope.errors import DataError
from quantscope.execution import InlineExecutor, JobInput


def assert_same_stats(sharded, one_pass) -> None:
    assert sharded.num_samples == one_pass.num_samples
    assert dict(sharded.skipped) == dict(one_pass.skipped)
    assert set(sharded.observers) == set(one_pass.observers)
    for name, obs in one_pass.observers.items():
        assert sharded.observers[name].to_dict() == obs.to_dict(), name
        if obs.histogram:
            for cal in calibrator_names():
                assert sharded.range(name, cal) == one_pass.range(name, cal), (name, cal)
        else:
            assert sharded.range(name, "minmax") == one_pass.range(name, "minmax")


def one_pass(files, method: str, num_samples: int | None = 60):
    model = quantscope.load(files["mlp"])
    data = quantscope.Dataset.from_npz(files["mlp_calib"]).bind(model.inputs)
    return collect(model, data, h.request(method, num_samples))


@pytest.mark.parametrize("method", ["minmax", "entropy"])
@pytest.mark.parametrize("shards", [1, 3, 20])
def test_sharded_equals_one_pass_for_every_calibrator(files, method, shards):
    sharded = collect_sharded(files["mlp"], files["mlp_calib"], h.request(method), executor=InlineExecutor(),
                              shards=shards)
    assert_same_stats(sharded, one_pass(files, method))


def test_in_memory_model_and_dataset_travel_by_value(files):
    model = quantscope.load(files["mlp"])
    in_memory = quantscope.Model.from_proto(model.to_proto())
    data = quantscope.Dataset.from_npz(files["mlp_calib"])
    sharded = collect_sharded(in_memory, data, h.request("percentile", None), executor=InlineExecutor(), shards=4)
    assert_same_stats(sharded, one_pass(files, "percentile", None))


def test_shard_rows_cover_the_subset_once_in_order(files):
    model = quantscope.load(files["mlp"])
    data = quantscope.Dataset.from_npz(files["mlp_calib"]).bind(model.inputs).take(60, seed=3)
    pieces = [shard_rows(data, i, 5, 8) for i in range(5)]
    rows = [len(p) for p in pieces if p is not None]
    assert sum(rows) == 60 and all(n % 8 == 0 for n in rows[:-1])
    ten = [shard_rows(data, i, 10, 8) for i in range(10)]  # 8 batches, 10 shards: two are empty
    assert sum(p is None for p in ten) == 2 and sum(len(p) for p in ten if p is not None) == 60


def test_a_worker_that_cannot_read_the_data_fails_with_the_reason(files, tmp_path):
    moved = tmp_path / "calib.npz"
    moved.write_bytes(files["mlp_calib"].read_bytes())
    ref = JobInput.from_path(moved)
    moved.unlink()
    with pytest.raises(DataError, match="missing or differs"):
        collect_sharded(files["mlp"], ref, h.request("minmax"), executor=InlineExecutor(), shards=2)


@pytest.mark.parametrize("calibration", ["minmax", "entropy"])
def test_quantize_with_an_executor_calibrates_in_shards_to_the_same_model(files, tmp_path, calibration):
    model = quantscope.load(files["mlp"])
    data = quantscope.Dataset.from_npz(files["mlp_calib"])
    config = quantscope.StaticInt8(calibration=calibration)
    here = quantscope.quantize(model, config, data)
    sharded = quantscope.quantize(model, config, data, executor=InlineExecutor())
    assert sharded.calibration == here.calibration
    assert sharded.plan.to_dict() == here.plan.to_dict()
    a, b = here.save(tmp_path / "here.onnx"), sharded.save(tmp_path / "sharded.onnx")
    assert a.read_bytes() == b.read_bytes()
