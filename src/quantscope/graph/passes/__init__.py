"""onnx-ir passes that ready a float model for quantization without changing what it computes.

Each is an in-place :class:`onnx_ir.passes.InPlacePass` in its own module;
:func:`quantscope.graph.prepare.prepare` composes them with onnx-ir's own common passes.
"""

from quantscope.graph.passes._base import RewritePass
from quantscope.graph.passes.cancel_transposes import CancelTransposesPass
from quantscope.graph.passes.fold_batchnorm import FoldBatchNormPass
from quantscope.graph.passes.fold_channel_affine import FoldChannelAffinePass
from quantscope.graph.passes.fold_constant_nodes import FoldConstantNodesPass
from quantscope.graph.passes.fold_gate import FoldGatePass
from quantscope.graph.passes.fold_scalar_scale import FoldScalarScalePass
from quantscope.graph.passes.fold_transpose_flatten import FoldTransposeFlattenPass
from quantscope.graph.passes.hardswish import DecomposedHardSwishPass
from quantscope.graph.passes.lift_constants import LiftConstantsPass
from quantscope.graph.passes.matmul_add_to_gemm import MatMulAddToGemmPass
from quantscope.graph.passes.static_reshape import StaticReshapeShapePass

__all__ = [
    "CancelTransposesPass",
    "DecomposedHardSwishPass",
    "FoldBatchNormPass",
    "FoldChannelAffinePass",
    "FoldConstantNodesPass",
    "FoldGatePass",
    "FoldScalarScalePass",
    "FoldTransposeFlattenPass",
    "LiftConstantsPass",
    "MatMulAddToGemmPass",
    "RewritePass",
    "StaticReshapeShapePass",
]
