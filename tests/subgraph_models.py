"""Tiny models with If/Loop/Scan bodies and recurrent layers, built with onnx.helper (seeded)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
D = 64  # weights of D*D elements pass every method's min_size


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _info(name: str, shape: list[int | str], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _rnn_node(op: str, rng: np.random.Generator, prefix: str, x: str, h0: str, hidden: int, inputs: int) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    w = numpy_helper.from_array(_w(rng, 1, gates * hidden, inputs), f"{prefix}_W")
    r = numpy_helper.from_array(_w(rng, 1, gates * hidden, hidden), f"{prefix}_R")
    b = numpy_helper.from_array((0.1 * rng.standard_normal((1, 2 * gates * hidden))).astype(np.float32), f"{prefix}_B")
    attrs = {"hidden_size": hidden}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(
        op, [x, w.name, r.name, b.name, "", h0], [f"{prefix}_Y", f"{prefix}_Yh"], name=f"{prefix}_{op.lower()}", **attrs,
    )
    return node, [w, r, b]


def recurrent(op: str = "LSTM", seed: int = 0, seq: int = 8, inputs: int = 32, hidden: int = 64) -> onnx.ModelProto:
    """Linear(inputs) → LSTM/GRU/RNN(hidden) → last step → Linear(10), from ``x [batch, seq, inputs]``."""
    rng = np.random.default_rng(seed)
    node, inits = _rnn_node(op, rng, "rnn", "h_in", "", hidden, inputs)
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["proj"], name="proj_in"),
        helper.make_node("Transpose", ["proj"], ["h_in"], name="time_major", perm=[1, 0, 2]),
        node,
        helper.make_node("Squeeze", ["rnn_Yh", "axes0"], ["last"], name="squeeze"),
        helper.make_node("MatMul", ["last", "w_out"], ["y"], name="proj_out"),
    ]
    inits += [
        numpy_helper.from_array(_w(rng, inputs, inputs), "w_in"),
        numpy_helper.from_array(_w(rng, hidden, 10), "w_out"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
    ]
    graph = helper.make_graph(nodes, op.lower(), [_info("x", ["batch", seq, inputs])], [_info("y", ["batch", 10])], inits)
    return _model(graph)


def rnn_in_if(
    op: str = "GRU", seed: int = 0, seq: int = 8, inputs: int = 32, hidden: int = 64, *, stateful: bool = True
) -> onnx.ModelProto:
    """A recurrent network, one per sample rate, chosen by an ``If`` on a scalar input.

    Inputs: ``x [batch, seq, inputs]``, ``rate int64[]`` and (``stateful``) ``state [1, batch,
    hidden]``; outputs ``y [batch, 10]`` and the new state. Each branch: MatMul → GRU(state) →
    MatMul. Without ``stateful`` and with ``rate`` a constant (``rate_input=False``) the model
    takes ``x`` only, which the current Dataset can batch.
    """
    return _rnn_in_if(op, seed, seq, inputs, hidden, stateful=stateful, rate_input=stateful)


def _rnn_in_if(op: str, seed: int, seq: int, inputs: int, hidden: int, *, stateful: bool, rate_input: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def branch(name: str) -> onnx.GraphProto:
        node, inits = _rnn_node(op, rng, name, f"{name}_in", "state" if stateful else "", hidden, inputs)
        nodes = [
            helper.make_node("MatMul", ["x", f"{name}_w_in"], [f"{name}_proj"], name="proj_in"),
            helper.make_node("Transpose", [f"{name}_proj"], [f"{name}_in"], name="time_major", perm=[1, 0, 2]),
            node,
            helper.make_node("Squeeze", [f"{name}_Yh", "axes0"], [f"{name}_last"], name="squeeze"),
            helper.make_node("MatMul", [f"{name}_last", f"{name}_w_out"], [f"{name}_y"], name="proj_out"),
        ]
        inits += [
            numpy_helper.from_array(_w(rng, inputs, inputs), f"{name}_w_in"),
            numpy_helper.from_array(_w(rng, hidden, 10), f"{name}_w_out"),
        ]
        return helper.make_graph(
            nodes, name, [], [_info(f"{name}_y", ["batch", 10]), _info(f"{name}_Yh", [1, "batch", hidden])], inits,
        )

    nodes = [
        helper.make_node("Equal", ["rate", "rate16k"], ["is16k"], name="rate_check"),
        helper.make_node("If", ["is16k"], ["y", "state_out"], name="per_rate",
                         then_branch=branch("r16k"), else_branch=branch("r8k")),
    ]
    inputs_info = [_info("x", ["batch", seq, inputs])]
    inits = [numpy_helper.from_array(np.array(16000, np.int64), "rate16k"), numpy_helper.from_array(np.array([0], np.int64), "axes0")]
    if stateful:
        inputs_info.append(_info("state", [1, "batch", hidden]))
    if rate_input:
        inputs_info.append(_info("rate", [], TensorProto.INT64))
    else:
        inits.append(numpy_helper.from_array(np.array(8000, np.int64), "rate"))
    graph = helper.make_graph(
        nodes, "rnn_in_if", inputs_info, [_info("y", ["batch", 10]), _info("state_out", [1, "batch", hidden])], inits,
    )
    return _model(graph)


def loop_matmul(seed: int = 0, steps: int = 3, d: int = D) -> onnx.ModelProto:
    """``h ← Relu(h @ W + b)`` repeated ``steps`` times by a ``Loop``, then ``y = h @ W_out``."""
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("MatMul", ["h_in", "w_loop"], ["mm"], name="step_matmul"),
            helper.make_node("Add", ["mm", "b_loop"], ["pre"], name="step_bias"),
            helper.make_node("Relu", ["pre"], ["h_next"], name="step_relu"),
        ],
        "body",
        [_info("i", [], TensorProto.INT64), _info("cond_in", [], TensorProto.BOOL), _info("h_in", ["batch", d])],
        [_info("cond_out", [], TensorProto.BOOL), _info("h_next", ["batch", d])],
    )
    nodes = [
        helper.make_node("Loop", ["steps", "", "x"], ["h"], name="repeat", body=body),
        helper.make_node("MatMul", ["h", "w_out"], ["y"], name="head"),
    ]
    inits = [
        numpy_helper.from_array(np.array(steps, np.int64), "steps"),
        numpy_helper.from_array(_w(rng, d, d), "w_loop"),
        numpy_helper.from_array((0.1 * rng.standard_normal(d)).astype(np.float32), "b_loop"),
        numpy_helper.from_array(_w(rng, d, 10), "w_out"),
    ]
    graph = helper.make_graph(nodes, "loop", [_info("x", ["batch", d])], [_info("y", ["batch", 10])], inits)
    return _model(graph)


def scan_matmul(seed: int = 0, seq: int = 6, d: int = D) -> onnx.ModelProto:
    """An Elman RNN written as a ``Scan``: ``h ← Tanh(x_t @ W + h @ R)`` over axis 1 of ``x [batch, seq, d]``."""
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_t", "w_x"], ["xw"], name="input_matmul"),
            helper.make_node("MatMul", ["h_prev", "w_h"], ["hw"], name="state_matmul"),
            helper.make_node("Add", ["xw", "hw"], ["pre"], name="mix"),
            helper.make_node("Tanh", ["pre"], ["h_t"], name="act"),
            helper.make_node("Identity", ["h_t"], ["h_out"], name="emit"),
        ],
        "body",
        [_info("h_prev", ["batch", d]), _info("x_t", ["batch", d])],
        [_info("h_t", ["batch", d]), _info("h_out", ["batch", d])],
    )
    nodes = [
        helper.make_node("Scan", ["h0", "x"], ["h_last", "hs"], name="scan", body=body, num_scan_inputs=1,
                         scan_input_axes=[1], scan_output_axes=[1]),
        helper.make_node("MatMul", ["h_last", "w_out"], ["y"], name="head"),
    ]
    inits = [
        numpy_helper.from_array(_w(rng, d, d), "w_x"),
        numpy_helper.from_array(_w(rng, d, d), "w_h"),
        numpy_helper.from_array(_w(rng, d, 10), "w_out"),
    ]
    graph = helper.make_graph(
        nodes, "scan", [_info("h0", ["batch", d]), _info("x", ["batch", seq, d])], [_info("y", ["batch", 10])], inits,
    )
    return _model(graph)
