"""Writing dynamic-int8: DynamicQuantizeLinear → MatMulInteger/ConvInteger → Cast → Mul, and int8 Gather tables."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph import build
from quantscope.graph.queries import attr_float, attr_int, const_array, consumers, node_label
from quantscope.plan import WeightQuant

MS_DOMAIN = "com.microsoft"
CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")

QuantizedWeight = tuple[np.ndarray, np.ndarray]
"""An int8 weight (in the node's layout) and its float32 scale (scalar or per channel)."""


def weight_key(wq: WeightQuant) -> tuple[str, int | None, int]:
    return (wq.tensor, wq.axis, wq.bits)


def integer_lstm(node: ir.Node) -> bool:
    """Can ``node`` (an LSTM) become ``com.microsoft::DynamicQuantizeLSTM`` (it has no ``layout``)?"""
    return attr_int(node, "layout", 0) == 0


class Writer:
    """Writes the integer subgraphs into one model, storing each weight once.

    Weights are initializers of the main graph (visible inside If/Loop/Scan bodies); the new
    nodes go where the node they replace was."""

    def __init__(self, graph: ir.Graph, weights: dict[tuple[str, int | None, int], QuantizedWeight]) -> None:
        self.graph = graph
        self.names = build.NameAllocator(graph)
        self.weights = weights
        self.cache: dict[tuple[object, ...], tuple[ir.Value, ir.Value]] = {}
        self._zero_point: ir.Value | None = None
        self.lstm_inputs: dict[int, dict[int, tuple[ir.Value, ir.Value, ir.Value]]] = {}
        self.uses_ms_domain = False

    def _w_zero_point(self) -> ir.Value:
        if self._zero_point is None:
            self._zero_point = build.initializer(self.graph, self.names, "weight_zero_point", np.zeros((), np.int8))
        return self._zero_point

    def _weight(self, node: ir.Node, wq: WeightQuant, *, transpose: bool, scale_shape: tuple[int, ...]) -> tuple[ir.Value, ir.Value]:
        """The int8 weight (laid out for the integer op) and its float scale, stored once per tensor."""
        key = (wq.tensor, transpose, wq.axis, wq.bits, scale_shape)
        if key in self.cache:
            return self.cache[key]
        q, scale = self.weights[weight_key(wq)]
        if transpose:
            q = np.ascontiguousarray(q.T)
        base = wq.tensor or "weight"
        q_val = build.initializer(self.graph, self.names, f"{base}_quantized", q)
        if scale.ndim:
            scale = scale.reshape(scale_shape)
        s_val = build.initializer(self.graph, self.names, f"{base}_scale", scale)
        self.cache[key] = (q_val, s_val)
        return q_val, s_val

    def _quantize_input(self, x: ir.Value, base: str) -> ir.Node:
        return build.node(
            self.names, "DynamicQuantizeLinear", [x], base=base, num_outputs=3,
            dtypes=[ir.DataType.UINT8, ir.DataType.FLOAT, ir.DataType.UINT8],
            shapes=[x.shape, ir.Shape([]), ir.Shape([])],
        )

    def _rescale(self, integer: ir.Value, dql: ir.Node, w_scale: ir.Value, out: ir.Value, base: str) -> list[ir.Node]:
        """Cast the int32 product to float and multiply by ``x_scale * w_scale``."""
        to_float = build.node(
            self.names, "Cast", [integer], base=base, attributes=[ir.AttrInt64("to", int(ir.DataType.FLOAT))],
            dtypes=[ir.DataType.FLOAT], shapes=[out.shape],
        )
        scale = build.node(
            self.names, "Mul", [dql.outputs[1], w_scale], base=f"{base}_scale", dtypes=[ir.DataType.FLOAT],
            shapes=[w_scale.shape],
        )
        mul = build.node(
            self.names, "Mul", [to_float.outputs[0], scale.outputs[0]], base=base, dtypes=[ir.DataType.FLOAT],
            shapes=[out.shape],
        )
        return [to_float, scale, mul]

    def _replace(self, node: ir.Node, new: list[ir.Node], result: ir.Value) -> None:
        """Put ``new`` in ``node``'s place, in the graph (main or a body) that holds it."""
        graph = node.graph
        assert graph is not None
        graph.insert_before(node, new)
        build.take_over(self.names, node.outputs[0], result, suffix="unconverted")
        graph.remove(node, safe=True)

    def matmul(self, node: ir.Node, wq: WeightQuant, fused_adds: set[str]) -> None:
        base = node_label(node)
        out = node.outputs[0]
        x = node.inputs[0]
        assert x is not None
        transpose = node.op_type == "Gemm" and attr_int(node, "transB", 0) == 1
        w_q, w_scale = self._weight(node, wq, transpose=transpose, scale_shape=(-1,))
        dql = self._quantize_input(x, base)
        mm = build.node(
            self.names, "MatMulInteger", [dql.outputs[0], w_q, dql.outputs[2], self._w_zero_point()], base=base,
            dtypes=[ir.DataType.INT32], shapes=[out.shape],
        )
        new = [dql, mm, *self._rescale(mm.outputs[0], dql, w_scale, out, base)]
        result = new[-1].outputs[0]
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
            c = node.inputs[2]
            beta = attr_float(node, "beta", 1.0)
            c_const = const_array(c)
            if beta != 1.0 and c_const is not None:
                c = build.initializer(self.graph, self.names, f"{c.name or base}_beta", (c_const * np.float32(beta)).astype(np.float32))
            add = build.node(self.names, "Add", [result, c], base=f"{base}_bias", dtypes=[ir.DataType.FLOAT], shapes=[out.shape])
            new.append(add)
            result = add.outputs[0]
        self._replace(node, new, result)
        if node.op_type == "MatMul":
            users = consumers(result)
            if len(users) == 1 and node_label(users[0]) in fused_adds and users[0].inputs[1] is result:
                add = users[0]  # bias first: swap so ONNX Runtime's fusion sees it second
                bias = add.inputs[0]
                add.replace_input_with(0, result)
                add.replace_input_with(1, bias)

    def _weight_layout(self, node: ir.Node, wq: WeightQuant) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """The int8 rows ``[directions*gates*hidden, K]`` of an LSTM/GRU/RNN weight, their scale, and its 3-D shape."""
        q, scale = self.weights[weight_key(wq)]
        w = node.inputs[wq.input_index]
        assert w is not None and w.shape is not None
        return q, scale, tuple(int(d) for d in w.shape)

    def lstm(self, node: ir.Node, wq: WeightQuant) -> None:
        """Make ``node`` (once its W and R are both stored) a ``com.microsoft::DynamicQuantizeLSTM``.

        The kernel takes W and R transposed (``[directions, K, 4*hidden]``), with one scale (and
        int8 zero point 0) per direction, or per direction and gate row.
        """
        stored = self.lstm_inputs.setdefault(id(node), {})
        q, scale, (dirs, rows, k) = self._weight_layout(node, wq)
        base = wq.tensor or "weight"
        q3 = np.ascontiguousarray(q.reshape(dirs, rows, k).transpose(0, 2, 1))
        scale = scale.reshape(dirs, rows) if scale.ndim else np.full((dirs,), scale, np.float32)
        stored[wq.input_index] = (
            build.initializer(self.graph, self.names, f"{base}_quantized_t", q3),
            build.initializer(self.graph, self.names, f"{base}_scale", scale.astype(np.float32)),
            build.initializer(self.graph, self.names, f"{base}_zero_point", np.zeros(scale.shape, np.int8)),
        )
        if len(stored) < 2:
            return
        inputs = [*node.inputs[:8]] + [None] * (8 - len(node.inputs))
        inputs[1], inputs[2] = stored[1][0], stored[2][0]
        inputs += [stored[1][1], stored[1][2], stored[2][1], stored[2][2]]
        attrs = [a for name, a in node.attributes.items() if name != "layout"]
        new = ir.Node(
            MS_DOMAIN, "DynamicQuantizeLSTM", inputs, attrs, name=self.names(f"{node_label(node)}_quant"),
            num_outputs=len(node.outputs),
        )
        graph = node.graph
        assert graph is not None
        for old, out in zip(node.outputs, new.outputs, strict=True):
            out.type, out.shape = old.type, old.shape
        ir.convenience.replace_nodes_and_values(graph, node, [node], [new], list(node.outputs), list(new.outputs))
        self.uses_ms_domain = True

    def recurrent_weight(self, node: ir.Node, wq: WeightQuant) -> None:
        """Feed a GRU/RNN (or batch-first LSTM) weight from int8 rows: ``DequantizeLinear → Reshape``."""
        q, scale, shape = self._weight_layout(node, wq)
        base = wq.tensor or "weight"
        attrs = [ir.AttrInt64("axis", 0)] if scale.ndim else []
        inputs = [
            build.initializer(self.graph, self.names, f"{base}_quantized", q),
            build.initializer(self.graph, self.names, f"{base}_scale", scale.astype(np.float32)),
            build.initializer(self.graph, self.names, f"{base}_zero_point", np.zeros(scale.shape, np.int8)),
        ]
        dq = build.node(self.names, "DequantizeLinear", inputs, base=base, attributes=attrs, dtypes=[ir.DataType.FLOAT])
        target = build.initializer(self.graph, self.names, f"{base}_shape", np.asarray(shape, np.int64))
        reshape = build.node(
            self.names, "Reshape", [dq.outputs[0], target], base=base, dtypes=[ir.DataType.FLOAT], shapes=[shape]
        )
        graph = node.graph
        assert graph is not None
        graph.insert_before(node, [dq, reshape])
        node.replace_input_with(wq.input_index, reshape.outputs[0])

    def gather(self, node: ir.Node, wq: WeightQuant) -> None:
        """Gather int8 rows (and their scales), then ``Cast → Mul``: the float table is never rebuilt."""
        base = node_label(node)
        out = node.outputs[0]
        ids = node.inputs[1]
        q_val, s_val = self._weight(node, wq, transpose=False, scale_shape=(-1, 1))
        axis0 = [ir.AttrInt64("axis", 0)]
        rows = build.node(
            self.names, "Gather", [q_val, ids], base=base, attributes=axis0, dtypes=[ir.DataType.INT8],
            shapes=[out.shape],
        )
        to_float = build.node(
            self.names, "Cast", [rows.outputs[0]], base=base, attributes=[ir.AttrInt64("to", int(ir.DataType.FLOAT))],
            dtypes=[ir.DataType.FLOAT], shapes=[out.shape],
        )
        new = [rows, to_float]
        scale = s_val
        if wq.axis is not None:
            row_scales = build.node(
                self.names, "Gather", [s_val, ids], base=f"{base}_scale", attributes=axis0,
                dtypes=[ir.DataType.FLOAT],
            )
            new.append(row_scales)
            scale = row_scales.outputs[0]
        mul = build.node(
            self.names, "Mul", [to_float.outputs[0], scale], base=base, dtypes=[ir.DataType.FLOAT], shapes=[out.shape]
        )
        new.append(mul)
        self._replace(node, new, mul.outputs[0])

    def conv(self, node: ir.Node, wq: WeightQuant) -> None:
        base = node_label(node)
        out = node.outputs[0]
        x = node.inputs[0]
        assert x is not None
        w = const_array(node.inputs[1])
        assert w is not None
        spatial = (1,) * (w.ndim - 2)
        w_q, w_scale = self._weight(node, wq, transpose=False, scale_shape=(-1, *spatial))
        dql = self._quantize_input(x, base)
        attrs = [a for name, a in node.attributes.items() if name in CONV_ATTRIBUTES]
        conv = build.node(
            self.names, "ConvInteger", [dql.outputs[0], w_q, dql.outputs[2], self._w_zero_point()], base=base,
            attributes=attrs, dtypes=[ir.DataType.INT32], shapes=[out.shape],
        )
        new = [dql, conv, *self._rescale(conv.outputs[0], dql, w_scale, out, base)]
        result = new[-1].outputs[0]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            b = const_array(node.inputs[2])
            assert b is not None  # the plan leaves Convs with a non-constant bias in float
            b_val = build.initializer(
                self.graph, self.names, f"{node.inputs[2].name or base}_channels", b.reshape(-1, *spatial).astype(np.float32)
            )
            add = build.node(self.names, "Add", [result, b_val], base=f"{base}_bias", dtypes=[ir.DataType.FLOAT], shapes=[out.shape])
            new.append(add)
            result = add.outputs[0]
        self._replace(node, new, result)

