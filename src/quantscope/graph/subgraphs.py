"""If/Loop/Scan bodies: who holds them, unique names across them, and exposing their tensors.

Methods quantize inside bodies the way they do in the main graph; three things differ:

* names: two branches of an ``If`` may reuse a value or node name, while plans, statistics and
  exclusions key tensors and nodes by name. :class:`SubgraphNamesPass` gives every body value a
  name unique in the model and every body node a label that says where it sits
  (``If_0/then_branch/MatMul``);
* weights: body initializers are lifted to the main graph (onnx-ir's
  ``LiftSubgraphInitializersToMainGraphPass``) so that a replaced float weight is dropped by the
  usual dead-code pass;
* calibration: ONNX Runtime returns only main-graph outputs. :func:`expose` threads a body
  tensor out through its holders: an ``If`` gets an extra output (the other branch returns an
  empty tensor of the same type, shape ``[0]``, which observers skip), a ``Loop``/``Scan`` an
  extra scan output (the tensor of every iteration, stacked).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from quantscope.graph.build import NameAllocator
from quantscope.graph.queries import node_label

__all__ = ["SubgraphNamesPass", "bodies", "body_passes", "expose", "graph_of"]

SCAN_LIKE = ("Loop", "Scan")


def bodies(node: ir.Node) -> Iterator[tuple[str, ir.Graph]]:
    """The (attribute name, graph) of every body ``node`` holds."""
    for name, attr in node.attributes.items():
        if attr.type == ir.AttributeType.GRAPH:
            yield name, attr.as_graph()
        elif attr.type == ir.AttributeType.GRAPHS:
            for i, g in enumerate(attr.as_graphs()):
                yield f"{name}[{i}]", g


def _holders(graph: ir.Graph) -> dict[int, tuple[ir.Node, str]]:
    """id(body) → (the node holding it, its attribute name), over all nesting levels."""
    found: dict[int, tuple[ir.Node, str]] = {}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for name, body in bodies(node):
            found[id(body)] = (node, name)
    return found


def graph_of(value: ir.Value) -> ir.Graph | None:
    """The graph a value is defined in (its producer's, or the graph it is an input of)."""
    producer = value.producer()
    return producer.graph if producer is not None else value.graph


class SubgraphNamesPass(ir.passes.InPlacePass):
    """Unique value names across all bodies, and body node names prefixed with their place.

    The main graph is left as it is (its labels stay those users know).
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        main = model.graph
        holders = _holders(main)
        if not holders:
            return ir.passes.PassResult(model, modified=False)
        names = NameAllocator(main)
        seen: set[str] = {v.name for v in main.inputs if v.name} | set(main.initializers)
        seen |= {out.name for node in main for out in node.outputs if out.name}
        node_names = {node.name for node in main if node.name}
        changed = False
        for body in main.subgraphs():
            holder, attr = holders[id(body)]
            prefix = f"{node_label(holder)}/{attr}"  # outer bodies come first: a nested holder is renamed already
            values = [*body.inputs, *body.initializers.values(), *(o for n in body for o in n.outputs)]
            for value in values:
                if not value.name or value.name in seen:
                    value.name = names(value.name or f"{prefix}/v")
                    changed = True
                seen.add(value.name)
            for node in body:
                label = f"{prefix}/{node.name or node.op_type}"
                base, i = label, 1
                while label in node_names:
                    label, i = f"{base}_{i}", i + 1
                node_names.add(label)
                if node.name != label:
                    node.name, changed = label, True
        return ir.passes.PassResult(model, modified=changed)


def body_passes() -> list[ir.passes.PassBase]:
    """Passes that ready If/Loop/Scan bodies for quantization (run after ``prepare_passes``)."""
    return [common_passes.LiftSubgraphInitializersToMainGraphPass(), SubgraphNamesPass()]


def _rank(value: ir.Value) -> int | None:
    return len(value.shape) if value.shape is not None else None


def _unknown_dims(rank: int | None) -> ir.Shape | None:
    return ir.Shape([None] * rank) if rank is not None else None


def _empty(names: NameAllocator, like: ir.Value) -> ir.Node:
    """A Constant holding an empty tensor of ``like``'s element type and rank (every dimension 0)."""
    dtype = like.dtype or ir.DataType.FLOAT
    shape = (0,) * (_rank(like) or 1)
    tensor = ir.tensor(np.zeros(shape, dtype=dtype.numpy()), dtype=dtype, name=names("empty"))
    node = ir.Node("", "Constant", [], [ir.AttrTensor("value", tensor)], name=names("empty_Constant"))
    node.outputs[0].name = names(f"{like.name}_absent")
    node.outputs[0].type = ir.TensorType(dtype)
    node.outputs[0].shape = ir.Shape(shape)
    return node


def _body_output(names: NameAllocator, body: ir.Graph, value: ir.Value) -> ir.Value:
    """An Identity of ``value`` appended to ``body``'s outputs (a value may be a body output only once)."""
    ident = ir.Node("", "Identity", [value], name=names(f"{value.name}_expose"))
    out = ident.outputs[0]
    out.name = names(f"{value.name}_exposed")
    out.type, out.shape = value.type, _unknown_dims(_rank(value))
    body.append(ident)
    body.outputs.append(out)
    return out


def _chain(main: ir.Graph, value: ir.Value, holders: dict[int, tuple[ir.Node, str]]) -> list[tuple[ir.Node, str]] | None:
    """The holders from ``value``'s graph out to the main graph, innermost first; None when it
    cannot be threaded out (an unknown holder, or an If inside a Loop/Scan: the branch taken may
    change between iterations, and a Loop/Scan stacks only outputs of one shape)."""
    chain: list[tuple[ir.Node, str]] = []
    graph = graph_of(value)
    while graph is not None and graph is not main:
        found = holders.get(id(graph))
        if found is None or found[0].op_type not in ("If", *SCAN_LIKE):
            return None
        if found[0].op_type in SCAN_LIKE and any(h.op_type == "If" for h, _ in chain):
            return None
        chain.append(found)
        graph = found[0].graph
    return chain if graph is main else None


def _thread_out(main: ir.Graph, names: NameAllocator, value: ir.Value, holders: dict[int, tuple[ir.Node, str]]) -> ir.Value | None:
    """A main-graph value carrying ``value`` (stacked per iteration through Loop/Scan), or None."""
    chain = _chain(main, value, holders)
    if chain is None:
        return None
    for holder, attr in chain:
        graph = graph_of(value)
        assert graph is not None
        _body_output(names, graph, value)
        if holder.op_type == "If":  # the other branch returns an empty tensor in its place
            other = holder.attributes["else_branch" if attr == "then_branch" else "then_branch"].as_graph()
            empty = _empty(names, value)
            other.append(empty)
            other.outputs.append(empty.outputs[0])
        elif holder.op_type == "Scan":  # a new scan output, stacked on axis 0
            for key in ("scan_output_axes", "scan_output_directions"):
                if key in holder.attributes:
                    ints = list(holder.attributes[key].as_ints())
                    holder.attributes[key] = ir.AttrInt64s(key, [*ints, 0])
        rank = _rank(value)
        holder.resize_outputs(len(holder.outputs) + 1)
        new = holder.outputs[-1]
        new.name, new.type = names(f"{value.name}_out"), value.type
        new.shape = _unknown_dims(rank if holder.op_type == "If" or rank is None else rank + 1)
        value = new
    return value


def expose(model: ir.Model, tensors: Iterable[str]) -> dict[str, str]:
    """Make the named tensors (main graph or bodies) outputs of ``model`` (edited in place).

    Returns {graph output name: tensor name} for every tensor exposed; tensors without a
    known element type, graph inputs and unknown names are skipped.
    """
    main = model.graph
    names = NameAllocator(main)
    holders = _holders(main)
    by_name: dict[str, ir.Value] = {}
    for node in ir.traversal.RecursiveGraphIterator(main):
        for out in node.outputs:
            if out.name:
                by_name[out.name] = out
    for body in main.subgraphs():
        for v in body.inputs:
            if v.name:
                by_name.setdefault(v.name, v)
    existing = {v.name: v.name for v in main.outputs if v.name}
    exposed: dict[str, str] = {}
    for name in tensors:
        value = by_name.get(name)
        if value is None or value.dtype is None or (value.is_graph_input() and graph_of(value) is main):
            continue
        if name in existing:
            exposed[name] = name
            continue
        if graph_of(value) is main:
            main.outputs.append(value)
            exposed[name] = name
            existing[name] = name
            continue
        out = _thread_out(main, names, value, holders)
        if out is not None:
            main.outputs.append(out)
            exposed[out.name or ""] = name
    return exposed
