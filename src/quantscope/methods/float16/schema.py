"""Which inputs and outputs of a node may become float16, read from its ONNX schema."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx
import onnx_ir as ir

from quantscope.graph.queries import node_label

F32 = ir.DataType.FLOAT
CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")


@dataclass(frozen=True)
class Switch:
    """Which inputs and outputs of one converted node become float16."""

    inputs: frozenset[int]
    outputs: frozenset[int]


def all_nodes(graph: ir.Graph) -> list[ir.Node]:
    return list(ir.traversal.RecursiveGraphIterator(graph))


def all_graphs(graph: ir.Graph) -> list[ir.Graph]:
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


def float_params(node: ir.Node, opsets: dict[str, int]) -> dict[str, tuple[list[int], list[int]]] | str:
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


def switches(nodes: Iterable[ir.Node], convert: set[str], opsets: dict[str, int]) -> dict[ir.Node, Switch]:
    """The float16 inputs/outputs of every node in ``convert`` (nodes with nothing to switch drop out).

    Parameters bound to an output always switch. Parameters bound only to inputs (``Shape``,
    ``Equal``, ``ArgMax``) switch only when one of their inputs is already float16, so nothing
    casts a float32 tensor to float16 just to take its shape.
    """
    candidates: dict[ir.Node, dict[str, tuple[list[int], list[int]]]] = {}
    for node in nodes:
        if node_label(node) in convert:
            params = float_params(node, opsets)
            if isinstance(params, dict):
                candidates[node] = params
    half: set[ir.Value] = set()
    for node, params in candidates.items():
        for _, outs in params.values():
            half.update(node.outputs[i] for i in outs)
    result: dict[ir.Node, Switch] = {}
    for node, params in candidates.items():
        ins: set[int] = set()
        outs: set[int] = set()
        for p_ins, p_outs in params.values():
            if p_outs or any(node.inputs[i] in half for i in p_ins):
                ins.update(p_ins)
                outs.update(p_outs)
        if ins or outs:
            result[node] = Switch(frozenset(ins), frozenset(outs))
    return result
