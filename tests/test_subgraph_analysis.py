"""Energy and per-layer error see inside If/Loop/Scan bodies: ops counted as often as they run."""

from __future__ import annotations

import numpy as np

import quantscope as qs
import subgraph_models as sm
import tinymodels
from quantscope.analysis.energy import count_operations
from quantscope.analysis.layers import layer_errors, worst_nodes


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_loop_body_macs_count_once_per_iteration(tmp_path) -> None:
    model = qs.load(tinymodels.save(sm.loop_matmul(steps=3), tmp_path / "loop.onnx"))
    counts = count_operations(model, {"x": _x(2, sm.D)})
    assert counts["fp32 mac"] == 3 * 2 * sm.D * sm.D + 2 * sm.D * 10  # 3 steps, then the head
    assert counts["fp32 add"] == 2 * 3 * 2 * sm.D  # the bias Add and the Relu inside the body, every step
    data = qs.Dataset.from_arrays({"x": _x(16, sm.D, seed=1)})
    q = qs.quantize(model, qs.StaticInt8(), data)
    assert count_operations(q.model, {"x": _x(2, sm.D)})["int8 mac"] == counts["fp32 mac"]


def test_scan_body_macs_count_once_per_step(tmp_path) -> None:
    model = qs.load(tinymodels.save(sm.scan_matmul(seq=6), tmp_path / "scan.onnx"))
    counts = count_operations(model, {"h0": _x(2, sm.D), "x": _x(2, 6, sm.D, seed=1)})
    assert counts["fp32 mac"] == 6 * 2 * (2 * sm.D * sm.D) + 2 * sm.D * 10


def test_only_the_if_branch_that_runs_is_counted(tmp_path) -> None:
    model = qs.load(tinymodels.save(sm.rnn_in_if("GRU"), tmp_path / "if.onnx"))
    feeds = {"x": _x(2, 8, 32), "state": _x(1, 2, 64, seed=1), "rate": np.array(8000, np.int64)}
    counts = count_operations(model, feeds)
    # one branch: its input projection on 8 steps and its output projection (GRU MACs are not priced)
    assert counts["fp32 mac"] == 2 * 8 * 32 * 32 + 2 * 64 * 10


def test_per_layer_error_measures_tensors_inside_bodies_with_body_labels(tmp_path) -> None:
    model = qs.load(tinymodels.save(sm.loop_matmul(steps=3), tmp_path / "loop.onnx"))
    data = qs.Dataset.from_arrays({"x": _x(16, sm.D, seed=2)})
    q = qs.quantize(model, qs.StaticInt8(), data)
    errors = {e.node: e for e in layer_errors(model, q.model, data, plan=q.plan)}
    inner = errors["repeat/body/step_matmul"]  # stacked over the 3 iterations
    assert inner.tensor == "mm" and 25.0 < inner.sqnr_db < 60.0
    assert worst_nodes(errors.values(), [d.node for d in q.plan.quantized_nodes], model)[0] in errors


def test_per_layer_error_skips_the_if_branch_that_did_not_run(tmp_path) -> None:
    proto = sm._rnn_in_if("GRU", 0, 8, 32, 64, stateful=False, rate_input=False)  # rate 8000: else branch
    model = qs.load(tinymodels.save(proto, tmp_path / "if.onnx"))
    data = qs.Dataset.from_arrays({"x": _x(16, 8, 32, seed=3)})
    q = qs.quantize(model, qs.WeightInt8(), data)
    nodes = {e.node for e in layer_errors(model, q.model, data, plan=q.plan)}
    assert "per_rate/else_branch/proj_in" in nodes
    assert not any(n.startswith("per_rate/then_branch/") for n in nodes)
