"""Fold inference-mode BatchNormalization into the Conv that feeds it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator
from quantscope.graph.passes import _conv
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.queries import attr_float, const_array, node_label


class FoldBatchNormPass(RewritePass):
    """``BatchNorm(Conv(x, W, b))`` → ``Conv(x, W·f, (b - mean)·f + beta)`` with ``f = gamma / sqrt(var + eps)``.

    Only when the BatchNorm's parameters and the Conv's weight are constants, the Conv's output
    feeds nothing else and neither tensor is a graph output.
    """

    summary = "folded {n} BatchNormalization node(s) into the preceding Conv"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        for bn in list(graph):
            if not _conv.is_standard(bn, "BatchNormalization") or len(bn.outputs) != 1:
                continue
            conv = _conv.conv_feeding(bn.inputs[0], bn)
            params = [const_array(v) for v in bn.inputs[1:5]]
            wb = _conv.conv_weight_bias(conv) if conv is not None else None
            if conv is None or wb is None or len(params) != 4 or any(p is None for p in params):
                continue
            w, b = wb
            gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
            factor = gamma / np.sqrt(var + attr_float(bn, "epsilon", 1e-5))
            base = node_label(conv)
            _conv.fold_into_conv(
                graph, names, bn, conv, _conv.scale_output_channels(w, factor), (b - mean) * factor + beta,
                weight_name=f"{base}.weight_bnfold", bias_name=f"{base}.bias_bnfold",
            )
            notes.append(f"folded {node_label(bn)} into {base}")
        return notes
