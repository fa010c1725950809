"""Which tensors can carry sentinel values (``finfo(float32).min``, ``-inf``) from a constant.

Attention masks are commonly built as ``(1 - mask) * finfo(float32).min`` or from a constant
``-inf`` causal triangle. A tensor that can hold such a value must never be quantized with a
range taken at run time (``DynamicQuantizeLinear``): its scale becomes ~1e36 and every other
value rounds to zero. Without calibration data we cannot see ranges, so this follows the
graph instead: sentinels flow from the constants that hold them through every op except the
ones whose output is bounded or not a float value (Softmax, Sigmoid, comparisons, Shape, ...).
The analysis is conservative: a tensor is "tainted" when it *may* carry a sentinel.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.queries import const_array
from quantscope.model_stream import release_pages
from quantscope.numerics.affine import abs_max
from quantscope.numerics.chunks import all_finite

HUGE = 1e30  # |x| above this is a sentinel, not a signal

# ops whose outputs cannot carry a huge float taken from their inputs
BOUNDING_OPS = frozenset(
    {
        "Softmax", "Sigmoid", "Tanh", "HardSigmoid", "Erf", "Sin", "Cos",
        "Shape", "Size", "NonZero", "ArgMax", "ArgMin",
        "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor",
        "IsInf", "IsNaN",
    }
)


FLOAT_TYPES = frozenset(
    {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}
)


def holds_sentinel(array: np.ndarray) -> bool:
    """True for a float array with a non-finite value or a magnitude above :data:`HUGE`."""
    if array.dtype.kind != "f" or array.size == 0:
        return False
    a = array.astype(np.float32, copy=False)
    return bool(not all_finite(a) or float(abs_max(a, None)) > HUGE)  # a chunk at a time


def sentinel_tensors(graph: ir.Graph) -> dict[str, str]:
    """Names of the tensors of ``graph`` that may carry a sentinel → the constant it comes from.

    ``graph`` must be topologically sorted (as :func:`quantscope.graph.prepare.prepare` leaves it).
    """
    tainted: dict[str, str] = {}
    checked: dict[str, str | None] = {}

    def source(value: ir.Value | None) -> str | None:
        if value is None or not value.name:
            return None
        if value.name in tainted:
            return tainted[value.name]
        if value.name not in checked:
            array = const_array(value)
            checked[value.name] = value.name if array is not None and holds_sentinel(array) else None
            release_pages(value.const_value)
        return checked[value.name]

    for node in graph:
        if node.op_type in BOUNDING_OPS and node.domain in ("", "ai.onnx"):
            continue
        for value in node.inputs:
            origin = source(value)
            if origin is not None:
                for out in node.outputs:
                    if out.name and (out.dtype is None or out.dtype in FLOAT_TYPES):
                        tainted[out.name] = origin
                break
    return tainted
