"""Tiny ONNX models built in code, with seeded weights, for structure and numerics tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="quantscope-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _w(rng: np.random.Generator, *shape: int, scale: float | None = None) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else np.sqrt(2.0 / fan_in)
    return (rng.standard_normal(shape) * s).astype(np.float32)


def mlp(seed: int = 0, d_in: int = 64, hidden: int = 128, d_out: int = 10, opset: int = OPSET) -> onnx.ModelProto:
    """MatMul+Add+Relu, Gemm+Relu, Gemm: the shapes a framework exports for an MLP."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="fc1_bias"),
        helper.make_node("Relu", ["h1b"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [
        _init("w1", _w(rng, d_in, hidden, scale=np.sqrt(2 / d_in))),
        _init("b1", _w(rng, hidden, scale=0.1)),
        _init("w2", _w(rng, hidden, hidden)),
        _init("b2", _w(rng, hidden, scale=0.1)),
        _init("w3", _w(rng, d_out, hidden)),
        _init("b3", _w(rng, d_out, scale=0.1)),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d_out])],
        inits,
        opset,
    )


def conv_bn_relu(seed: int = 0, channels: int = 16, size: int = 16, opset: int = OPSET) -> onnx.ModelProto:
    """Conv → BatchNorm → Relu → MaxPool → Conv → Relu → GlobalAveragePool → Flatten → Gemm."""
    rng = np.random.default_rng(seed)
    c = channels
    nodes = [
        helper.make_node("Conv", ["x", "cw1", "cb1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g1", "be1", "m1", "v1"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "cw2", "cb2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("cw1", _w(rng, c, 3, 3, 3)),
        _init("cb1", _w(rng, c, scale=0.1)),
        _init("g1", (1.0 + 0.2 * rng.standard_normal(c)).astype(np.float32)),
        _init("be1", _w(rng, c, scale=0.1)),
        _init("m1", _w(rng, c, scale=0.2)),
        _init("v1", (0.5 + rng.random(c)).astype(np.float32)),
        _init("cw2", _w(rng, 2 * c, c, 3, 3)),
        _init("cb2", _w(rng, 2 * c, scale=0.1)),
        _init("fw", _w(rng, 10, 2 * c)),
        _init("fb", _w(rng, 10, scale=0.1)),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
        opset,
    )


def residual_block(seed: int = 0, channels: int = 16, size: int = 16) -> onnx.ModelProto:
    """Conv-Relu-Conv plus identity, Add, Relu: the residual connection of a ResNet."""
    rng = np.random.default_rng(seed)
    c = channels
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["s"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["sr"], name="stem_relu"),
        helper.make_node("Conv", ["sr", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "sr"], ["a"], name="residual_add"),
        helper.make_node("Relu", ["a"], ["ar"], name="relu_out"),
        helper.make_node("Conv", ["ar", "w3", "b3"], ["y"], name="head"),
    ]
    inits = [
        _init("w0", _w(rng, c, 3, 3, 3)),
        _init("b0", _w(rng, c, scale=0.1)),
        _init("w1", _w(rng, c, c, 3, 3)),
        _init("b1", _w(rng, c, scale=0.1)),
        _init("w2", _w(rng, c, c, 3, 3, scale=0.05)),
        _init("b2", _w(rng, c, scale=0.1)),
        _init("w3", _w(rng, 4, c, 1, 1)),
        _init("b3", _w(rng, 4, scale=0.1)),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, size, size])],
        inits,
    )


def attention_block(seed: int = 0, seq: int = 16, d: int = 32, heads: int = 2) -> onnx.ModelProto:
    """One self-attention layer with a Hugging-Face-style additive mask built from finfo.min.

    Inputs: ``x`` [batch, seq, d] and ``mask`` [batch, seq] (1 = token, 0 = padding).
    """
    rng = np.random.default_rng(seed)
    dh = d // heads
    fmin = np.finfo(np.float32).min
    nodes = [
        # additive mask: (1 - mask) * finfo.min, broadcast to [batch, 1, 1, seq]
        helper.make_node("Sub", ["one", "mask"], ["inv"], name="mask_invert"),
        helper.make_node("Mul", ["inv", "fmin"], ["madd"], name="mask_scale"),
        helper.make_node("Unsqueeze", ["madd", "ax12"], ["madd4"], name="mask_unsqueeze"),
        helper.make_node("MatMul", ["x", "wq"], ["q0"], name="q_proj"),
        helper.make_node("Add", ["q0", "bq"], ["q1"], name="q_bias"),
        helper.make_node("MatMul", ["x", "wk"], ["k0"], name="k_proj"),
        helper.make_node("Add", ["k0", "bk"], ["k1"], name="k_bias"),
        helper.make_node("MatMul", ["x", "wv"], ["v0"], name="v_proj"),
        helper.make_node("Add", ["v0", "bv"], ["v1"], name="v_bias"),
        helper.make_node("Reshape", ["q1", "heads_shape"], ["q2"], name="q_reshape"),
        helper.make_node("Transpose", ["q2"], ["q"], name="q_transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["k1", "heads_shape"], ["k2"], name="k_reshape"),
        helper.make_node("Transpose", ["k2"], ["kt"], name="k_transpose", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["v1", "heads_shape"], ["v2"], name="v_reshape"),
        helper.make_node("Transpose", ["v2"], ["v"], name="v_transpose", perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kt"], ["s0"], name="scores"),
        helper.make_node("Mul", ["s0", "inv_sqrt_dh"], ["s1"], name="scores_scale"),
        helper.make_node("Add", ["s1", "madd4"], ["s2"], name="scores_mask"),
        helper.make_node("Softmax", ["s2"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["ctx0"], name="context"),
        helper.make_node("Transpose", ["ctx0"], ["ctx1"], name="ctx_transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx1", "model_shape"], ["ctx"], name="ctx_reshape"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o0"], name="out_proj"),
        helper.make_node("Add", ["o0", "bo"], ["o1"], name="out_bias"),
        helper.make_node("Add", ["o1", "x"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "ln_g", "ln_b"], ["y"], name="layernorm", axis=-1),
    ]
    inits = [
        _init("one", np.array(1.0, np.float32)),
        _init("fmin", np.array(fmin, np.float32)),
        _init("ax12", np.array([1, 2], np.int64)),
        _init("heads_shape", np.array([0, 0, heads, dh], np.int64)),
        _init("model_shape", np.array([0, 0, d], np.int64)),
        _init("inv_sqrt_dh", np.array(1.0 / np.sqrt(dh), np.float32)),
        _init("ln_g", (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)),
        _init("ln_b", _w(rng, d, scale=0.1)),
    ]
    for name in ("q", "k", "v", "o"):
        inits.append(_init(f"w{name}", _w(rng, d, d, scale=1.0 / np.sqrt(d))))
        inits.append(_init(f"b{name}", _w(rng, d, scale=0.05)))
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, d]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", seq]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", seq, d])],
        inits,
    )


def no_quantizable_ops() -> onnx.ModelProto:
    """Only element-wise ops static-int8 leaves in float."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node("Mul", ["s", "x"], ["y"], name="swish"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [],
    )


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def embedding_mlp(seed: int = 0, vocab: int = 500, d: int = 32) -> onnx.ModelProto:
    """Token ids → embedding table (Gather) → MatMul: the entry of every text model."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("MatMul", ["e", "w"], ["y"], name="proj"),
    ]
    inits = [_init("table", _w(rng, vocab, d, scale=0.5)), _init("w", _w(rng, d, d, scale=0.2))]
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, d])],
        inits,
    )


def wide_mlp(seed: int = 0, d_in: int = 256, hidden: int = 512, d_out: int = 10) -> onnx.ModelProto:
    """A weight-dominated MLP (~400 k float weights): MatMul+Add+Relu, Gemm+Relu, Gemm."""
    return mlp(seed=seed, d_in=d_in, hidden=hidden, d_out=d_out)


def shared_weight_mlp(seed: int = 0, d: int = 64) -> onnx.ModelProto:
    """Two MatMuls reading the same weight initializer (tied weights), then a Gemm."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h1"], name="tied1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MatMul", ["a1", "w"], ["h2"], name="tied2"),
        helper.make_node("Gemm", ["h2", "w_out", "b_out"], ["y"], name="head", transB=1),
    ]
    inits = [
        _init("w", _w(rng, d, d)),
        _init("w_out", _w(rng, 10, d, scale=np.sqrt(2 / d))),
        _init("b_out", _w(rng, 10, scale=0.1)),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
