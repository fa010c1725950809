"""Ready a float model for quantization without changing what it computes.

The steps are onnx-ir passes (:mod:`quantscope.graph.passes` and onnx-ir's common passes)
composed by its pass manager.

``prepare`` returns a new model; the caller's model is never edited.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.errors import ModelError
from quantscope.graph.passes import (
    CancelTransposesPass,
    DecomposedHardSwishPass,
    FoldBatchNormPass,
    FoldChannelAffinePass,
    FoldConstantNodesPass,
    FoldGatePass,
    FoldScalarScalePass,
    FoldTransposeFlattenPass,
    LiftConstantsPass,
    MatMulAddToGemmPass,
    RewritePass,
    StaticReshapeShapePass,
)
from quantscope.graph.queries import attr_int
from quantscope.graph.subgraphs import body_passes
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


def prepare_passes(*, bias_into_gemm: bool = False, integer_chains: bool = False) -> list[ir.passes.PassBase]:
    """The passes of :func:`prepare`, in order (each in place; run them on a copy)."""
    return [
        LiftConstantsPass(),  # first: Paddle2ONNX keeps weights in Constant nodes
        *([FoldConstantNodesPass()] if integer_chains else []),  # a reshaped bias becomes a constant
        StaticReshapeShapePass(),  # a flatten's computed shape made constant, so the next two see it
        CancelTransposesPass(),  # before the folds: a BatchNorm between layout Transposes meets its Conv
        FoldTransposeFlattenPass(),
        FoldBatchNormPass(),
        *([MatMulAddToGemmPass()] if bias_into_gemm else []),
        FoldChannelAffinePass(),
        *([DecomposedHardSwishPass()] if integer_chains else []),
        *([FoldScalarScalePass()] if integer_chains else []),  # a scale after an activation into its Conv
        *([FoldGatePass()] if integer_chains else []),  # a gate's affine into its Conv: Clip(0, 1) fuses
        common_passes.RemoveUnusedNodesPass(),
        common_passes.TopologicalSortPass(),
        # old exporters list initializers as graph inputs too; that blocks constant treatment
        common_passes.RemoveInitializersFromInputsPass(),
        *body_passes(),  # last: If/Loop/Scan bodies read their weights from the main graph
    ]


def lift_constants(model: Model) -> Model:
    """``model`` with its Constant-node tensors as initializers (weights counted like any other);
    a new Model, the caller's is untouched. Source path, fingerprint and notes are kept."""
    lifted = ir.passes.functionalize(LiftConstantsPass())(model.ir).model
    return replace(model, ir=lifted)


def prepare(
    model: Model, *, min_opset: int = MIN_OPSET, bias_into_gemm: bool = False, integer_chains: bool = False
) -> tuple[Model, list[str]]:
    """Opset upgrade, constants lifted to initializers, BatchNorm and per-channel Mul/Add folded
    into Conv, dead nodes removed; with ``bias_into_gemm`` 2-D ``MatMul + Add(bias)`` pairs
    become ``Gemm`` (static-int8 needs it; the other methods fold the bias themselves); with
    ``integer_chains`` shape ops on constants are evaluated (a reshaped bias folds into its Conv)
    decomposed HardSwish chains become ``x·HardSigmoid(x)`` and a HardSigmoid gate reading a
    Conv/Gemm/MatMul+bias folds into it, leaving ``Clip(0, 1)`` (static-int8: fewer float islands)."""
    upgraded, notes = upgrade_opset(model, min_opset)
    passes = prepare_passes(bias_into_gemm=bias_into_gemm, integer_chains=integer_chains)
    # functionalize: the passes run on a copy, the caller's model is never edited
    prepared = ir.passes.functionalize(ir.passes.PassManager(passes))(upgraded.ir).model
    notes += [p.summary.format(n=len(p.notes)) for p in passes if isinstance(p, RewritePass) and p.notes]
    # the model's own notes (e.g. an importer's) come first, so every plan made from it shows them
    return Model(ir=prepared, path=None, fingerprint=model.fingerprint, notes=(*model.notes, *notes)), notes


__all__ = ["MIN_OPSET", "attr_int", "lift_constants", "prepare", "prepare_passes", "upgrade_opset"]
