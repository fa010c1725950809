"""check_loads: a model that loads; crashes, hangs and refusals in the child become clear errors
(simulated with the child's test hook, so the crash path really runs); the optimizer at fault is
found by bisection; and the real ONNX Runtime crash on a float16 TransformerEncoder."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

import tinymodels as tm
from quantscope import _loadcheck_spawn
from quantscope._loadcheck_window import crash_window
from quantscope.errors import RuntimeCrashError, RuntimeFailure, UnsupportedModelError
from quantscope.io import Model
from quantscope.loadcheck import LoadReport, check_loads

HOOK = "QUANTSCOPE_LOADCHECK_TEST_HOOK"


@pytest.fixture
def mlp() -> onnx.ModelProto:
    return tm.mlp(seed=0)


def test_a_model_that_loads_is_ok_for_every_kind_of_model_argument(mlp, tmp_path):
    path = tm.save(mlp, tmp_path / "mlp.onnx")
    for model in (mlp, ir.from_proto(mlp), Model.from_proto(mlp), path):
        report = check_loads(model)
        assert report.ok and report.ran and report.runs == 1
        assert report.level == "ORT_ENABLE_ALL"
        assert "ran one sample" in report.message()


def test_a_child_started_ahead_is_the_one_the_check_uses_and_an_unused_one_is_ended(mlp, monkeypatch):
    _loadcheck_spawn.prestart()
    early = _loadcheck_spawn._early
    assert early is not None and early.poll() is None  # importing ONNX Runtime, then waiting for its arguments
    report = check_loads(mlp)
    assert report.ok and report.ran and early.returncode == 0 and _loadcheck_spawn._early is None
    # a crash in the early child is still the crash of this check (it reads the hook when it gets its arguments)
    monkeypatch.setenv(HOOK, "segv")
    _loadcheck_spawn.prestart()
    assert check_loads(mlp, diagnose=False, raise_on_failure=False).outcome == "crashed"
    _loadcheck_spawn.prestart()
    unused = _loadcheck_spawn._early
    _loadcheck_spawn.discard()
    assert unused is not None and unused.returncode is not None and _loadcheck_spawn._early is None


def test_a_child_whose_caller_goes_away_ends_quietly():
    child = _loadcheck_spawn.spawn()
    out, err = child.communicate("", timeout=60)  # end-of-file on stdin: no arguments will come
    assert child.returncode == 0 and not out.strip(), err


def test_the_given_sample_is_the_one_run(mlp):
    report = check_loads(mlp, sample={"x": np.ones((3, 64), np.float32)})
    assert report.ok and report.ran and "[3, 10]" in report.detail


def test_scalar_and_integer_inputs_get_a_synthetic_sample():
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["g"]),
        helper.make_node("Mul", ["g", "temperature"], ["y"]),
    ]
    model = tm._model(
        nodes,
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("temperature", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 3])],
        [tm._init("table", np.arange(12, dtype=np.float32).reshape(4, 3))],
    )
    assert check_loads(model).ran


@pytest.mark.parametrize("hook, signal_name", [("segv", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_crash_in_the_child_is_a_clear_error(mlp, monkeypatch, hook, signal_name):
    monkeypatch.setenv(HOOK, hook)
    with pytest.raises(RuntimeCrashError) as info:
        check_loads(mlp)
    assert isinstance(info.value, UnsupportedModelError) and info.value.exit_code == 3
    report = info.value.report
    assert report.outcome == "crashed" and signal_name in report.detail
    assert "crashed" in str(info.value) and "ORT_ENABLE_ALL" in str(info.value)
    assert report.diagnosed and report.loads_at is None  # every child crashes: no level helps
    assert "no lower optimization level loads it either" in str(info.value)


def test_a_hang_is_a_timeout_error(mlp, monkeypatch):
    monkeypatch.setenv(HOOK, "hang")
    with pytest.raises(RuntimeCrashError, match="did not finish") as info:
        check_loads(mlp, timeout=3, diagnose=False)
    assert info.value.report.outcome == "timeout"


def test_without_raising_the_report_says_what_failed(mlp, monkeypatch):
    monkeypatch.setenv(HOOK, "segv")
    report = check_loads(mlp, diagnose=False, raise_on_failure=False)
    assert isinstance(report, LoadReport) and not report.ok and report.runs == 1


def test_bisection_names_the_optimizer_whose_disabling_makes_it_load(mlp, monkeypatch):
    monkeypatch.setenv(HOOK, "segv-unless:NchwcTransformer")
    report = check_loads(mlp, raise_on_failure=False)
    assert report.outcome == "crashed"
    assert report.crashed_in == "NchwcTransformer"  # read from the child's verbose log
    assert report.optimizers == ("NchwcTransformer",)
    assert "it loads with NchwcTransformer disabled" in report.message()


def test_bisection_finds_a_set_when_no_single_optimizer_is_enough(mlp, monkeypatch):
    # the fake crash names two optimizers the real log also applies: both must be disabled
    monkeypatch.setenv(HOOK, "segv-unless:ConstantFolding+MatMulAddFusion")
    report = check_loads(mlp, raise_on_failure=False)
    assert set(report.optimizers) == {"ConstantFolding", "MatMulAddFusion"}


def test_a_model_onnx_runtime_refuses_is_a_runtime_failure():
    # valid for the checker's eyes only with check off: Relu on int64 has no kernel
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(
        nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(RuntimeFailure, match="refused the model"):
        check_loads(model, diagnose=False)


def test_external_data_is_written_beside_the_temporary_model():
    big = tm.wide_mlp(seed=0)  # initializers above onnx-ir's external-data threshold
    assert check_loads(ir.from_proto(big)).ran


def test_float16_transformer_encoder_crash_is_caught_and_located():
    """ONNX Runtime 1.32 segfaults on this file at ORT_ENABLE_ALL (issue 12, item 6); if a newer
    ONNX Runtime loads it, the check simply passes."""
    torch = pytest.importorskip("torch")
    import quantscope as qs

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True, dropout=0.0)
    encoder = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    model = qs.to_onnx(encoder, torch.randn(2, 10, 32))
    from quantscope.methods import method_for

    method, config = method_for(qs.Float16()), qs.Float16()
    prepared = method.prepare(model, config)
    written = method.apply(prepared, config, method.plan(prepared, config, None))  # unchecked
    report = check_loads(written, raise_on_failure=False)
    if report.ok:
        pytest.skip(f"ONNX Runtime {report.ort_version} loads the float16 encoder")
    assert report.outcome == "crashed" and "SIGSEGV" in report.detail
    assert report.crashed_in == "NchwcTransformer"
    assert "NchwcTransformer" in report.optimizers
    assert report.loads_at is not None
    # the smallest crashing window: a float16 Transpose (perm [1, 0, 2]) feeding a MatMul
    assert [n.split("_")[1] for n in report.nodes] == ["transpose", "MatMul"]
    with pytest.raises(RuntimeCrashError, match="NchwcTransformer"):
        report.raise_for_failure()
    # keeping the Transposes float32 avoids it
    kept = qs.quantize(model, qs.Float16(exclude=qs.NodeSelector(op_types=("Transpose",))))
    assert check_loads(kept.model).ran
    # and quantize() does it by itself: it keeps the traced nodes float and says so in the plan
    safe = qs.quantize(model, qs.Float16())
    assert check_loads(safe.model).ran
    assert any("avoid an ONNX Runtime crash" in note for note in safe.plan.notes)
    assert any(d.action == "float" and "transpose" in d.node.lower() for d in safe.plan.decisions)


def test_crash_window_finds_the_nodes_a_crash_needs():
    """A fake crash that needs nodes b and d (d reads c, which reads b) in one window."""
    names = list("abcdef")
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=n) for i, n in enumerate(names)]
    model = tm._model(
        nodes, [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("t6", TensorProto.FLOAT, [2])], [],
    )
    seen: list[int] = []

    def crashes(window: onnx.ModelProto) -> bool:
        onnx.checker.check_model(window, full_check=True)  # every window is a valid model
        seen.append(len(window.graph.node))
        inside = {n.name for n in window.graph.node}
        return {"b", "d"} <= inside

    assert crash_window(model, crashes) == ("b", "c", "d")
    assert len(seen) <= 2 * 3 + 2
    assert crash_window(model, lambda window: False) == ()
