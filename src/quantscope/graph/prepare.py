"""Passes that ready a float model for quantization without changing what it computes.

``prepare`` returns a new model; the caller's model is never edited.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.errors import ModelError
from quantscope.graph.queries import attr_float, attr_int, const_array, consumers, node_label
from quantscope.io import Model, infer_shapes

logger = logging.getLogger(__name__)

MIN_OPSET = 13  # per-channel DequantizeLinear (the ``axis`` attribute) needs opset 13


def upgrade_opset(model: Model, target: int = MIN_OPSET) -> tuple[Model, list[str]]:
    """Convert the default-domain opset up to ``target`` when it is lower."""
    if model.opset >= target:
        return model, []
    try:
        proto = onnx.version_converter.convert_version(model.to_proto(), target)
    except Exception as exc:
        raise ModelError(
            f"the model uses opset {model.opset}; quantization needs opset >= {target} and the "
            f"automatic upgrade failed ({exc}); re-export the model with opset {target} or newer"
        ) from exc
    proto = infer_shapes(proto)
    upgraded = Model(ir=ir.from_proto(proto), path=None, fingerprint=model.fingerprint)
    return upgraded, [f"opset upgraded from {model.opset} to {target} (needed for per-channel scales)"]


def fold_batch_norm(graph: ir.Graph) -> list[str]:
    """Fold inference-mode BatchNormalization into the Conv that feeds it (in place on ``graph``)."""
    notes: list[str] = []
    for bn in list(graph):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.outputs) != 1:
            continue
        conv = bn.inputs[0].producer() if bn.inputs[0] is not None else None
        if conv is None or conv.op_type != "Conv" or len(consumers(conv.outputs[0])) != 1:
            continue
        if conv.outputs[0].is_graph_output() or bn.outputs[0].is_graph_output():
            continue
        w = const_array(conv.inputs[1])
        params = [const_array(v) for v in bn.inputs[1:5]]
        if w is None or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
        eps = attr_float(bn, "epsilon", 1e-5)
        factor = gamma / np.sqrt(var + eps)
        bias = const_array(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
        b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
        new_w = (w.astype(np.float64) * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = ((b - mean) * factor + beta).astype(np.float32)
        base = node_label(conv)
        w_val = ir.Value(name=f"{base}.weight_bnfold", const_value=ir.tensor(new_w, name=f"{base}.weight_bnfold"),
                         type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(new_w.shape))
        b_val = ir.Value(name=f"{base}.bias_bnfold", const_value=ir.tensor(new_b, name=f"{base}.bias_bnfold"),
                         type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(new_b.shape))
        graph.register_initializer(w_val)
        graph.register_initializer(b_val)
        conv.replace_input_with(1, w_val)
        if len(conv.inputs) > 2:
            conv.replace_input_with(2, b_val)
        else:
            conv.resize_inputs(3)
            conv.replace_input_with(2, b_val)
        ir.convenience.replace_all_uses_with(bn.outputs[0], conv.outputs[0])
        graph.remove(bn, safe=True)
        notes.append(f"folded {node_label(bn)} into {base}")
    return notes


def _channel_vector(c: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``c`` as one value per output channel of a rank-``rank`` NCHW tensor, or None."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


def fold_channel_affine(graph: ir.Graph) -> list[str]:
    """Fold per-channel ``Mul``/``Add`` by constants after a Conv into its weight and bias.

    Exporters write inference BatchNorm this way (tf2onnx: ``Conv → Mul → Add``); left alone the
    chain stays float between quantized ops. ``(conv(x, W) + b)·s + t = conv(x, W·s) + (b·s + t)``.
    In place on ``graph``.
    """
    notes: list[str] = []
    changed = True
    while changed:
        changed = False
        for node in list(graph):
            if node.op_type not in ("Mul", "Add") or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
                continue
            for side in (0, 1):
                src, other = node.inputs[side], node.inputs[1 - side]
                conv = src.producer() if src is not None else None
                if conv is None or conv.op_type != "Conv" or len(consumers(src)) != 1:
                    continue
                if src.is_graph_output() or node.outputs[0].is_graph_output():
                    continue
                w, c = const_array(conv.inputs[1]), const_array(other)
                if w is None or c is None or c.dtype.kind != "f":
                    continue
                v = _channel_vector(c, w.shape[0], w.ndim)
                if v is None:
                    continue
                bias = const_array(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
                b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
                if node.op_type == "Mul":
                    new_w = (w.astype(np.float64) * v.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
                    new_b = (b * v).astype(np.float32)
                else:
                    new_w, new_b = w.astype(np.float32), (b + v).astype(np.float32)
                base = f"{node_label(conv)}.{node.op_type.lower()}fold{len(notes)}"
                for index, array, suffix in ((1, new_w, "weight"), (2, new_b, "bias")):
                    value = ir.Value(name=f"{base}.{suffix}", const_value=ir.tensor(array, name=f"{base}.{suffix}"),
                                     type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(array.shape))
                    graph.register_initializer(value)
                    if len(conv.inputs) <= index:
                        conv.resize_inputs(index + 1)
                    conv.replace_input_with(index, value)
                ir.convenience.replace_all_uses_with(node.outputs[0], conv.outputs[0])
                graph.remove(node, safe=True)
                notes.append(f"folded {node_label(node)} into {node_label(conv)}")
                changed = True
                break
    return notes


def matmul_add_to_gemm(graph: ir.Graph) -> list[str]:
    """``MatMul(A, W) → Add(b)`` with a 2-D ``A``, constant ``W`` [K, N] and ``b`` [N] → ``Gemm``.

    ONNX Runtime fuses the pair into a float Gemm before it looks at Q/DQ pairs, so a quantized
    MatMul followed by a bias would run in float; a Gemm is quantized whole (QGemm). In place.
    """
    notes: list[str] = []
    for mm in list(graph):
        if mm.op_type != "MatMul" or mm.domain not in ("", "ai.onnx"):
            continue
        a, out = mm.inputs[0], mm.outputs[0]
        w = const_array(mm.inputs[1])
        users = consumers(out)
        if a is None or a.shape is None or len(a.shape) != 2 or w is None or w.ndim != 2:
            continue
        if len(users) != 1 or out.is_graph_output() or users[0].op_type != "Add" or users[0].domain not in ("", "ai.onnx"):
            continue
        add = users[0]
        other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
        b = const_array(other)
        if b is None or b.dtype != np.float32 or b.size != w.shape[1] or b.ndim > 2 or (b.ndim == 2 and b.shape[0] != 1):
            continue
        bias = ir.Value(name=f"{node_label(mm)}.gemm_bias", shape=ir.Shape([b.size]), type=ir.TensorType(ir.DataType.FLOAT),
                        const_value=ir.tensor(b.reshape(-1), name=f"{node_label(mm)}.gemm_bias"))
        graph.register_initializer(bias)
        gemm = ir.Node("", "Gemm", inputs=[a, mm.inputs[1], bias], name=mm.name, num_outputs=1)
        gemm.outputs[0].name = f"{out.name}.gemm"
        gemm.outputs[0].shape = add.outputs[0].shape
        gemm.outputs[0].type = add.outputs[0].type
        graph.insert_before(mm, gemm)
        old = add.outputs[0]
        if old.is_graph_output():  # the graph output keeps its name
            name = old.name
            graph.outputs[list(graph.outputs).index(old)] = gemm.outputs[0]
            old.name = f"{name}.replaced"
            gemm.outputs[0].name = name
        ir.convenience.replace_all_uses_with(old, gemm.outputs[0])
        graph.remove([add, mm], safe=True)
        notes.append(f"{node_label(mm)} + {node_label(add)} → Gemm")
    return notes


def prepare(
    model: Model, *, min_opset: int = MIN_OPSET, bias_into_gemm: bool = False
) -> tuple[Model, list[str]]:
    """Opset upgrade, constants lifted to initializers, BatchNorm and per-channel Mul/Add folded
    into Conv, dead nodes removed; with ``bias_into_gemm`` 2-D ``MatMul + Add(bias)`` pairs
    become ``Gemm`` (static-int8 needs it; the other methods fold the bias themselves)."""
    upgraded, notes = upgrade_opset(model, min_opset)
    clone = upgraded.ir.clone()
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=0)(clone)
    folded = fold_batch_norm(clone.graph)
    if folded:
        notes.append(f"folded {len(folded)} BatchNormalization node(s) into the preceding Conv")
    gemms = matmul_add_to_gemm(clone.graph) if bias_into_gemm else []
    if gemms:
        notes.append(f"fused {len(gemms)} MatMul + bias Add pair(s) into Gemm (quantized as one)")
    affine = fold_channel_affine(clone.graph)
    if affine:
        notes.append(f"folded {len(affine)} per-channel Mul/Add node(s) into the preceding Conv")
    common_passes.RemoveUnusedNodesPass()(clone)
    common_passes.TopologicalSortPass()(clone)
    _drop_initializers_from_inputs(clone.graph)
    # the model's own notes (e.g. an importer's) come first, so every plan made from it shows them
    return Model(ir=clone, path=None, fingerprint=model.fingerprint, notes=(*model.notes, *notes)), notes


def _drop_initializers_from_inputs(graph: ir.Graph) -> None:
    """Old exporters list initializers as graph inputs too; that blocks constant treatment."""
    keep = [v for v in graph.inputs if v.name not in graph.initializers]
    if len(keep) != len(graph.inputs):
        graph.inputs.clear()
        graph.inputs.extend(keep)


__all__ = ["MIN_OPSET", "attr_int", "fold_batch_norm", "fold_channel_affine", "matmul_add_to_gemm", "prepare", "upgrade_opset"]
