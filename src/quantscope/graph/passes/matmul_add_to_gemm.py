"""``MatMul(A, W) → Add(b)`` with a 2-D ``A``, constant ``W`` [K, N] and ``b`` [N] → ``Gemm``.

ONNX Runtime fuses the pair into a float Gemm before it looks at Q/DQ pairs, so a quantized
MatMul followed by a bias would run in float; a Gemm is quantized whole (QGemm).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, node, take_over
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes._conv import is_standard
from quantscope.graph.queries import const_array, consumers, node_label


def _bias(add: ir.Node, out: ir.Value, n: int) -> np.ndarray | None:
    """The Add's other operand, when it is a float32 constant of ``n`` values ([n] or [1, n])."""
    b = const_array(add.inputs[1] if add.inputs[0] is out else add.inputs[0])
    if b is None or b.dtype != np.float32 or b.size != n or b.ndim > 2 or (b.ndim == 2 and b.shape[0] != 1):
        return None
    return b


class MatMulAddToGemmPass(RewritePass):
    """2-D ``MatMul`` + bias ``Add`` → one ``Gemm`` that keeps the MatMul's node name."""

    summary = "fused {n} MatMul + bias Add pair(s) into Gemm (quantized as one)"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        for mm in list(graph):
            if not is_standard(mm, "MatMul"):
                continue
            a, out = mm.inputs[0], mm.outputs[0]
            w = const_array(mm.inputs[1])
            users = consumers(out)
            if a is None or a.shape is None or len(a.shape) != 2 or w is None or w.ndim != 2:
                continue
            if len(users) != 1 or out.is_graph_output() or not is_standard(users[0], "Add"):
                continue
            add = users[0]
            b = _bias(add, out, w.shape[1])
            if b is None:
                continue
            bias = initializer(graph, names, f"{node_label(mm)}.gemm_bias", b.reshape(-1))
            result = add.outputs[0]
            gemm = node(
                names, "Gemm", [a, mm.inputs[1], bias], base=node_label(mm), name=mm.name,
                outputs=[f"{out.name}.gemm"], dtypes=[result.dtype], shapes=[result.shape],
            )
            graph.insert_before(mm, gemm)
            take_over(names, result, gemm.outputs[0], suffix="replaced")  # a graph output keeps its name
            graph.remove([add, mm], safe=True)
            notes.append(f"{node_label(mm)} + {node_label(add)} → Gemm")
        return notes
