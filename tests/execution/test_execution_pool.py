"""The local default: a process pool on this machine, restarted when a worker process dies."""

from __future__ import annotations

import execution_helpers as h
import pytest

import quantscope
from quantscope.calibrate import collect
from quantscope.calibrate_shards import collect_sharded
from quantscope.errors import UnsupportedModelError
from quantscope.execution import Job, LocalExecutor, fan_out, local_executor, place
from quantscope.execution.jobs import quantize_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool():
    with local_executor(2) as executor:
        assert isinstance(executor, LocalExecutor)
        yield executor


def test_pool_quantize_jobs_match_quantize_bit_for_bit(files, pool):
    model_in, calib_in = place(pool, files["conv"]), place(pool, files["conv_calib"])
    cfgs = h.configs()
    results = fan_out(pool, quantize_job, [Job(k, (model_in, c, calib_in)) for k, c in cfgs.items()])
    model, calib = quantscope.load(files["conv"]), quantscope.Dataset.from_npz(files["conv_calib"])
    for result, config in zip(results, cfgs.values(), strict=True):
        assert result.machine is not None and result.machine.usable_cpus >= 1
        if result.key == "int4":  # no MatMul/Gemm weight big enough: the worker's error comes back
            assert isinstance(result.exception, UnsupportedModelError) and result.attempts == 1
            with pytest.raises(UnsupportedModelError):
                quantscope.quantize(model, config, calib)
            continue
        assert result.ok, result.error
        assert result.value.model.serialize() == quantscope.quantize(model, config, calib).model.serialize()


def test_a_dead_worker_process_is_retried_in_a_fresh_pool(files, pool, tmp_path):
    marker = tmp_path / "died"
    jobs = [Job("dies once", (str(marker),)), *(Job(f"square {i}", (i,)) for i in range(3))]
    events = []
    results = fan_out(pool, _dispatch, jobs, progress=events.append, retries=1)
    assert results[0].ok and results[0].value == "survived" and results[0].attempts == 2
    assert [r.value for r in results[1:]] == [0, 1, 4]
    assert any(e.state == "retrying" and "BrokenProcessPool" in e.detail for e in events)


def test_a_worker_that_always_dies_is_reported_failed(pool):
    (result,) = fan_out(pool, h.always_die, [Job("doomed")], retries=1)
    assert not result.ok and result.attempts == 2
    assert "worker lost" in result.error and "BrokenProcessPool" in result.error
    # the pool was restarted: it still runs jobs
    assert fan_out(pool, h.square, [Job("after", (3,))])[0].value == 9


def test_pool_sharded_calibration_equals_one_pass(files, pool):
    request = h.request("entropy")
    sharded = collect_sharded(files["mlp"], files["mlp_calib"], request, executor=pool, shards=3)
    model = quantscope.load(files["mlp"])
    whole = collect(model, quantscope.Dataset.from_npz(files["mlp_calib"]).bind(model.inputs), request)
    for name, obs in whole.observers.items():
        assert sharded.observers[name].to_dict() == obs.to_dict()


def _dispatch(arg):
    return h.die_once(arg) if isinstance(arg, str) else h.square(arg)
