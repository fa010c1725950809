"""GPTQ against round-to-nearest on small layers (NumPy) and on a tiny model (ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import quantscope as qs
import tinymodels
from quantscope.algorithms.activation_stats import layer_error as _error
from quantscope.algorithms.gptq import gptq_blockwise
from quantscope.numerics.blockwise import quantize_blockwise
from quantscope.runtime import make_session, run


def layer_error(w: np.ndarray, w_hat: np.ndarray, gram: np.ndarray) -> float:
    return _error(np.asarray(w, dtype=np.float64) - w_hat, gram)


def _correlated_inputs(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    mixing = np.random.default_rng(7).normal(size=(k, k)) * 0.3 + np.eye(k)
    x = rng.normal(size=(rows, k)) @ mixing
    x[:, :3] *= 8.0  # a few outlier features, as transformers have
    return x


@pytest.mark.parametrize(("bits", "symmetric", "k_axis"), [(4, True, 0), (4, False, 1), (8, True, 0)])
def test_gptq_layer_error_below_round_to_nearest(bits: int, symmetric: bool, k_axis: int) -> None:
    rng = np.random.default_rng(bits + k_axis)
    k, n = 128, 48
    x = _correlated_inputs(rng, 2000, k)
    w_kn = (rng.normal(size=(k, n)) * 0.05).astype(np.float32)
    w = w_kn if k_axis == 0 else w_kn.T.copy()
    gram = x.T @ x
    bq = gptq_blockwise(w, gram, len(x), bits, 32, symmetric=symmetric, k_axis=k_axis)
    rtn = quantize_blockwise(w, bits, 32, symmetric=symmetric, k_axis=k_axis)
    ours, base = layer_error(w_kn, bq.dequantize(), gram), layer_error(w_kn, rtn.dequantize(), gram)
    # the NumPy reference: the layer's output error on the calibration rows themselves
    direct = float(np.sum((x @ (w_kn.astype(np.float64) - bq.dequantize())) ** 2))
    assert ours == pytest.approx(direct, rel=1e-6)
    print(f"{bits}-bit symmetric={symmetric}: GPTQ {ours:.4g} vs RTN {base:.4g}")
    assert ours < 0.7 * base
    # the stored codes are what the block layout promises: codes in range, scales per block
    assert bq.codes.shape == rtn.codes.shape and int(bq.codes.max()) < (1 << bits)
    # and held-out rows from the same distribution gain as well
    held = _correlated_inputs(np.random.default_rng(99), 2000, k)
    assert layer_error(w_kn, bq.dequantize(), held.T @ held) < layer_error(w_kn, rtn.dequantize(), held.T @ held)


def test_gptq_needs_data_only_when_chosen(tmp_path) -> None:
    path = tmp_path / "wide.onnx"
    onnx.save(tinymodels.wide_mlp(), str(path))
    model = qs.load(path)
    assert not qs.WeightInt4().needs_calibration
    assert qs.WeightInt4(algorithm="gptq").needs_calibration
    with pytest.raises(qs.ConfigError, match="needs calibration data"):
        qs.quantize(model, qs.WeightInt4(algorithm="gptq"))


def test_gptq_improves_a_tiny_model(tmp_path) -> None:
    path = tmp_path / "wide.onnx"
    onnx.save(tinymodels.wide_mlp(), str(path))
    model = qs.load(path)
    rng = np.random.default_rng(0)
    d_in = model.inputs[0].shape[-1]
    mixing = rng.normal(size=(d_in, d_in)) * 0.2 + np.eye(d_in)

    def data(n: int, seed: int) -> np.ndarray:
        return (np.random.default_rng(seed).normal(size=(n, d_in)) @ mixing).astype(np.float32)

    name = model.inputs[0].name
    calib, held = qs.Dataset.from_arrays({name: data(256, 1)}), data(256, 2)
    ref = run(make_session(model), {name: held})[0]

    def err(config: qs.WeightInt4) -> float:
        q = qs.quantize(model, config, calib)
        return float(np.mean((run(make_session(q.model), {name: held})[0] - ref) ** 2)), q

    rtn, _ = err(qs.WeightInt4(min_size=0))
    gptq, q = err(qs.WeightInt4(algorithm="gptq", min_size=0))
    print(f"wide_mlp weight-int4 output MSE on held-out data: RTN {rtn:.3g}, GPTQ {gptq:.3g}")
    assert gptq < rtn
    gain = q.plan.extra["algorithm_gain_db"]
    assert gain["measure"] == "layer output error" and gain["min"] >= 0.0


def test_gptq_rounds_static_int8_weights(tmp_path) -> None:
    path = tmp_path / "wide.onnx"
    onnx.save(tinymodels.wide_mlp(), str(path))
    model = qs.load(path)
    name, d_in = model.inputs[0].name, model.inputs[0].shape[-1]
    mixing = np.random.default_rng(0).normal(size=(d_in, d_in)) * 0.2 + np.eye(d_in)

    def data(n: int, seed: int) -> np.ndarray:
        return (np.random.default_rng(seed).normal(size=(n, d_in)) @ mixing).astype(np.float32)

    calib, held = qs.Dataset.from_arrays({name: data(256, 1)}), data(256, 2)
    ref = run(make_session(model), {name: held})[0]
    mse = {}
    for on in (False, True):
        q = qs.quantize(model, qs.StaticInt8(gptq=on), calib)
        mse[on] = float(np.mean((run(make_session(q.model), {name: held})[0] - ref) ** 2))
    print(f"wide_mlp static-int8 output MSE on held-out data: RTN weights {mse[False]:.3g}, GPTQ {mse[True]:.3g}")
    assert mse[True] < mse[False]
    assert set(q.plan.extra["gptq_gain_db"]) == {"fc1", "fc2", "fc3"}
