"""Bias correction: the shift it adds to the bias is the mean output shift weight rounding causes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import quantscope as qs
import tinymodels
from quantscope.algorithms.bias_correction import output_shift
from quantscope.numerics.affine import dequantize, quantize, weight_qparams
from quantscope.runtime import make_session, run


def _node(op: str, **attrs: int) -> ir.Node:
    return ir.node(op, inputs=[], attributes=attrs)


def _rounded(w: np.ndarray, axis: int) -> np.ndarray:
    qp = weight_qparams(w, axis, bits=8)
    return dequantize(quantize(w, qp), qp)


def test_gemm_shift_is_the_measured_mean_output_shift() -> None:
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(24, 64)) * 0.1).astype(np.float32)  # transB=1: [N, K]
    w_hat = _rounded(w, 0)
    x = rng.normal(1.5, 1.0, size=(5000, 64))  # inputs with a non-zero mean
    measured = np.mean(x @ (w - w_hat).T, axis=0)
    shift = output_shift(_node("Gemm", transB=1), w - w_hat, x.mean(axis=0))
    np.testing.assert_allclose(shift, measured, rtol=1e-9, atol=1e-12)
    # after correction the mean error of the layer is gone
    corrected = np.mean(x @ w_hat.T + shift - x @ w.T, axis=0)
    assert np.abs(corrected).max() < 1e-9 < np.abs(measured).max()


@pytest.mark.parametrize("group", [1, 4])
def test_conv_shift_matches_a_numpy_convolution(group: int) -> None:
    rng = np.random.default_rng(group)
    c_in, c_out = 8, 8
    w = (rng.normal(size=(c_out, c_in // group, 3, 3)) * 0.2).astype(np.float32)
    w_hat = _rounded(w, 0)
    x = rng.normal(size=(64, c_in, 6, 6)) + np.linspace(-1, 2, c_in)[None, :, None, None]

    def conv(images: np.ndarray, weight: np.ndarray) -> np.ndarray:  # valid convolution, grouped channels
        patches = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(2, 3))  # [n, c, 4, 4, 3, 3]
        per_group, outs = c_in // group, []
        for o in range(c_out):
            g = o // (c_out // group)
            outs.append(np.einsum("nchwij,cij->nhw", patches[:, g * per_group:(g + 1) * per_group], weight[o]))
        return np.stack(outs, axis=1)

    mean = x.mean(axis=(0, 2, 3))
    shift = output_shift(_node("Conv", group=group), w - w_hat, mean)
    measured = np.mean(conv(x, w - w_hat), axis=(0, 2, 3))  # borders aside, the same up to sampling noise
    np.testing.assert_allclose(shift, measured, atol=0.05 * np.abs(measured).max())
    constant = np.broadcast_to(mean[None, :, None, None], (1, c_in, 6, 6))  # exact on a constant image
    np.testing.assert_allclose(shift, conv(constant, w - w_hat)[0, :, 0, 0], rtol=1e-9, atol=1e-12)


def test_bias_correction_improves_a_conv_model(tmp_path) -> None:
    path = tmp_path / "cnn.onnx"
    onnx.save(tinymodels.conv_bn_relu(), str(path))
    model = qs.load(path)
    rng = np.random.default_rng(0)
    calib = qs.Dataset.from_arrays({"x": (rng.normal(size=(64, 3, 16, 16)) + 0.5).astype(np.float32)})
    held = (rng.normal(size=(64, 3, 16, 16)) + 0.5).astype(np.float32)
    ref = run(make_session(model), {"x": held})[0]
    errors = {}
    for on in (False, True):
        q = qs.quantize(model, qs.StaticInt8(bias_correction=on), calib)
        errors[on] = run(make_session(q.model), {"x": held})[0] - ref
    print(f"conv_bn_relu mean shift {errors[False].mean():.2e} -> {errors[True].mean():.2e}, "
          f"MSE {np.mean(errors[False] ** 2):.2e} -> {np.mean(errors[True] ** 2):.2e}")
    assert abs(errors[True].mean()) < 0.5 * abs(errors[False].mean())
    assert np.mean(errors[True] ** 2) < np.mean(errors[False] ** 2)
    assert set(q.plan.extra["bias_correction"]) == {"conv1", "conv2", "fc"}
