"""The executor seam without processes: inline fan-out, job inputs, machine facts, options."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
from pathlib import Path

import execution_helpers as h
import numpy as np
import pytest

import quantscope
from quantscope.errors import ConfigError, DataError
from quantscope.execution import (
    InlineExecutor,
    Job,
    JobInput,
    LocalExecutor,
    MachineFacts,
    comparable,
    executor_from_options,
    fan_out,
    local_executor,
    machine_facts,
    open_executor,
    place,
)
from quantscope.execution.jobs import quantize_job, quantize_many
from quantscope.execution.machine import _cpuinfo


def test_inline_quantize_jobs_match_quantize_bit_for_bit(files):
    ex = local_executor(1)
    model_in, calib_in = place(ex, files["mlp"]), place(ex, files["mlp_calib"])
    assert model_in.by_path and calib_in.by_path
    cfgs = h.configs()
    events = []
    results = fan_out(ex, quantize_job, [Job(k, (model_in, c, calib_in)) for k, c in cfgs.items()],
                      progress=events.append)
    assert [r.key for r in results] == list(cfgs)
    model, calib = quantscope.load(files["mlp"]), quantscope.Dataset.from_npz(files["mlp_calib"])
    for result, config in zip(results, cfgs.values(), strict=True):
        assert result.ok, result.error
        assert result.attempts == 1 and result.seconds is not None and result.seconds >= 0
        assert result.machine == machine_facts()
        expected = quantscope.quantize(model, config, calib)
        assert result.value.model.serialize() == expected.model.serialize()
    finals = [e for e in events if e.state == "done"]
    assert [e.done for e in finals] == list(range(1, len(cfgs) + 1))
    assert all(e.total == len(cfgs) for e in events)


def test_a_job_that_raises_is_reported_not_retried():
    results = fan_out(InlineExecutor(), h.fail_with_value_error, [Job("a", (1,))], retries=3)
    (result,) = results
    assert not result.ok and result.attempts == 1
    assert result.error == "ValueError: bad job 1"
    assert isinstance(result.exception, ValueError)
    assert result.machine is not None


def test_fan_out_refuses_bad_arguments():
    with pytest.raises(ConfigError, match="unique key"):
        fan_out(InlineExecutor(), h.square, [Job("a", (1,)), Job("a", (2,))])
    with pytest.raises(ConfigError, match="retries"):
        fan_out(InlineExecutor(), h.square, [], retries=-1)
    with pytest.raises(ConfigError, match="timeout"):
        fan_out(InlineExecutor(), h.square, [], timeout=0)


def test_results_come_back_in_job_order_from_a_thread_pool():
    with cf.ThreadPoolExecutor(4) as pool:
        results = fan_out(pool, h.square, [Job(str(i), (i,)) for i in range(20)])
    assert [r.value for r in results] == [i * i for i in range(20)]


def test_timeout_fails_the_jobs_still_waiting():
    with cf.ThreadPoolExecutor(1) as pool:
        results = fan_out(pool, h.sleep_for, [Job("slow", (1.5,))], timeout=0.3, poll=0.05)
    assert not results[0].ok and "no job finished within 0.3 s" in results[0].error


def test_ctrl_c_cancels_the_queued_jobs():
    def interrupt(event):
        if event.key == "2" and event.state == "submitted":
            raise KeyboardInterrupt

    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(KeyboardInterrupt):
        fan_out(pool, h.sleep_for, [Job(str(i), (0.2,)) for i in range(5)], progress=interrupt)


def test_executor_options(monkeypatch):
    monkeypatch.delenv("QUANTSCOPE_SCHEDULER", raising=False)
    assert isinstance(local_executor(1), InlineExecutor)
    pool = local_executor(2)
    assert isinstance(pool, LocalExecutor) and pool.workers == 2
    pool.shutdown()
    default = executor_from_options()
    assert isinstance(default, InlineExecutor | LocalExecutor)
    default.shutdown()
    with cf.ThreadPoolExecutor(1) as given:
        assert executor_from_options(executor=given) is given
        with pytest.raises(ConfigError, match="not both"):
            executor_from_options(workers=2, executor=given)
    with pytest.raises(ConfigError, match=r"concurrent\.futures"):
        executor_from_options(executor=object())
    with pytest.raises(ConfigError, match="positive"):
        local_executor(0)


def test_job_input_by_path_checks_the_file(tmp_path: Path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"12345")
    ref = JobInput.from_path(f)
    with ref.local_path() as p:
        assert p.read_bytes() == b"12345"
    f.write_bytes(b"123456")
    with pytest.raises(DataError, match="differs on this worker"), ref.local_path():
        pass
    by_value = dataclasses.replace(ref, path=None, value=b"abc")
    with by_value.local_path() as p:
        assert p.name == "a.bin" and p.read_bytes() == b"abc"
    assert not p.exists()


def test_place_sends_in_memory_models_and_datasets_by_value(files):
    loaded = quantscope.load(files["mlp"])
    assert place(InlineExecutor(), loaded).path == str(files["mlp"].resolve())
    in_memory = quantscope.Model.from_proto(loaded.to_proto())
    model_in = place(InlineExecutor(), in_memory)
    assert not model_in.by_path and model_in.load_model().serialize() == in_memory.serialize()
    data = quantscope.Dataset.from_arrays({"x": np.ones((3, 64), np.float32)})
    back = place(InlineExecutor(), data).load_dataset()
    assert len(back) == 3


def test_cpuinfo_is_read_for_x86_and_arm(tmp_path: Path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse4_2 avx2 avx512_vnni\n")
    assert _cpuinfo(x86) == ("Some CPU", {"fpu", "sse4_2", "avx2", "avx512_vnni"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n")
    assert _cpuinfo(arm)[1] == {"fp", "asimd", "asimddp"}
    assert _cpuinfo(tmp_path / "missing") == ("", set())


@dataclasses.dataclass
class _Timed:
    key: str
    machine: MachineFacts | None


def test_comparable_groups_by_worker_kind():
    a = MachineFacts("host-a", "CPU A", "x86_64", ("avx2",), 8, 8)
    a_twin = dataclasses.replace(a, hostname="host-b")
    b = dataclasses.replace(a, flags=("avx2", "avx512_vnni"))
    same = comparable([_Timed("int8", a), _Timed("fp16", a_twin)])
    assert same.valid and same.same_kind("int8", "fp16")
    assert "one worker kind" in same.text() and "CPU A" in same.text()
    mixed = comparable([_Timed("int8", a), _Timed("fp16", b), _Timed("int4", None)])
    assert not mixed.valid and not mixed.same_kind("int8", "fp16")
    text = mixed.text()
    assert "2 worker kinds" in text and "avx512_vnni" in text and "int4" in text
    assert comparable([]).text() == "No latency was measured."


def test_machine_facts_describe_this_machine():
    facts = machine_facts()
    assert facts.logical_cpus == os.cpu_count()
    assert 1 <= facts.usable_cpus <= facts.logical_cpus
    assert facts.hostname and facts.cpu_model
    assert set(facts.to_dict()) >= {"hostname", "cpu_model", "flags", "usable_cpus"}


def test_quantize_many_places_once_and_saves_on_the_worker(files, tmp_path):
    calib = quantscope.Dataset.from_npz(files["mlp_calib"])  # in memory: travels by value
    cfgs = h.configs()
    results = quantize_many(local_executor(1), quantscope.load(files["mlp"]), cfgs, calib,
                            save_paths={"dynamic": tmp_path / "dynamic.onnx"})
    assert list(results) == list(cfgs)
    assert results["dynamic"].value == tmp_path / "dynamic.onnx" and (tmp_path / "dynamic.onnx").exists()
    expected = quantscope.quantize(quantscope.load(files["mlp"]), cfgs["static/entropy"], calib)
    assert results["static/entropy"].value.model.serialize() == expected.model.serialize()


def test_open_executor_shuts_down_only_what_it_started(monkeypatch):
    monkeypatch.delenv("QUANTSCOPE_SCHEDULER", raising=False)
    with cf.ThreadPoolExecutor(1) as given:
        with open_executor(executor=given) as ex:
            assert ex is given
        assert given.submit(h.square, 2).result() == 4  # still open
    with open_executor(workers=None) as made:
        assert fan_out(made, h.square, [Job("a", (5,))])[0].value == 25


def test_a_model_with_external_data_goes_by_path_or_whole_by_value(files, tmp_path):
    import onnx

    proto = quantscope.load(files["mlp"]).to_proto()
    onnx.save(proto, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    model = quantscope.load(tmp_path / "ext.onnx")
    assert model.data_files
    assert place(InlineExecutor(), model).path == str((tmp_path / "ext.onnx").resolve())

    class Remote(cf.ThreadPoolExecutor):
        def sees_path(self, path, size, mtime):
            return not path.endswith(".data")

    with Remote(1) as remote:
        by_value = place(remote, model)
        assert not by_value.by_path and by_value.load_model().serialize() == model.serialize()


def test_a_cluster_without_workers_fails_the_jobs_instead_of_hanging(monkeypatch):
    from quantscope.execution import fanout

    monkeypatch.setattr(fanout, "NO_WORKER_GRACE_S", 0.2)

    class Deserted(cf.ThreadPoolExecutor):
        def worker_count(self) -> int:
            raise OSError("scheduler gone")

    with Deserted(1) as ex:
        (result,) = fan_out(ex, h.sleep_for, [Job("stuck", (2.0,))], poll=0.05)
    assert not result.ok and "no worker reachable" in result.error


def test_an_error_in_the_progress_callback_cancels_the_rest():
    def broken(event):
        raise RuntimeError("progress bar bug")

    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="progress bar bug"):
        fan_out(pool, h.square, [Job(str(i), (i,)) for i in range(3)], progress=broken)
