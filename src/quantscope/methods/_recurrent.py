"""LSTM, GRU and RNN weights: which a method can store as integers, and the layouts it needs.

ONNX stores ``W [directions, gates*hidden, input]`` and ``R [directions, gates*hidden, hidden]``;
a row is one output channel of one gate. Only LSTM has an integer kernel in ONNX Runtime
(``com.microsoft::DynamicQuantizeLSTM``, written by dynamic-int8); every other method stores
the weights as integers (or codes) behind DequantizeLinear (or the codebook expansion), which
ONNX Runtime folds into float weights once, when the session is created: the file shrinks,
the arithmetic stays float.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.queries import const_array
from quantscope.numerics.chunks import all_finite

RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
WEIGHT_INPUTS = {1: "W", 2: "R"}


def is_recurrent(node: ir.Node) -> bool:
    return node.op_type in RECURRENT_OPS and node.domain in ("", "ai.onnx")


def float_arithmetic(op_type: str) -> str:
    """The sentence a decision on a recurrent node ends with: what the weights buy, and what not."""
    return (
        f"the {op_type} arithmetic stays float: ONNX Runtime expands the weights once when the session "
        "is created, so the file shrinks, not the run-time memory or compute"
    )


def recurrent_weights(node: ir.Node) -> tuple[dict[int, np.ndarray], str | None]:
    """The W and R arrays of a recurrent node by input index, or the reason they stay float."""
    found: dict[int, np.ndarray] = {}
    for index, name in WEIGHT_INPUTS.items():
        value = node.inputs[index] if len(node.inputs) > index else None
        array = const_array(value)
        if value is None or array is None or value.is_graph_input():
            return {}, f"{node.op_type} weight {name} is not a constant"
        if array.ndim != 3 or array.dtype != np.float32:
            return {}, f"{node.op_type} weight {name} is not a 3-D float32 tensor"
        if not all_finite(array):
            return {}, f"{node.op_type} weight {name} holds NaN or infinity; kept float"
        found[index] = array
    return found, None


def rows(w: np.ndarray) -> np.ndarray:
    """``[directions, gates*hidden, K]`` as ``[directions*gates*hidden, K]``: one row per output channel."""
    return w.reshape(-1, w.shape[-1])
