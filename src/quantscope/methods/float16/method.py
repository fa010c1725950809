"""float16: weights and compute in float16, float32 inputs and outputs (Casts at the boundary).

Full mode (the default) retypes every float32 tensor of every node it converts to float16,
guided by each operator's ONNX schema: only the inputs and outputs bound to a type parameter
that admits ``tensor(float16)`` change, so ``LayerNormalization``'s float32 ``Mean`` output or
``Resize``'s float32 ``scales`` stay as the schema demands. Constants become float16 (values
outside float16's range are clamped, see :mod:`quantscope.numerics.half`); ops whose output type
is an attribute (``Cast.to``, ``ConstantOfShape.value``, ``Constant.value*``, ``dtype``) get
float16 attributes; float64 tensors are left alone; If/Loop/Scan bodies are converted inside
with float32 at their boundary. Nodes that stay float32 (excluded, in ``block_ops``, no float16
in their schema, custom domains) get a Cast to float32 before them and a Cast back after them.

``weights_only=True`` stores each float32 weight (initializers of at least 16 elements) as
float16 followed by a ``Cast`` to float32, so every node computes in float32 exactly as before
with weights rounded to float16. ONNX Runtime constant-folds those Casts when a session is
created: the *file* halves, but memory and speed at run time are those of the float model.

On x86 CPUs ONNX Runtime's CPU provider may have float16 kernels only for some ops (data
movement, LayerNormalization, Min/Max, Clip, ...); for the others it inserts its own Casts and
runs them in float32. :meth:`Float16Method.plan` loads the converted model once and records,
node by node, which ones the installed ONNX Runtime runs in float16 and which between its own
Casts; the converted graph is the plan's payload, so applying the plan converts nothing again.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import onnx_ir as ir

from quantscope.calibrate import TensorStats
from quantscope.config import Float16, MethodConfig
from quantscope.errors import RuntimeFailure, UnsupportedModelError
from quantscope.graph.queries import node_label
from quantscope.io import Model
from quantscope.methods import register
from quantscope.methods.base import Decisions, Method, Selection, Subgraphs, nothing_found, select
from quantscope.methods.float16.runtime_view import ort_float32_nodes
from quantscope.methods.float16.schema import float_params
from quantscope.methods.float16.writer import MIN_WEIGHT_ELEMENTS, Writer, convert
from quantscope.numerics.half import FLOAT16_MAX
from quantscope.plan import QuantPlan, WeightQuant

logger = logging.getLogger(__name__)

MAX_RUNTIME_REFUSALS = 50  # nodes ONNX Runtime refuses in float16 are dropped one by one, up to this many

BLOCK_REASONS: dict[str, str] = {
    "Resize": "sampling coordinates from float16 scales/ROIs shift pixels",
    "Upsample": "sampling coordinates from float16 scales shift pixels",
    "GridSample": "float16 grid coordinates lose sub-pixel precision on large images",
    "RoiAlign": "float16 box coordinates lose sub-pixel precision",
    "TopK": "ranking on float16 values turns near-ties into reorderings",
    "CumSum": "running sums overflow float16 (max 65504) and lose low bits",
    "ReduceProd": "products overflow or underflow float16",
    "ReduceSumSquare": "sums of squares overflow float16 (max 65504)",
    "ReduceL2": "sums of squares overflow float16 (max 65504)",
    "ReduceLogSumExp": "exponentials overflow float16",
    "RandomNormal": "ONNX Runtime's CPU provider has no float16 kernel and cannot cast an output-only op",
    "RandomUniform": "ONNX Runtime's CPU provider has no float16 kernel and cannot cast an output-only op",
    "EyeLike": "ONNX Runtime's CPU provider has no float16 kernel and cannot cast an output-only op",
}
THRESHOLD_OPS = (
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "ArgMax", "ArgMin", "TopK",
    "Round", "Floor", "Ceil", "Sign",
)
WEIGHTS_ONLY_NOTE = (
    "weights are stored as float16 and cast to float32 by a Cast node; ONNX Runtime folds the "
    "Casts when the session is created, so only the file halves: run-time memory and compute "
    "are float32, with weights rounded to float16"
)
FULL_NOTE = (
    "inputs and outputs stay float32 (Cast at the boundary); float16 halves the file and, on "
    "hardware with float16 kernels, memory traffic and compute"
)



@register(Float16)
class Float16Method(Method):
    """float16 weights and compute (or float16 storage only, with ``weights_only``)."""

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, Float16)
        selection = select(model, config, recursive=True)
        reasons: dict[str, str] = {}
        for node in selection.nodes:
            label = node_label(node)
            rule = selection.rule(node)
            if rule is not None:
                reasons[label] = Selection.reason(rule)
            elif node.op_type in config.block_ops:
                why = BLOCK_REASONS.get(node.op_type, "listed in block_ops")
                reasons[label] = f"{node.op_type} is in the float16 block list ({why}); kept float32 between Casts"
        labels = {node_label(n) for n in selection.nodes} - set(reasons)
        if config.weights_only:
            return self._plan_weights_only(model, config, selection, labels, reasons)
        opsets = dict(model.ir.opset_imports)
        for node in selection.nodes:
            if node_label(node) in labels:
                params = float_params(node, opsets)
                if isinstance(params, str):
                    reasons[node_label(node)] = params
        labels -= set(reasons)
        converted, writer, converted_labels, on_float32, refused = _convert_loadable(model, config, labels, reasons)
        decisions = Decisions(selection)
        for node in selection.nodes:
            label = node_label(node)
            if label in converted_labels:
                where = (
                    "ONNX Runtime's CPU provider runs it in float32 between Casts it inserts"
                    if label in on_float32
                    else "ONNX Runtime's CPU provider runs it in float16"
                )
                decisions.decide(node, "quantized", f"float16 compute; {where}")
            else:
                decisions.keep(node, reasons.get(
                    label, "reads float32 tensors from float32 producers only (shape, comparison); unchanged"
                ))
        if not converted_labels:
            raise nothing_found(config.method, decisions.values(), "no float32 node to convert")
        warnings = _clamp_warnings(writer)
        slow = Counter(d.op_type for d in decisions.values() if d.node in on_float32)
        native = Counter(d.op_type for d in decisions.values() if d.action == "quantized" and d.node not in on_float32)
        if slow:
            warnings.append(
                f"ONNX Runtime's CPU provider has no float16 kernel for {sum(slow.values())} of "
                f"{len(converted_labels)} converted node(s) ({_top(slow)}); it runs them in float32 "
                "between Casts it inserts: expect little or no speed-up on this CPU; weights_only=True "
                "gives the same file size at float32 speed"
            )
        thresholds = sorted({d.op_type for d in decisions.values() if d.action == "quantized" and d.op_type in THRESHOLD_OPS})
        if thresholds:
            warnings.append(
                f"float16 compute feeds thresholding op(s) ({', '.join(thresholds)}): rounding can flip "
                "their outputs (detections, masks, argmax ties); measure on your data"
            )
        notes = [*model.notes, FULL_NOTE, *Subgraphs.of(model).notes_when_converted()]
        return _finish(model, config, decisions, writer, warnings, notes, {
            "mode": "full",
            "ort_cpu": {"float16_kernels": dict(native.most_common()),
                        "float32_between_casts": dict(slow.most_common()),
                        "refused_by_runtime": refused},
        }).with_payload(converted)

    @staticmethod
    def _plan_weights_only(model: Model, config: Float16, selection: Selection,
                           labels: set[str], reasons: dict[str, str]) -> QuantPlan:
        converted, writer, _ = convert(model, config, labels)
        per_node: dict[str, list[str]] = {}
        for tensor, node, _, _ in writer.weights:
            per_node.setdefault(node, []).append(tensor)
        decisions = Decisions(selection)
        for node in selection.nodes:
            label = node_label(node)
            if label in per_node:
                decisions.decide(node, "quantized", (
                    f"float16 weight(s) {', '.join(per_node[label])} cast to float32 at load; computes in float32"
                ))
            else:
                decisions.keep(node, reasons.get(
                    label, f"no float32 weight of >= {MIN_WEIGHT_ELEMENTS} elements; computes in float32"
                ))
        if not per_node:
            raise nothing_found(
                "float16 --weights-only", decisions.values(),
                f"no float32 weight of >= {MIN_WEIGHT_ELEMENTS} elements outside excluded/blocked nodes",
            )
        return _finish(model, config, decisions, writer, _clamp_warnings(writer),
                       [*model.notes, WEIGHTS_ONLY_NOTE], {"mode": "weights-only"}).with_payload(converted)

    def compute(self, model: Model, config: MethodConfig, plan: QuantPlan) -> ir.Model:
        """Convert the nodes ``plan`` converts (a plan read from a sidecar carries no graph)."""
        assert isinstance(config, Float16)
        converted, _, _ = convert(model, config, {d.node for d in plan.decisions if d.action == "quantized"})
        return converted

    def written(self, model: Model, config: MethodConfig, plan: QuantPlan, payload: ir.Model) -> ir.Model:
        return payload.clone()  # converted and finalized while planning


def _convert_loadable(
    model: Model, config: Float16, labels: set[str], reasons: dict[str, str]
) -> tuple[ir.Model, Writer, set[str], set[str], list[str]]:
    """Convert ``labels``, dropping the nodes ONNX Runtime refuses in float16 one by one.

    Returns the converted graph, its writer, the converted labels, those ONNX Runtime runs in
    float32 between its own Casts, and the refused labels (their reasons are added to ``reasons``).
    """
    refused: list[str] = []
    for _ in range(MAX_RUNTIME_REFUSALS):
        converted, writer, switched = convert(model, config, labels)
        converted_labels = {node_label(n) for n in switched}
        if not converted_labels:
            return converted, writer, converted_labels, set(), refused
        try:
            return converted, writer, converted_labels, ort_float32_nodes(converted, converted_labels), refused
        except RuntimeFailure as exc:
            match = re.search(r"node with name '([^']*)'", str(exc))
            if match is None or match.group(1) not in converted_labels:
                raise UnsupportedModelError(
                    f"ONNX Runtime cannot load the float16 model: {exc}. Exclude the node it names "
                    "(exclude=NodeSelector(names=[...]) / --exclude-name) or use weights_only=True."
                ) from exc
            label = match.group(1)
            reasons[label] = f"ONNX Runtime's CPU provider cannot run it in float16 ({exc}); kept float32"
            refused.append(label)
            labels.discard(label)
    raise UnsupportedModelError(
        f"ONNX Runtime refused {len(refused)} float16 nodes one after another "
        f"({', '.join(refused[:5])}, ...); use weights_only=True for this model"
    )


def _clamp_warnings(writer: Writer) -> list[str]:
    c = writer.counts
    out: list[str] = []
    if c.clamped_large:
        out.append(
            f"{c.clamped_large} constant value(s) beyond float16's range were clamped to ±{FLOAT16_MAX:g} "
            "(e.g. attention masks built from finfo(float32).min), so they stay finite"
        )
    if c.raised_tiny:
        out.append(
            f"{c.raised_tiny} non-zero constant value(s) below float16's smallest subnormal were raised "
            "to ±2**-24 (e.g. ε = 1e-12) so they stay non-zero"
        )
    return out


def _finish(model: Model, config: Float16, decisions: Decisions, writer: Writer,
            warnings: list[str], notes: list[str], extra: dict[str, object]) -> QuantPlan:
    weights = tuple(
        WeightQuant(tensor=t, node=n, dtype="float16", axis=None, bits=16, channels=1, input_index=i)
        for t, n, i, _ in writer.weights
    )
    sizes = {t: size for t, _, _, size in writer.weights}
    f32 = 4 * sum(sizes.values())
    extra = {**extra, "weight_bytes": {"float": f32, "float16": f32 // 2, "ratio": 0.5 if f32 else 1.0},
             "clamped_values": {"large": writer.counts.clamped_large, "tiny": writer.counts.raised_tiny}}
    logger.info("float16 (%s): %d node(s) converted, %d weight(s), %d bytes -> %d",
                extra["mode"], sum(d.action == "quantized" for d in decisions.values()), len(sizes), f32, f32 // 2)
    return QuantPlan(
        method=config.method, decisions=decisions.ordered(), weights=weights,
        notes=tuple(notes), warnings=tuple(warnings), extra=extra,
    )


def _top(counts: Counter[str], n: int = 6) -> str:
    return ", ".join(f"{op} x{k}" for op, k in counts.most_common(n))
