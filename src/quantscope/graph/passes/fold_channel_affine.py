"""Fold per-channel ``Mul``/``Add`` by constants after a Conv into its weight and bias.

Exporters write inference BatchNorm this way (tf2onnx: ``Conv → Mul → Add``); left alone the
chain stays float between quantized ops. ``(conv(x, W) + b)·s + t = conv(x, W·s) + (b·s + t)``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator
from quantscope.graph.passes import _conv
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.queries import const_array, node_label


def channel_vector(c: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``c`` as one value per output channel of a rank-``rank`` NCHW tensor, or None."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


class FoldChannelAffinePass(RewritePass):
    """Per-channel ``Mul``/``Add`` by a constant, right after a Conv, folded into the Conv.

    Repeats until nothing is left to fold, so a ``Conv → Mul → Add`` chain becomes one Conv.
    """

    summary = "folded {n} per-channel Mul/Add node(s) into the preceding Conv"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        notes: list[str] = []
        changed = True
        while changed:
            changed = False
            for node in list(graph):
                changed = self._fold_one(graph, names, node, notes) or changed
        return notes

    def _fold_one(self, graph: ir.Graph, names: NameAllocator, node: ir.Node, notes: list[str]) -> bool:
        if node.graph is not graph or not _conv.is_standard(node, "Mul", "Add") or len(node.inputs) != 2:
            return False
        for side in (0, 1):
            conv = _conv.conv_feeding(node.inputs[side], node)
            wb = _conv.conv_weight_bias(conv) if conv is not None else None
            c = const_array(node.inputs[1 - side])
            if conv is None or wb is None or c is None or c.dtype.kind != "f":
                continue
            w, b = wb
            v = channel_vector(c, w.shape[0], w.ndim)
            if v is None:
                continue
            if node.op_type == "Mul":
                new_w, new_b = _conv.scale_output_channels(w, v), b * v
            else:
                new_w, new_b = w, b + v
            base = f"{node_label(conv)}.{node.op_type.lower()}fold{len(notes)}"
            _conv.fold_into_conv(
                graph, names, node, conv, new_w, new_b, weight_name=f"{base}.weight", bias_name=f"{base}.bias"
            )
            notes.append(f"folded {node_label(node)} into {node_label(conv)}")
            return True
        return False
