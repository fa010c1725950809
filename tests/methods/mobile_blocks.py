"""Tiny MobileNetV3-style models: decomposed HardSwish, depthwise convs, squeeze-excitation gates.

Built the way Paddle2ONNX writes them (HardSwish as ``Add → Clip → Mul → Div``, SE biases as
``Add(conv, Reshape(bias))``), so static-int8's island reduction has something to do.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.affine = False

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, array: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, k: int = 1, group: int = 1, reshaped_bias: bool = False) -> str:
        w = self.rng.standard_normal((c_out, c_in // group, k, k)).astype(np.float32) * (2.0 / (c_in // group * k * k)) ** 0.5
        b = self.rng.standard_normal(c_out).astype(np.float32) * 0.1
        if reshaped_bias:  # Paddle2ONNX: Add(conv, Reshape(bias, [1, C, 1, 1]))
            y = self.op("Conv", [x, self.const(w, "w")], pads=[k // 2] * 4, group=group)
            bias = self.op("Reshape", [self.const(b, "b"), self.const(np.array([1, c_out, 1, 1], np.int64), "s")])
            return self.op("Add", [y, bias])
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], pads=[k // 2] * 4, group=group)

    def hardswish(self, x: str) -> str:
        shifted = self.op("Add", [x, self.const(np.array(3.0, np.float32))])
        clipped = self.op("Clip", [shifted, self.const(np.array(0.0, np.float32)), self.const(np.array(6.0, np.float32))])
        out = self.op("Div", [self.op("Mul", [x, clipped]), self.const(np.array(6.0, np.float32))])
        if self.affine:  # PP-LCNetV3's learnable affine block after the activation: a·y + b, scalars
            scale = self.const(np.array([self.rng.uniform(0.5, 2.0)], np.float32))
            out = self.op("Add", [self.op("Mul", [out, scale]), self.const(np.array([self.rng.uniform(-0.5, 0.5)], np.float32))])
        return out

    def se(self, x: str, c: int, gate: str) -> str:
        pooled = self.op("GlobalAveragePool", [x])
        squeezed = self.op("Relu", [self.conv(pooled, c, c // 4, reshaped_bias=True)])
        excited = self.conv(squeezed, c // 4, c, reshaped_bias=True)
        g = self.op("HardSigmoid", [excited], alpha=0.2, beta=0.5) if gate == "hardsigmoid" else self.op("Sigmoid", [excited])
        return self.op("Mul", [x, g])


def mobilenet_v3_block(
    seed: int = 0, *, blocks: int = 2, channels: int = 16, size: int = 32, gate: str = "hardsigmoid",
    activation: str = "relu", affine: bool = False,
) -> onnx.ModelProto:
    """``x [N, 3, size, size] → logits [N, 10]``: a HardSwish stem, ``blocks`` inverted residual blocks
    (expand 1x1 + HardSwish, depthwise 3x3 + Relu/LeakyRelu, SE, project 1x1, residual Add), a head.
    With ``affine`` every HardSwish is followed by ``Mul(a) → Add(b)`` by scalars (PP-LCNetV3)."""
    b = _Builder(seed)
    b.affine = affine
    x = b.hardswish(b.conv("x", 3, channels, k=3))
    for _ in range(blocks):
        expanded = b.hardswish(b.conv(x, channels, channels * 4))
        dw = b.conv(expanded, channels * 4, channels * 4, k=3, group=channels * 4)
        dw = b.op("LeakyRelu", [dw], alpha=0.1) if activation == "leakyrelu" else b.op("Relu", [dw])
        projected = b.conv(b.se(dw, channels * 4, gate), channels * 4, channels)
        x = b.op("Add", [x, projected])
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    w = b.rng.standard_normal((channels, 10)).astype(np.float32) * 0.3
    logits = b.op("Gemm", [pooled, b.const(w, "fc"), b.const(np.zeros(10, np.float32), "fcb")])
    graph = helper.make_graph(
        b.nodes, "mobilenet_v3_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["N", 10])], b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def images(n: int, size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
