"""A real Dask cluster on loopback (a LocalCluster of two worker processes, see conftest)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import execution_helpers as h
import pytest

import quantscope
from quantscope.calibrate import collect
from quantscope.calibrate_shards import collect_sharded
from quantscope.errors import ConfigError
from quantscope.execution import (
    DaskExecutor,
    Job,
    comparable,
    executor_from_options,
    fan_out,
    place,
)
from quantscope.execution.jobs import quantize_job

pytestmark = pytest.mark.slow


def _quantize_all(executor, files):
    model_in, calib_in = place(executor, files["mlp"]), place(executor, files["mlp_calib"])
    cfgs = h.configs()
    return model_in, fan_out(executor, quantize_job, [Job(k, (model_in, c, calib_in)) for k, c in cfgs.items()])


def test_cluster_quantize_jobs_match_local_bit_for_bit(files, cluster, monkeypatch):
    model, calib = quantscope.load(files["mlp"]), quantscope.Dataset.from_npz(files["mlp_calib"])
    expected = {k: quantscope.quantize(model, c, calib).model.serialize() for k, c in h.configs().items()}
    model_in, by_path = _quantize_all(cluster, files)
    assert model_in.by_path  # the workers share this machine's file system
    monkeypatch.setattr(cluster, "sees_path", lambda *args: False)
    model_in, by_value = _quantize_all(cluster, files)
    assert not model_in.by_path and model_in.origin == str(files["mlp"].resolve())
    for results in (by_path, by_value):
        assert [r.key for r in results] == list(expected)
        for result in results:
            assert result.ok, result.error
            assert result.value.model.serialize() == expected[result.key]
            assert result.value.source_path == files["mlp"].resolve()
    machines = comparable(by_path + by_value)
    assert machines.valid, machines.text()  # two workers of one kind on one machine
    assert by_path[0].machine.hostname and by_path[0].machine.cpu_model


def test_cluster_sharded_calibration_equals_one_pass(files, cluster):
    model = quantscope.load(files["mlp"])
    data = quantscope.Dataset.from_npz(files["mlp_calib"]).bind(model.inputs)
    for method in ("minmax", "entropy"):
        request = h.request(method)
        sharded = collect_sharded(model, files["mlp_calib"], request, executor=cluster)  # 2 shards per worker
        whole = collect(model, data, request)
        assert sharded.num_samples == whole.num_samples == 60
        for name, obs in whole.observers.items():
            assert sharded.observers[name].to_dict() == obs.to_dict()
            for cal in ("minmax", "percentile", "entropy", "mse") if obs.histogram else ("minmax",):
                assert sharded.range(name, cal) == whole.range(name, cal)


def test_a_killed_worker_has_its_job_retried(cluster, tmp_path: Path):
    pid_file = tmp_path / "pid"

    def kill_when_started():
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():
            time.sleep(0.2)  # the pid is written whole before the job sleeps
            os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    events = []
    start = time.monotonic()
    (result,) = fan_out(cluster, h.wait_to_be_killed, [Job("victim", (str(pid_file), 30.0))],
                        progress=events.append, retries=1, timeout=25)
    killer.join()
    assert result.ok, result.error
    assert result.attempts == 2 and result.value != int(pid_file.read_text())
    assert any(e.state == "retrying" and "KilledWorker" in e.detail for e in events)
    assert time.monotonic() - start < 25  # it did not wait for the 30 s job to end


def test_a_job_that_kills_every_worker_is_reported_failed(cluster):
    (result,) = fan_out(cluster, h.always_die, [Job("doomed")], retries=1, timeout=25)
    assert not result.ok and result.attempts == 2
    assert "worker lost" in result.error and "KilledWorker" in result.error
    _wait_for_workers(cluster, 2)
    assert fan_out(cluster, h.square, [Job("after", (4,))])[0].value == 16


def test_ctrl_c_cancels_the_jobs_on_the_cluster(cluster):
    def interrupt(event):
        if event.key == "3" and event.state == "submitted":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fan_out(cluster, h.sleep_for, [Job(str(i), (5.0,)) for i in range(4)], progress=interrupt)
    deadline = time.monotonic() + 10
    while any(cluster.client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(cluster.client.processing().values())


def test_executor_options_wrap_a_client_and_read_the_environment(cluster, monkeypatch):
    wrapped = executor_from_options(executor=cluster.client)
    assert isinstance(wrapped, DaskExecutor) and wrapped.client is cluster.client
    wrapped.shutdown()  # not ours: the client stays open
    assert cluster.client.status == "running"
    monkeypatch.setenv("QUANTSCOPE_SCHEDULER", cluster.client.scheduler.address)
    with executor_from_options() as from_env:
        assert isinstance(from_env, DaskExecutor) and from_env.worker_count() == cluster.worker_count()
    with pytest.raises(ConfigError, match="cannot go with --scheduler"):
        executor_from_options(workers=2)


def _wait_for_workers(executor, n: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while executor.worker_count() < n and time.monotonic() < deadline:
        time.sleep(0.1)
