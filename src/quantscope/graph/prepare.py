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


def prepare(model: Model, *, min_opset: int = MIN_OPSET) -> tuple[Model, list[str]]:
    """Opset upgrade, constants lifted to initializers, BatchNorm folded, dead nodes removed."""
    upgraded, notes = upgrade_opset(model, min_opset)
    clone = upgraded.ir.clone()
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=0)(clone)
    folded = fold_batch_norm(clone.graph)
    if folded:
        notes.append(f"folded {len(folded)} BatchNormalization node(s) into the preceding Conv")
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


__all__ = ["MIN_OPSET", "attr_int", "fold_batch_norm", "prepare", "upgrade_opset"]
