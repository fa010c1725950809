"""A ``HardSigmoid`` gate folded into the Conv/Gemm/MatMul+bias that feeds it, leaving ``Clip(0, 1)``.

``HardSigmoid(y) = clip(alpha·y + beta, 0, 1)``; when ``y = W·x + b`` is the single-consumer output
of a layer with constant weights, ``alpha·y + beta = (alpha·W)·x + (alpha·b + beta)``. The layer
then computes the gate's affine itself and a ``Clip(0, 1)`` remains, which static-int8 fuses into
the integer kernel's output range: a squeeze-excitation gate (``Conv → HardSigmoid → Mul``) runs
without a float island. Exact in float up to rounding.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from quantscope.graph.build import NameAllocator, initializer, node
from quantscope.graph.passes import _conv
from quantscope.graph.passes._base import RewritePass
from quantscope.graph.queries import attr_float, attr_int, const_array, node_label, sole_consumer


def _fold_conv(graph: ir.Graph, names: NameAllocator, conv: ir.Node, alpha: float, beta: float) -> bool:
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    wb = _conv.conv_weight_bias(conv)
    if wb is None or (has_bias and const_array(conv.inputs[2]) is None):
        return False
    w, b = wb
    base = node_label(conv)
    _conv.set_constant_input(graph, names, conv, 1, w * alpha, f"{base}.weight_gatefold")
    _conv.set_constant_input(graph, names, conv, 2, b * alpha + beta, f"{base}.bias_gatefold")
    return True


def _fold_gemm(graph: ir.Graph, names: NameAllocator, gemm: ir.Node, alpha: float, beta: float) -> bool:
    """``alpha_g·A·B + beta_g·C`` → ``A·(alpha·alpha_g·B) + (alpha·beta_g·C + beta)`` with ``alpha_g = beta_g = 1`` after."""
    w = const_array(gemm.inputs[1])
    has_c = len(gemm.inputs) > 2 and gemm.inputs[2] is not None
    c = const_array(gemm.inputs[2]) if has_c else np.zeros(())
    if w is None or w.ndim != 2 or c is None or c.size == 0 or w.dtype != np.float32:
        return False
    n = w.shape[0] if attr_int(gemm, "transB", 0) else w.shape[1]
    c64 = np.broadcast_to(c.astype(np.float64), (n,)) if c.size == 1 else c.astype(np.float64)
    base = node_label(gemm)
    _conv.set_constant_input(graph, names, gemm, 1, w.astype(np.float64) * (alpha * attr_float(gemm, "alpha", 1.0)),
               f"{base}.weight_gatefold")
    _conv.set_constant_input(graph, names, gemm, 2, c64 * (alpha * attr_float(gemm, "beta", 1.0)) + beta, f"{base}.bias_gatefold")
    gemm.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
    gemm.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    return True


def _fold_matmul_bias(graph: ir.Graph, names: NameAllocator, add: ir.Node, alpha: float, beta: float) -> bool:
    """``Add(MatMul(A, W), b)`` with constant 2-D ``W`` and constant ``b`` → ``W·alpha``, ``b·alpha + beta``."""
    if len(add.inputs) != 2:
        return False
    for side in (0, 1):
        mm = add.inputs[side].producer() if add.inputs[side] is not None else None
        b = const_array(add.inputs[1 - side])
        if mm is None or not _conv.is_standard(mm, "MatMul") or b is None or sole_consumer(add.inputs[side]) is None:
            continue
        w = const_array(mm.inputs[1])
        if w is None or w.ndim != 2 or w.dtype != np.float32 or b.dtype != np.float32:
            continue
        if (b.ndim > 1 and any(d != 1 for d in b.shape[:-1])) or b.shape[-1:] not in ((w.shape[1],), (1,)):
            continue
        base = node_label(mm)
        _conv.set_constant_input(graph, names, mm, 1, w.astype(np.float64) * alpha, f"{base}.weight_gatefold")
        _conv.set_constant_input(graph, names, add, 1 - side, b.astype(np.float64) * alpha + beta, f"{base}.bias_gatefold")
        return True
    return False


def fold_gate(graph: ir.Graph, names: NameAllocator, gate: ir.Node) -> str | None:
    """Fold the HardSigmoid ``gate`` into its producer; the note, or None when it cannot be folded."""
    y = gate.inputs[0] if gate.inputs else None
    if not _conv.is_standard(gate, "HardSigmoid") or sole_consumer(y) is None or gate.outputs[0].is_graph_output():
        return None
    producer = y.producer() if y is not None else None
    if producer is None or len(producer.outputs) != 1:
        return None
    alpha, beta = attr_float(gate, "alpha", 0.2), attr_float(gate, "beta", 0.5)
    if _conv.is_standard(producer, "Conv"):
        folded = _fold_conv(graph, names, producer, alpha, beta)
    elif _conv.is_standard(producer, "Gemm"):
        folded = _fold_gemm(graph, names, producer, alpha, beta)
    elif _conv.is_standard(producer, "Add"):
        folded = _fold_matmul_bias(graph, names, producer, alpha, beta)
    else:
        folded = False
    if not folded:
        return None
    bounds = [initializer(graph, names, f"{node_label(gate)}.{which}", np.array(v, np.float32))
              for which, v in (("min", 0.0), ("max", 1.0))]
    out = gate.outputs[0]
    assert y is not None
    _conv.renamed(y, names, "_gate_affine")  # the layer now computes alpha·y + beta, not y
    clip = node(names, "Clip", [y, *bounds], base=node_label(gate), dtypes=[out.dtype], shapes=[out.shape])
    graph.insert_after(gate, [clip])
    name = out.name
    ir.convenience.replace_all_uses_with(out, clip.outputs[0])
    graph.remove(gate, safe=True)
    _conv.take_name(clip.outputs[0], name)  # the Clip computes what the gate computed
    return f"{node_label(gate)} folded into {node_label(producer)} (Clip(0, 1) left)"


class FoldGatePass(RewritePass):
    """Every main-graph ``HardSigmoid`` that reads the sole output of a Conv, a Gemm or a
    ``MatMul + Add(bias)`` → that layer with the gate's affine folded in, then ``Clip(0, 1)``."""

    summary = "folded {n} HardSigmoid gate(s) into the preceding Conv/Gemm/MatMul (Clip(0, 1) left)"

    def rewrite(self, graph: ir.Graph, names: NameAllocator) -> list[str]:
        return [note for gate in list(graph) if gate.graph is graph and (note := fold_gate(graph, names, gate))]
