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

On x86 CPUs ONNX Runtime (1.32, measured) has float16 kernels only for data movement
(Transpose, Reshape, Gather, Concat, ...), LayerNormalization, Min/Max, Clip; for every other
node (MatMul, Conv, Add, Softmax, ...) it inserts its own Casts and runs it in float32, and drops
back-to-back Cast pairs. :meth:`Float16Method.plan` loads the converted model and records, node
by node, which ones ONNX Runtime runs in float16 and which between its own Casts.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.calibrate import TensorStats
from quantscope.config import Float16, MethodConfig
from quantscope.errors import RuntimeFailure, UnsupportedModelError
from quantscope.graph.prepare import prepare
from quantscope.graph.qdq import NameAllocator
from quantscope.graph.queries import node_label
from quantscope.graph.rewrite import cast
from quantscope.io import Model
from quantscope.methods import register
from quantscope.numerics.half import FLOAT16_MAX, to_float16
from quantscope.plan import NodeDecision, QuantPlan, WeightQuant
from quantscope.runtime import make_session

logger = logging.getLogger(__name__)

F32 = ir.DataType.FLOAT
F16 = ir.DataType.FLOAT16
MIN_WEIGHT_ELEMENTS = 16  # weights-only: smaller float constants (scalars, ε, scales) stay float32

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
CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")
DTYPE_ATTRIBUTE_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike", "Bernoulli")
THRESHOLD_OPS = (
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "ArgMax", "ArgMin", "TopK",
    "Round", "Floor", "Ceil", "Sign",
)
ORT_CAST_PREFIX = "InsertedPrecisionFreeCast_"
WEIGHTS_ONLY_NOTE = (
    "weights are stored as float16 and cast to float32 by a Cast node; ONNX Runtime folds the "
    "Casts when the session is created, so only the file halves: run-time memory and compute "
    "are float32, with weights rounded to float16"
)
FULL_NOTE = (
    "inputs and outputs stay float32 (Cast at the boundary); float16 halves the file and, on "
    "hardware with float16 kernels, memory traffic and compute"
)


@dataclass(frozen=True)
class _Switch:
    """Which inputs and outputs of one converted node become float16."""

    inputs: frozenset[int]
    outputs: frozenset[int]


# -- analysis ------------------------------------------------------------------------------
def _all_nodes(graph: ir.Graph) -> list[ir.Node]:
    return list(ir.traversal.RecursiveGraphIterator(graph))


def _all_graphs(graph: ir.Graph) -> list[ir.Graph]:
    return [graph, *graph.subgraphs()]


def _is_f32_tensor(value: ir.Value) -> bool:
    return isinstance(value.type, ir.TensorType) and value.dtype == F32


def _schema(node: ir.Node, opsets: dict[str, int]) -> onnx.defs.OpSchema | None:
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = node.version or opsets.get(domain, opsets.get("ai.onnx", 0))
    try:
        return onnx.defs.get_schema(node.op_type, version, domain)
    except onnx.defs.SchemaError:
        return None


def _param(formals: list[onnx.defs.OpSchema.FormalParameter], i: int) -> str | None:
    if i < len(formals):
        return formals[i].type_str
    last = formals[-1] if formals else None
    if last is not None and last.option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return last.type_str if last.is_homogeneous else None
    return None


def _float_params(node: ir.Node, opsets: dict[str, int]) -> dict[str, tuple[list[int], list[int]]] | str:
    """Type parameters of ``node`` that admit float16 and bind only float32 tensors, or why none do."""
    if node.domain not in ("", "ai.onnx"):
        return f"operator {node.domain}::{node.op_type} is outside the default ONNX domain; float16 support unknown"
    if node.op_type in CONTROL_FLOW:
        return "control flow: its inputs/outputs stay float32; its body's nodes are decided one by one"
    schema = _schema(node, opsets)
    if schema is None:
        return f"no ONNX schema for {node.op_type} at this opset"
    if node.op_type == "Constant" and "sparse_value" in node.attributes:
        return "sparse Constant; kept float32"
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    bound: dict[str, tuple[list[int], list[int]]] = {}
    for kind, values, formals in (
        (0, node.inputs, schema.inputs),
        (1, node.outputs, schema.outputs),
    ):
        for i, v in enumerate(values):
            p = _param(list(formals), i)
            if v is None or p is None or p not in allowed:
                continue
            bound.setdefault(p, ([], []))[kind].append(i)
    params: dict[str, tuple[list[int], list[int]]] = {}
    has_f32 = False
    for p, (ins, outs) in bound.items():
        values = [node.inputs[i] for i in ins] + [node.outputs[i] for i in outs]
        if not any(v is not None and _is_f32_tensor(v) for v in values):
            continue
        has_f32 = True
        if "tensor(float16)" not in allowed[p]:
            continue
        if all(v is not None and _is_f32_tensor(v) for v in values):
            params[p] = (ins, outs)
    if params:
        return params
    if has_f32:
        return f"the ONNX schema of {node.op_type} (opset {schema.since_version}) does not allow float16 here"
    return "no float32 tensor to convert"


def _switches(nodes: Iterable[ir.Node], convert: set[str], opsets: dict[str, int]) -> dict[ir.Node, _Switch]:
    """The float16 inputs/outputs of every node in ``convert`` (nodes with nothing to switch drop out).

    Parameters bound to an output always switch. Parameters bound only to inputs (``Shape``,
    ``Equal``, ``ArgMax``) switch only when one of their inputs is already float16, so nothing
    casts a float32 tensor to float16 just to take its shape.
    """
    candidates: dict[ir.Node, dict[str, tuple[list[int], list[int]]]] = {}
    for node in nodes:
        if node_label(node) in convert:
            params = _float_params(node, opsets)
            if isinstance(params, dict):
                candidates[node] = params
    half: set[ir.Value] = set()
    for node, params in candidates.items():
        for _, outs in params.values():
            half.update(node.outputs[i] for i in outs)
    result: dict[ir.Node, _Switch] = {}
    for node, params in candidates.items():
        ins: set[int] = set()
        outs: set[int] = set()
        for p_ins, p_outs in params.values():
            if p_outs or any(node.inputs[i] in half for i in p_ins):
                ins.update(p_ins)
                outs.update(p_outs)
        if ins or outs:
            result[node] = _Switch(frozenset(ins), frozenset(outs))
    return result


# -- writing -------------------------------------------------------------------------------
@dataclass
class _Counts:
    clamped_large: int = 0
    raised_tiny: int = 0
    tensors: int = 0

    def add(self, array: np.ndarray) -> np.ndarray:
        conv = to_float16(array)
        self.clamped_large += conv.clamped_large
        self.raised_tiny += conv.raised_tiny
        self.tensors += int(conv.clamped_large + conv.raised_tiny > 0)
        return conv.array


class _Writer:
    """Edits one cloned model in place: the float16 tensors, and the Casts between the two types."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.names = NameAllocator(model.graph)
        self.counts = _Counts()
        self.weights: list[tuple[str, str, int, int]] = []  # tensor, node, input index, elements
        self._casts: dict[tuple[int, ir.Value, ir.DataType], ir.Value] = {}
        self._halves: dict[ir.Value, ir.Value] = {}

    def cast_to(self, value: ir.Value, dtype: ir.DataType, graph: ir.Graph) -> ir.Value:
        """A Cast of ``value`` in ``graph`` (shared by every use there), placed after its producer."""
        key = (id(graph), value, dtype)
        if key not in self._casts:
            node = cast(self.names, value, dtype, base=f"{value.name or 'value'}_to_{dtype.name.lower()}")
            producer = value.producer()
            if producer is not None and producer.graph is graph:
                graph.insert_after(producer, [node])
            elif len(graph):
                graph.insert_before(graph[0], [node])
            else:
                graph.append(node)
            self._casts[key] = node.outputs[0]
        return self._casts[key]

    def half_initializer(self, value: ir.Value, in_place: bool) -> ir.Value:
        """The float16 version of a float32 initializer: retyped in place, or a new initializer."""
        if value not in self._halves:
            tensor = value.const_value
            assert tensor is not None
            half = self.counts.add(tensor.numpy())
            if in_place:
                value.const_value = ir.tensor(half, name=value.name)
                value.type = ir.TensorType(F16)
                self._halves[value] = value
            else:
                name = self.names(f"{value.name}_fp16")
                new = ir.Value(name=name, type=ir.TensorType(F16), shape=value.shape,
                               const_value=ir.tensor(half, name=name))
                owner = value.graph if value.graph is not None else self.model.graph
                owner.register_initializer(new)
                self._halves[value] = new
        return self._halves[value]

    def fix_attributes(self, node: ir.Node, switch: _Switch) -> None:
        """Ops whose output type is an attribute: make the attribute say float16."""
        if 0 not in switch.outputs:
            return
        op = node.op_type
        if op == "Cast":
            node.attributes["to"] = ir.AttrInt64("to", int(F16))
        elif op in DTYPE_ATTRIBUTE_OPS and ("dtype" in node.attributes or op in ("RandomNormal", "RandomUniform")):
            node.attributes["dtype"] = ir.AttrInt64("dtype", int(F16))
        elif op == "ConstantOfShape":
            attr = node.attributes.get("value")
            base = attr.as_tensor().numpy() if attr is not None else np.zeros(1, np.float32)
            node.attributes["value"] = ir.AttrTensor("value", ir.tensor(self.counts.add(base)))
        elif op == "Constant":
            for key in ("value", "value_float", "value_floats"):
                attr = node.attributes.get(key)
                if attr is None:
                    continue
                if key == "value":
                    array = attr.as_tensor().numpy()
                elif key == "value_float":
                    array = np.asarray(attr.as_float(), np.float32)
                else:
                    array = np.asarray(list(attr.as_floats()), np.float32)
                node.attributes.pop(key)
                node.attributes["value"] = ir.AttrTensor("value", ir.tensor(self.counts.add(array)))
                break

    def full(self, switches: dict[ir.Node, _Switch]) -> None:
        half: set[ir.Value] = set()
        for node, sw in switches.items():
            for i in sw.outputs:
                out = node.outputs[i]
                out.type = ir.TensorType(F16)
                half.add(out)
            self.fix_attributes(node, sw)
        for node, sw in switches.items():
            graph = node.graph
            assert graph is not None
            for i in sorted(sw.inputs):
                v = node.inputs[i]
                if v is None or v in half or v.dtype == F16:
                    continue
                if v.is_initializer() and v.const_value is not None and not v.is_graph_input():
                    in_place = not v.is_graph_output() and all(
                        u in switches and idx in switches[u].inputs for u, idx in v.uses()
                    )
                    new = self.half_initializer(v, in_place)
                    self.weights.append((v.name or "", node_label(node), i, int(v.const_value.size)))
                else:
                    new = self.cast_to(v, F16, graph)
                if new is not v:
                    node.replace_input_with(i, new)
        for v in half:  # float16 tensors read where float32 is expected
            for user, idx in list(v.uses()):
                if user in switches and idx in switches[user].inputs:
                    continue
                assert user.graph is not None
                user.replace_input_with(idx, self.cast_to(v, F32, user.graph))
        for graph in _all_graphs(self.model.graph):
            for k, out in enumerate(list(graph.outputs)):
                if out in half:
                    back = self.cast_to(out, F32, graph)
                    original = out.name
                    out.name = self.names(f"{original}_fp16")
                    back.name = original
                    graph.outputs[k] = back

    def weights_only(self, convert: set[str]) -> None:
        for graph in _all_graphs(self.model.graph):
            for name, v in list(graph.initializers.items()):
                tensor = v.const_value
                if tensor is None or v.dtype != F32 or v.is_graph_input() or tensor.size < MIN_WEIGHT_ELEMENTS:
                    continue
                users = [(u, i) for u, i in v.uses() if node_label(u) in convert]
                if not users:
                    continue
                hname = self.names(f"{name}_fp16")
                h = ir.Value(name=hname, type=ir.TensorType(F16), shape=v.shape,
                             const_value=ir.tensor(self.counts.add(tensor.numpy()), name=hname))
                graph.register_initializer(h)
                back = self.cast_to(h, F32, graph)
                back.name = self.names(f"{name}_fp32")
                for u, i in users:
                    u.replace_input_with(i, back)
                    self.weights.append((name, node_label(u), i, int(tensor.size)))


def _convert(model: Model, config: Float16, convert: set[str]) -> tuple[ir.Model, _Writer, dict[ir.Node, _Switch]]:
    clone = model.ir.clone()
    writer = _Writer(clone)
    switches: dict[ir.Node, _Switch] = {}
    if config.weights_only:
        writer.weights_only(convert)
    else:
        switches = _switches(_all_nodes(clone.graph), convert, dict(clone.opset_imports))
        writer.full(switches)
    common_passes.RemoveUnusedNodesPass()(clone)
    common_passes.TopologicalSortPass()(clone)
    clone.metadata_props["quantscope.method"] = config.method
    return clone, writer, switches


# -- ONNX Runtime's view -------------------------------------------------------------------
def _proto_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _proto_nodes(g)


def _ort_float32_nodes(converted: ir.Model, labels: set[str]) -> set[str]:
    """Converted nodes that ONNX Runtime's CPU provider runs in float32 between its own Casts."""
    by_output = {
        out.name: node_label(n)
        for n in ir.traversal.RecursiveGraphIterator(converted.graph)
        if node_label(n) in labels
        for out in n.outputs
        if out.name
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        make_session(Model(ir=converted), optimization="none", optimized_model_path=str(path))
        proto = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    for node in _proto_nodes(proto.graph):
        if node.op_type == "Cast":
            continue
        if any(name.startswith(ORT_CAST_PREFIX) for name in [*node.input, *node.output]):
            for out in node.output:
                label = by_output.get(out.removeprefix(ORT_CAST_PREFIX))
                if label is not None:
                    found.add(label)
    return found


# -- the method ----------------------------------------------------------------------------
@register(Float16)
class Float16Method:
    """float16 weights and compute (or float16 storage only, with ``weights_only``)."""

    def prepare(self, model: Model, config: MethodConfig) -> Model:
        prepared, _ = prepare(model)
        return prepared

    def tensors_to_observe(self, model: Model, config: MethodConfig) -> list[str]:
        return []  # data-free

    def plan(self, model: Model, config: MethodConfig, stats: TensorStats | None) -> QuantPlan:
        assert isinstance(config, Float16)
        nodes = _all_nodes(model.ir.graph)
        excluded = config.exclude.resolve((node_label(n), n.op_type) for n in nodes) if config.exclude else {}
        reasons: dict[str, str] = {}
        for node in nodes:
            label = node_label(node)
            if label in excluded:
                reasons[label] = f"excluded by {excluded[label]}"
            elif node.op_type in config.block_ops:
                why = BLOCK_REASONS.get(node.op_type, "listed in block_ops")
                reasons[label] = f"{node.op_type} is in the float16 block list ({why}); kept float32 between Casts"
        opsets = dict(model.ir.opset_imports)
        convert = {node_label(n) for n in nodes} - set(reasons)
        if config.weights_only:
            return self._plan_weights_only(model, config, nodes, convert, reasons)
        for node in nodes:
            label = node_label(node)
            if label in convert:
                params = _float_params(node, opsets)
                if isinstance(params, str):
                    reasons[label] = params
        convert -= set(reasons)
        ort_failures: list[str] = []
        for _ in range(50):  # drop the nodes ONNX Runtime cannot load in float16, one by one
            converted, writer, switches = _convert(model, config, convert)
            converted_labels = {node_label(n) for n in switches}
            if not converted_labels:
                break
            try:
                on_float32 = _ort_float32_nodes(converted, converted_labels)
                break
            except RuntimeFailure as exc:
                match = re.search(r"node with name '([^']*)'", str(exc))
                if match is None or match.group(1) not in converted_labels:
                    raise UnsupportedModelError(
                        f"ONNX Runtime cannot load the float16 model: {exc}. Exclude the node it names "
                        "(exclude=NodeSelector(names=[...]) / --exclude-name) or use weights_only=True."
                    ) from exc
                label = match.group(1)
                reasons[label] = f"ONNX Runtime's CPU provider cannot run it in float16 ({exc}); kept float32"
                ort_failures.append(label)
                convert.discard(label)
        else:
            raise UnsupportedModelError(
                f"ONNX Runtime refused {len(ort_failures)} float16 nodes one after another "
                f"({', '.join(ort_failures[:5])}, ...); use weights_only=True for this model"
            )
        if not converted_labels:
            raise UnsupportedModelError(
                "float16 found no float32 node to convert in this model: "
                + "; ".join(sorted(set(reasons.values()))[:5])
                + ". Nothing was written."
            )
        decisions: dict[str, NodeDecision] = {}
        for node in nodes:
            label = node_label(node)
            if label in converted_labels:
                where = (
                    "ONNX Runtime's CPU provider runs it in float32 between Casts it inserts"
                    if label in on_float32
                    else "ONNX Runtime's CPU provider runs it in float16"
                )
                decisions[label] = NodeDecision(node=label, op_type=node.op_type, action="quantized",
                                                reason=f"float16 compute; {where}")
            else:
                decisions[label] = NodeDecision(
                    node=label, op_type=node.op_type, action="float",
                    reason=reasons.get(
                        label, "reads float32 tensors from float32 producers only (shape, comparison); unchanged"
                    ),
                )
        warnings = self._warnings(writer)
        slow = Counter(d.op_type for d in decisions.values() if d.node in on_float32)
        native = Counter(
            d.op_type for d in decisions.values() if d.action == "quantized" and d.node not in on_float32
        )
        if slow:
            warnings.append(
                f"ONNX Runtime's CPU provider has no float16 kernel for {sum(slow.values())} of "
                f"{len(converted_labels)} converted node(s) ({_top(slow)}); it runs them in float32 "
                "between Casts it inserts: expect no speed-up on this CPU (measured on x86 AVX2: MiniLM "
                "1.05x, PP-OCR cls 1.17x the float latency); weights_only=True gives the same file size "
                "at float32 speed"
            )
        thresholds = sorted({d.op_type for d in decisions.values()
                             if d.action == "quantized" and d.op_type in THRESHOLD_OPS})
        if thresholds:
            warnings.append(
                f"float16 compute feeds thresholding op(s) ({', '.join(thresholds)}): rounding can flip "
                "their outputs (detections, masks, argmax ties); measure on your data"
            )
        n_sub = sum(1 for n in nodes if n.graph is not model.ir.graph)
        notes = [*model.notes, FULL_NOTE]
        if n_sub:
            notes.append(f"{n_sub} node(s) inside If/Loop/Scan bodies were decided like the others")
        return self._finish(model, config, decisions, writer, warnings, notes, {
            "mode": "full",
            "ort_cpu": {"float16_kernels": dict(native.most_common()),
                        "float32_between_casts": dict(slow.most_common()),
                        "refused_by_runtime": ort_failures},
        })

    def _plan_weights_only(self, model: Model, config: Float16, nodes: list[ir.Node],
                           convert: set[str], reasons: dict[str, str]) -> QuantPlan:
        _, writer, _ = _convert(model, config, convert)
        per_node: dict[str, list[str]] = {}
        for tensor, node, _, _ in writer.weights:
            per_node.setdefault(node, []).append(tensor)
        if not per_node:
            raise UnsupportedModelError(
                f"float16 --weights-only found no float32 weight of >= {MIN_WEIGHT_ELEMENTS} elements "
                "outside excluded/blocked nodes. Nothing was written."
            )
        decisions: dict[str, NodeDecision] = {}
        for node in nodes:
            label = node_label(node)
            if label in per_node:
                tensors = ", ".join(per_node[label])
                decisions[label] = NodeDecision(
                    node=label, op_type=node.op_type, action="quantized",
                    reason=f"float16 weight(s) {tensors} cast to float32 at load; computes in float32",
                )
            else:
                decisions[label] = NodeDecision(
                    node=label, op_type=node.op_type, action="float",
                    reason=reasons.get(
                        label, f"no float32 weight of >= {MIN_WEIGHT_ELEMENTS} elements; computes in float32"
                    ),
                )
        return self._finish(model, config, decisions, writer, self._warnings(writer),
                            [*model.notes, WEIGHTS_ONLY_NOTE], {"mode": "weights-only"})

    @staticmethod
    def _warnings(writer: _Writer) -> list[str]:
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

    @staticmethod
    def _finish(model: Model, config: Float16, decisions: dict[str, NodeDecision], writer: _Writer,
                warnings: list[str], notes: list[str], extra: dict[str, object]) -> QuantPlan:
        weights = tuple(
            WeightQuant(tensor=t, node=n, dtype="float16", axis=None, bits=16, channels=1, input_index=i)
            for t, n, i, _ in writer.weights
        )
        sizes = {t: size for t, _, _, size in writer.weights}
        f32 = 4 * sum(sizes.values())
        extra = {**extra, "weight_bytes": {"float": f32, "float16": f32 // 2, "ratio": 0.5 if f32 else 1.0},
                 "clamped_values": {"large": writer.counts.clamped_large, "tiny": writer.counts.raised_tiny}}
        order = [node_label(n) for n in _all_nodes(model.ir.graph)]
        logger.info("float16 (%s): %d node(s) converted, %d weight(s), %d bytes -> %d",
                    extra["mode"], sum(d.action == "quantized" for d in decisions.values()),
                    len(sizes), f32, f32 // 2)
        return QuantPlan(
            method=config.method,
            decisions=tuple(decisions[label] for label in order if label in decisions),
            weights=weights,
            notes=tuple(notes),
            warnings=tuple(warnings),
            extra=extra,
        )

    def apply(self, model: Model, config: MethodConfig, plan: QuantPlan) -> Model:
        assert isinstance(config, Float16)
        convert = {d.node for d in plan.decisions if d.action == "quantized"}
        converted, _, _ = _convert(model, config, convert)
        return Model(ir=converted, path=None, fingerprint="", notes=model.notes)


def _top(counts: Counter[str], n: int = 6) -> str:
    return ", ".join(f"{op} x{k}" for op, k in counts.most_common(n))
