"""SmoothQuant: outlier channels move into the weights; the float product is unchanged."""

from __future__ import annotations

import numpy as np
import onnx

import quantscope as qs
import tinymodels
from quantscope.algorithms.smoothquant import estimated_error, scales
from quantscope.numerics.affine import activation_qparams, dequantize, quantize, weight_qparams
from quantscope.runtime import make_session, run

OUTLIERS = [3, 17, 40]


def _inputs(n: int, seed: int, k: int = 64) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    x[:, OUTLIERS] *= 40.0
    return x


def _int8_layer(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The NumPy reference of a static-int8 MatMul: per-tensor uint8 input, per-channel int8 weight."""
    aq = activation_qparams(float(min(x.min(), 0)), float(max(x.max(), 0)), dtype=np.uint8)
    wq = weight_qparams(w, 1)
    return dequantize(quantize(x, aq), aq) @ dequantize(quantize(w, wq), wq)


def test_smoothing_shrinks_the_range_and_the_output_error() -> None:
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(64, 32)) * 0.1).astype(np.float32)
    x = _inputs(4000, 1)
    s = scales(w, np.abs(x).max(axis=0), 0.5)
    xs, ws = x / s, w * s[:, None]
    np.testing.assert_allclose(xs @ ws, x @ w, rtol=1e-4, atol=1e-4)  # the float layer is unchanged
    spread = np.abs(x).max(axis=0)
    assert np.abs(xs).max(axis=0).max() / np.abs(xs).max(axis=0).min() < 0.2 * spread.max() / spread.min()
    plain = np.mean((_int8_layer(x, w) - x @ w) ** 2)
    smoothed = np.mean((_int8_layer(xs.astype(np.float32), ws.astype(np.float32)) - x @ w) ** 2)
    print(f"int8 layer output MSE: {plain:.3g} plain, {smoothed:.3g} smoothed")
    assert smoothed < 0.5 * plain
    # the estimate the α search uses ranks the two the same way
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    sumsq = np.einsum("ij,ij->j", x, x, dtype=np.float64)
    assert estimated_error(w, sumsq, len(x), lo, hi, s) < estimated_error(w, sumsq, len(x), lo, hi, np.ones(64))


def test_the_estimate_tracks_the_measured_error_across_alphas() -> None:
    rng = np.random.default_rng(1)
    w = (rng.normal(size=(64, 24)) * 0.1).astype(np.float32)
    x = _inputs(3000, 2)
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    sumsq = np.einsum("ij,ij->j", x, x, dtype=np.float64)
    candidates = [np.ones(64), *(scales(w, np.abs(x).max(axis=0), a) for a in (0.3, 0.5, 0.8, 0.95))]
    estimated = [estimated_error(w, sumsq, len(x), lo, hi, s) for s in candidates]
    measured = [np.mean(np.sum((_int8_layer((x / s).astype(np.float32), (w * s[:, None]).astype(np.float32)) - x @ w) ** 2,
                               axis=1)) for s in candidates]
    print("estimated", np.round(estimated, 5), "measured", np.round(measured, 5))
    assert int(np.argmin(estimated)) == int(np.argmin(measured))  # the search picks the measured best
    np.testing.assert_allclose(estimated, measured, rtol=0.35)  # and each estimate is of the right size


def test_smoothquant_improves_a_model_with_outlier_channels(tmp_path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), str(path))
    model = qs.load(path)
    name = model.inputs[0].name
    calib, held = qs.Dataset.from_arrays({name: _inputs(256, 1)}), _inputs(256, 2)
    ref = run(make_session(model), {name: held})[0]
    mse = {}
    for on in (False, True):
        q = qs.quantize(model, qs.StaticInt8(smoothquant=on), calib)
        mse[on] = float(np.mean((run(make_session(q.model), {name: held})[0] - ref) ** 2))
    print(f"mlp with outlier channels: output MSE {mse[False]:.3g} -> {mse[True]:.3g} with SmoothQuant")
    assert mse[True] < 0.5 * mse[False]
    records = q.plan.extra["smoothquant"]
    assert records and records[0]["input"] == name and 0.0 < records[0]["alpha"] < 1.0
    assert q.model.op_histogram().get("Mul", 0) == len(records)
    saved = q.save(tmp_path / "mlp.int8.onnx")  # the sidecar records the scales; the model loads
    assert saved.exists() and qs.StaticInt8(smoothquant=0.5).smoothquant_alpha == 0.5


def test_smoothquant_leaves_layers_without_outliers_alone(tmp_path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(tinymodels.mlp(), str(path))
    model = qs.load(path)
    name = model.inputs[0].name
    flat = np.random.default_rng(3).uniform(-1, 1, size=(256, 64)).astype(np.float32)
    q = qs.quantize(model, qs.StaticInt8(smoothquant=True), qs.Dataset.from_arrays({name: flat}))
    assert name not in {r["input"] for r in q.plan.extra.get("smoothquant", [])}


def test_by_default_only_token_sequences_are_smoothed(tmp_path) -> None:
    mlp_path, attention_path = tmp_path / "mlp.onnx", tmp_path / "attention.onnx"
    onnx.save(tinymodels.mlp(), str(mlp_path))
    onnx.save(tinymodels.attention_block(), str(attention_path))
    mlp = qs.load(mlp_path)
    q = qs.quantize(mlp, qs.StaticInt8(), qs.Dataset.from_arrays({"x": _inputs(256, 1)}))
    assert "smoothquant" not in q.plan.extra  # a 2-D input: left alone unless asked
    attention = qs.load(attention_path)
    spec = attention.inputs[0]
    tokens = np.random.default_rng(4).normal(size=(64, 16, 32)).astype(np.float32)
    tokens[..., [2, 9]] *= 50.0  # outlier channels, as transformer activations have
    data = qs.Dataset.from_arrays({spec.name: tokens, "mask": np.ones((64, 16), dtype=np.float32)})
    q = qs.quantize(attention, qs.StaticInt8(), data)
    assert q.plan.extra.get("smoothquant"), "token sequences with outlier channels are smoothed by default"
    off = qs.quantize(attention, qs.StaticInt8(smoothquant=False), data)
    assert "smoothquant" not in off.plan.extra
