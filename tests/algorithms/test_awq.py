"""AWQ: activation-aware scales lower the layer output error of block-wise int4 weights."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import quantscope as qs
import tinymodels
from quantscope.algorithms.activation_stats import ExtraStats, FeatureStats, layer_error
from quantscope.algorithms.awq import choose
from quantscope.algorithms.smoothquant import Group
from quantscope.numerics.blockwise import quantize_blockwise
from quantscope.runtime import make_session, run


def _salient_inputs(n: int, seed: int, k: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    x[:, :8] *= 20.0  # a few channels carry most of the signal
    return x


def test_awq_scales_lower_the_layer_error_of_int4_blocks() -> None:
    rng = np.random.default_rng(0)
    k, n = 128, 64
    w = (rng.normal(size=(k, n)) * 0.05).astype(np.float32)
    node = ir.node("MatMul", inputs=[ir.Value(name="x"), ir.Value(name="w", const_value=ir.tensor(w))], name="mm")
    x = _salient_inputs(2000, 1, k)
    gram = x.astype(np.float64).T @ x
    extra = ExtraStats(tensors={"x": FeatureStats(kinds=("gram",), rows=len(x), gram=gram)})
    record = choose(Group("x", (node,)), extra, qs.WeightInt4())
    assert record is not None and 0.0 < record["alpha"] <= 1.0
    s = np.asarray(record["scales"])
    awq_hat = quantize_blockwise((w * s[:, None]).astype(np.float32), 4, 32).dequantize() / s[:, None]
    rtn_hat = quantize_blockwise(w, 4, 32).dequantize()
    ours, base = layer_error(awq_hat - w, gram), layer_error(rtn_hat - w, gram)
    direct = float(np.sum((x.astype(np.float64) @ (awq_hat - w)) ** 2))  # the NumPy reference
    assert ours == pytest.approx(direct, rel=1e-6)
    print(f"int4 layer error: AWQ {ours:.4g} (alpha {record['alpha']}) vs RTN {base:.4g}")
    assert ours < 0.8 * base


def test_awq_improves_a_tiny_model_and_needs_data(tmp_path) -> None:
    path = tmp_path / "wide.onnx"
    onnx.save(tinymodels.wide_mlp(), str(path))
    model = qs.load(path)
    name = model.inputs[0].name
    k = model.inputs[0].shape[-1]
    calib, held = qs.Dataset.from_arrays({name: _salient_inputs(256, 1, k)}), _salient_inputs(256, 2, k)
    ref = run(make_session(model), {name: held})[0]
    assert qs.WeightInt4(awq=True).needs_calibration and not qs.WeightInt4().needs_calibration
    mse = {}
    for config in (qs.WeightInt4(min_size=0), qs.WeightInt4(min_size=0, awq=True)):
        q = qs.quantize(model, config, calib)
        mse[config.awq] = float(np.mean((run(make_session(q.model), {name: held})[0] - ref) ** 2))
    print(f"wide_mlp weight-int4 output MSE on held-out data: RTN {mse[False]:.3g}, AWQ {mse[True]:.3g}")
    assert mse[True] < mse[False]
    assert q.plan.extra["awq"] and q.model.op_histogram().get("Mul", 0) == len(q.plan.extra["awq"])
