"""``Transpose(perm) → flatten → MatMul/Gemm(W)``: the Transpose folded into the weight's rows.

tf2onnx converts a Keras ``Flatten`` after a convolution as ``Transpose(NCHW → NHWC)`` followed by
a ``Reshape`` to ``[batch, -1]`` whose target shape is computed at run time (``Shape → Gather →
Slice → Concat → Cast``). The Transpose costs a copy (or, quantized, a round trip) in front of the
dense layer. Flattening the untransposed tensor instead only reorders the flattened features, so
the same result comes from the dense weight with its rows permuted the same way; the Transpose
and the shape subgraph go, and the flatten becomes ``Flatten(axis=1)``.

The flatten is recognised by what it computes, not how its shape is written: a ``Flatten`` with
``axis=1``, or a ``Reshape`` whose output is known (from shape inference) to be
``[batch, product of the other dims]``, or whose target shape is a constant ``[0, -1]`` or
``[-1, product]``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, node
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.passes._layout import Perm, inverse, transpose_perm
from quantscope.graph.queries import attr_int, const_array, is_weight, node_label, sole_consumer


def _static_tail(shape: ir.Shape | None) -> list[int] | None:
    """The dims after the batch axis, when all of them are known integers."""
    if shape is None or len(shape) < 2:
        return None
    dims = [shape[i] for i in range(1, len(shape))]
    return [int(d) for d in dims] if all(isinstance(d, int) for d in dims) else None


def _flattens_batch(flat: ir.Node, rank: int, features: int) -> bool:
    """``flat`` turns its rank-``rank`` input into ``[batch, features]``."""
    if is_standard(flat, "Flatten"):
        return attr_int(flat, "axis", 1) in (1, 1 - rank)
    if not is_standard(flat, "Reshape") or len(flat.inputs) < 2:
        return False
    out = flat.outputs[0].shape
    if out is not None and len(out) == 2 and out[1] == features:
        return True  # element count is kept, so the first dim is the batch
    target = const_array(flat.inputs[1])
    if target is None or target.shape != (2,):
        return False
    first, second = (int(v) for v in target)
    zero_copies = attr_int(flat, "allowzero", 0) == 0
    return (first == 0 and zero_copies and second in (-1, features)) or (first == -1 and second == features)


def _dense(flat_out: ir.Value, features: int) -> tuple[ir.Node, np.ndarray, bool] | None:
    """The MatMul/Gemm reading ``flat_out`` as its data input with a constant weight of
    ``features`` rows: ``(node, weight, transposed)``, where ``transposed`` means [N, features]."""
    dense = sole_consumer(flat_out)
    if dense is None or len(dense.inputs) < 2 or dense.inputs[0] is not flat_out or dense.inputs[1] is flat_out:
        return None
    weight = dense.inputs[1]
    w = const_array(weight) if is_weight(weight) else None
    if w is None or w.ndim != 2:
        return None
    if is_standard(dense, "MatMul"):
        transposed = False
    elif is_standard(dense, "Gemm") and attr_int(dense, "transA", 0) == 0:
        transposed = attr_int(dense, "transB", 0) == 1
    else:
        return None
    rows = w.shape[1] if transposed else w.shape[0]
    return (dense, w, transposed) if rows == features else None


def permute_rows(w: np.ndarray, perm: Perm, dims: list[int]) -> np.ndarray:
    """``w`` [features, N] read by ``flatten(x)`` instead of ``flatten(transpose(x, perm))``.

    ``dims`` are ``x``'s dims after the batch axis; ``perm[0]`` is 0.
    """
    moved = [dims[perm[i] - 1] for i in range(1, len(perm))]  # the transposed tensor's dims
    inv = inverse(perm)
    axes = [inv[axis] - 1 for axis in range(1, len(perm))]
    return w.reshape(*moved, w.shape[-1]).transpose(*axes, len(moved)).reshape(w.shape)


class FoldTransposeFlattenPass(RewritePass):
    """Every ``Transpose`` (batch axis kept) whose only consumer flattens it for a dense layer
    with a constant weight → ``Flatten(axis=1)`` of the untransposed tensor, weight rows permuted."""

    summary = "folded {n} Transpose(s) before a flatten into the dense layer's weight"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        return [note for t in list(graph) if t.graph is graph and (note := self._fold(graph, names, t))]

    @staticmethod
    def _fold(graph: ir.Graph, names: NameAllocator, t: ir.Node) -> str | None:
        perm = transpose_perm(t)
        x = t.inputs[0] if perm is not None else None
        if perm is None or x is None or perm[0] != 0 or len(perm) < 3 or x.shape is None or len(x.shape) != len(perm):
            return None
        dims = _static_tail(x.shape)
        flat = sole_consumer(t.outputs[0])
        if dims is None or flat is None or flat.inputs[0] is not t.outputs[0]:
            return None
        features = math.prod(dims)
        found = _dense(flat.outputs[0], features) if _flattens_batch(flat, len(perm), features) else None
        if found is None:
            return None
        dense, w, transposed = found
        rows = permute_rows(w.T if transposed else w, perm, dims)
        weight = initializer(graph, names, f"{dense.inputs[1].name or node_label(dense)}.untransposed",
                             rows.T if transposed else rows)
        flat_out = flat.outputs[0]
        flatten = node(names, "Flatten", [x], base=node_label(flat), name=flat.name or None, attributes={"axis": 1},
                       dtypes=[flat_out.dtype], shapes=[flat_out.shape or ir.Shape([x.shape[0], features])])
        graph.insert_before(flat, flatten)
        ir.convenience.replace_all_uses_with(flat_out, flatten.outputs[0])
        dense.replace_input_with(1, weight)
        graph.remove([flat, t], safe=True)
        return f"{node_label(t)} (perm {list(perm)}) folded into {node_label(dense)}'s weight"


__all__ = ["FoldTransposeFlattenPass", "permute_rows"]
