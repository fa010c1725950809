"""Tiny models and data for the analysis tests, built in code with seeded values."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
CLASSES = 4
D_IN = 16
HIDDEN = 32


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "analysis", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="quantscope-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def classifier(seed: int = 0, *, damaged: bool = False) -> onnx.ModelProto:
    """Gemm → Relu → Gemm (``fc2``) → Relu → Gemm, ``x`` [batch, 16] → ``y`` [batch, 4].

    With ``damaged``, hidden unit 0 of the first layer is dead (always 0) and ``fc2`` gives it
    a weight of 40 in every output channel: harmless in float, but it sets every per-channel
    int8 scale of ``fc2`` so high that its real weights round to zero.
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((HIDDEN, D_IN)) * np.sqrt(2 / D_IN)).astype(np.float32)
    b1 = (rng.standard_normal(HIDDEN) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((HIDDEN, HIDDEN)) * np.sqrt(2 / HIDDEN)).astype(np.float32)
    b2 = (rng.standard_normal(HIDDEN) * 0.1).astype(np.float32)
    w3 = (rng.standard_normal((CLASSES, HIDDEN)) * np.sqrt(2 / HIDDEN)).astype(np.float32)
    b3 = np.zeros(CLASSES, np.float32)
    if damaged:
        w1[0, :] = 0.0
        b1[0] = 0.0
        w2[:, 0] = 40.0
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"),
                                                         (w3, "w3"), (b3, "b3"))]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", D_IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )


def inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D_IN)).astype(np.float32)


def conv_matmul(seed: int = 0) -> onnx.ModelProto:
    """Conv 2→4 channels, 3×3, pad 1 on [1, 2, 8, 8] → Relu → Flatten (256) → MatMul [256, 10].

    By hand: the Conv does 4·8·8 outputs × 2·3·3 = 4608 MACs, the MatMul 256 × 10 = 2560.
    """
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 2, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    m = (rng.standard_normal((256, 10)) * 0.06).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "m"], ["y"], name="matmul"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(m, "m")],
    )


CONV_MATMUL_MACS = 4 * 8 * 8 * 2 * 3 * 3 + 256 * 10
