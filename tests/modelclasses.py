"""One small model per class of real model that quantscope must take (built in code, seeded).

Each builder returns ``(onnx.ModelProto, calibration arrays)``; the arrays are what a user
records from the model's own feeds (``np.stack`` of session feeds, or batched samples).
The classes: a CNN with a fixed batch of 1, a model with a scalar input and an RNN-style
state input ``[layers, batch, H]``, a recurrent network inside an ``If`` on a scalar, a
Paddle-style graph whose weights are ``Constant`` nodes, an LSTM, a GRU.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

OPSET = 17


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="quantscope-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def fixed_batch_cnn(seed: int = 0, n: int = 24) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv → Relu → Conv → Relu → GlobalAveragePool → Flatten → Gemm, input fixed at ``[1, 3, 16, 16]``."""
    rng = np.random.default_rng(seed)
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        h.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        h.make_node("Flatten", ["p"], ["f"], name="flatten"),
        h.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        _init("w1", _w(rng, 16, 3, 3, 3)), _init("b1", _w(rng, 16) * 0.1),
        _init("w2", _w(rng, 32, 16, 3, 3)), _init("b2", _w(rng, 32) * 0.1),
        _init("w3", _w(rng, 64, 32)), _init("b3", _w(rng, 64) * 0.1),
    ]
    graph = h.make_graph(
        nodes, "fixed_batch_cnn",
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
        [h.make_tensor_value_info("logits", T.FLOAT, [1, 64])], inits,
    )
    # recorded session feeds: N × the full input shape
    return _model(graph), {"x": rng.random((n, 1, 3, 16, 16), dtype=np.float32)}


def scalar_and_state(seed: int = 0, n: int = 24) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``y = (x @ W1 + sum_layers(state @ W2)) * scale``: a scalar input and a ``[2, batch, 32]`` state."""
    rng = np.random.default_rng(seed)
    nodes = [
        h.make_node("MatMul", ["x", "w1"], ["hx"], name="proj_x"),
        h.make_node("MatMul", ["state", "w2"], ["hs"], name="proj_state"),
        h.make_node("ReduceSum", ["hs", "axes0"], ["hsum"], name="sum_layers", keepdims=0),
        h.make_node("Add", ["hx", "hsum"], ["pre"], name="add"),
        h.make_node("Mul", ["pre", "scale"], ["y"], name="scale_out"),
        h.make_node("Identity", ["state"], ["state_out"], name="state_passthrough"),
    ]
    inits = [_init("w1", _w(rng, 32, 64)), _init("w2", _w(rng, 32, 64)), _init("axes0", np.array([0], np.int64))]
    graph = h.make_graph(
        nodes, "scalar_and_state",
        [
            h.make_tensor_value_info("x", T.FLOAT, ["batch", 32]),
            h.make_tensor_value_info("state", T.FLOAT, [2, "batch", 32]),
            h.make_tensor_value_info("scale", T.FLOAT, []),
        ],
        [
            h.make_tensor_value_info("y", T.FLOAT, ["batch", 64]),
            h.make_tensor_value_info("state_out", T.FLOAT, [2, "batch", 32]),
        ],
        inits,
    )
    feeds = {
        "x": rng.standard_normal((n, 1, 32)).astype(np.float32),
        "state": rng.standard_normal((n, 2, 1, 32)).astype(np.float32),
        "scale": np.full((n,), 0.5, np.float32),
    }
    return _model(graph), feeds


def _gru_branch(name: str, rng: np.random.Generator, hidden: int, d_in: int) -> onnx.GraphProto:
    """A branch body: GRU over the outer ``x`` (read from the enclosing scope) and a MatMul head."""
    nodes = [
        h.make_node("Transpose", ["x"], [f"{name}_xt"], name=f"{name}_to_time_major", perm=[1, 0, 2]),
        h.make_node("GRU", [f"{name}_xt", f"{name}_W", f"{name}_R", f"{name}_B"], ["", f"{name}_h"],
                    name=f"{name}_gru", hidden_size=hidden),
        h.make_node("Squeeze", [f"{name}_h", f"{name}_axes"], [f"{name}_hs"], name=f"{name}_squeeze"),
        h.make_node("MatMul", [f"{name}_hs", f"{name}_head"], [f"{name}_y"], name=f"{name}_head_mm"),
    ]
    inits = [
        _init(f"{name}_W", _w(rng, 1, 3 * hidden, d_in)), _init(f"{name}_R", _w(rng, 1, 3 * hidden, hidden)),
        _init(f"{name}_B", _w(rng, 1, 6 * hidden) * 0.1), _init(f"{name}_axes", np.array([0], np.int64)),
        _init(f"{name}_head", _w(rng, hidden, 64)),
    ]
    return h.make_graph(nodes, name, [], [h.make_tensor_value_info(f"{name}_y", T.FLOAT, None)], inits)


def rnn_in_if(seed: int = 0, n: int = 24, hidden: int = 32, d_in: int = 16) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The whole network inside an ``If`` on a scalar ``rate``: one GRU branch per sample rate."""
    rng = np.random.default_rng(seed)
    nodes = [
        h.make_node("Equal", ["rate", "rate16k"], ["is16k"], name="is_16k"),
        h.make_node("If", ["is16k"], ["y"], name="by_rate",
                    then_branch=_gru_branch("r16k", rng, hidden, d_in),
                    else_branch=_gru_branch("r8k", rng, hidden, d_in)),
    ]
    graph = h.make_graph(
        nodes, "rnn_in_if",
        [h.make_tensor_value_info("x", T.FLOAT, ["batch", 10, d_in]), h.make_tensor_value_info("rate", T.INT64, [])],
        [h.make_tensor_value_info("y", T.FLOAT, ["batch", 64])],
        [_init("rate16k", np.array(16000, np.int64))],
    )
    feeds = {"x": rng.standard_normal((n, 10, d_in)).astype(np.float32), "rate": np.full((n,), 16000, np.int64)}
    return _model(graph), feeds


def paddle_constants(seed: int = 0, n: int = 24) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv → Relu → Flatten → MatMul → Add, every weight and bias held in a ``Constant`` node."""
    rng = np.random.default_rng(seed)

    def const(name: str, array: np.ndarray) -> onnx.NodeProto:
        return h.make_node("Constant", [], [name], name=f"{name}_const", value=numpy_helper.from_array(array, name))

    nodes = [
        const("conv_w", _w(rng, 8, 3, 3, 3)), const("conv_b", _w(rng, 8) * 0.1),
        const("fc_w", _w(rng, 8 * 8 * 8, 64)), const("fc_b", _w(rng, 64) * 0.1),
        const("shape", np.array([0, -1], np.int64)),
        h.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv2d_0", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["r"], name="relu_0"),
        h.make_node("Reshape", ["r", "shape"], ["f"], name="reshape_0"),
        h.make_node("MatMul", ["f", "fc_w"], ["m"], name="linear_0"),
        h.make_node("Add", ["m", "fc_b"], ["y"], name="linear_0_bias"),
    ]
    graph = h.make_graph(
        nodes, "paddle_constants",
        [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 8, 8])],
        [h.make_tensor_value_info("y", T.FLOAT, ["batch", 64])], [],
    )
    return _model(graph), {"x": rng.random((n, 3, 8, 8), dtype=np.float32)}


def recurrent(kind: str, seed: int = 0, n: int = 24, hidden: int = 32, d_in: int = 16) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``kind`` = "LSTM" or "GRU" over ``[batch, 10, d_in]`` (batch-major input), then a MatMul head."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3}[kind]
    nodes = [
        h.make_node("Transpose", ["x"], ["xt"], name="to_time_major", perm=[1, 0, 2]),
        h.make_node(kind, ["xt", "W", "R", "B"], ["", "h_last"], name=kind.lower(), hidden_size=hidden),
        h.make_node("Squeeze", ["h_last", "axes"], ["hs"], name="squeeze"),
        h.make_node("MatMul", ["hs", "head"], ["y"], name="head"),
    ]
    inits = [
        _init("W", _w(rng, 1, gates * hidden, d_in)), _init("R", _w(rng, 1, gates * hidden, hidden)),
        _init("B", _w(rng, 1, 2 * gates * hidden) * 0.1), _init("axes", np.array([0], np.int64)),
        _init("head", _w(rng, hidden, 64)),
    ]
    graph = h.make_graph(
        nodes, kind.lower(),
        [h.make_tensor_value_info("x", T.FLOAT, ["batch", 10, d_in])],
        [h.make_tensor_value_info("y", T.FLOAT, ["batch", 64])], inits,
    )
    return _model(graph), {"x": rng.standard_normal((n, 10, d_in)).astype(np.float32)}


CLASSES = {
    "fixed-batch-cnn": fixed_batch_cnn,
    "scalar-and-state": scalar_and_state,
    "rnn-in-if": rnn_in_if,
    "paddle-constants": paddle_constants,
    "lstm": lambda: recurrent("LSTM"),
    "gru": lambda: recurrent("GRU"),
}
"""Every class of model, by name: ``CLASSES[name]() -> (model, calibration arrays)``."""
