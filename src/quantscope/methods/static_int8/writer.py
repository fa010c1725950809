"""Writing static-int8: int8 weights (and int32 biases) behind DequantizeLinear, Q/DQ pairs on activations."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx_ir as ir

from quantscope.config import StaticInt8
from quantscope.graph.build import NameAllocator
from quantscope.graph.qdq import (
    gather_from_quantized_table,
    insert_qdq,
    make_input_integer,
    replace_input_with_dequantized,
)
from quantscope.graph.queries import const_array, nodes_by_label
from quantscope.graph.subgraphs import graph_of
from quantscope.methods.static_int8.gates import write_integer_hardsigmoid, write_scalar_operand
from quantscope.methods.static_int8.rules import scalar_shift
from quantscope.numerics.affine import QParams, quantize_bias
from quantscope.plan import QuantPlan, TensorQuant, WeightQuant

logger = logging.getLogger(__name__)

QuantizedWeights = dict[tuple[str, int], tuple[np.ndarray, QParams]]
"""The int8 weights of a plan and their parameters, by (node, input index)."""


def weight_key(wq: WeightQuant) -> tuple[str, int]:
    return (wq.node, wq.input_index)


def qparams_of(t: TensorQuant) -> QParams:
    dtype = np.dtype(t.dtype)
    return QParams(
        scale=np.asarray(t.scale, dtype=np.float32), zero_point=np.asarray(t.zero_point, dtype=dtype),
        dtype=dtype, axis=None,
    )


def _qp_meta(qp: QParams) -> dict[str, object]:
    return {"scale": float(qp.scale), "zero_point": int(qp.zero_point), "dtype": np.dtype(qp.dtype).name}


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    """Inputs and node outputs of ``graph`` and of its If/Loop/Scan bodies, by name."""
    out: dict[str, ir.Value] = {v.name: v for g in (graph, *graph.subgraphs()) for v in g.inputs if v.name}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for v in node.outputs:
            if v.name:
                out[v.name] = v
    return out


def _home(value: ir.Value) -> ir.Graph:
    """The graph (main or a body) that defines ``value``."""
    graph = graph_of(value)
    assert graph is not None
    return graph


def write(clone: ir.Model, config: StaticInt8, plan: QuantPlan, weights: QuantizedWeights) -> dict[str, str]:
    """Edit ``clone`` as ``plan`` says; the metadata to record (integer I/O parameters)."""
    graph = clone.graph
    names = NameAllocator(graph)
    values = _values_by_name(graph)
    nodes = nodes_by_label(graph)
    act_qp = {t.tensor: qparams_of(t) for t in plan.activations}
    io_meta: dict[str, dict[str, object]] = {}
    # weights and biases first: they need the input scale, read from the plan
    caches: dict[int, dict[tuple[str, str], ir.Value]] = {}  # one per graph: a body's DQ is not visible outside
    for wq in plan.weights:
        node = nodes[wq.node]
        where = node.graph
        assert where is not None
        cache = caches.setdefault(id(where), {})
        w_val = node.inputs[wq.input_index]
        assert w_val is not None
        q, wqp = weights[weight_key(wq)]
        if node.op_type == "Gather":
            gather_from_quantized_table(where, names, node, q, wqp, w_val.name or "table")
            continue
        replace_input_with_dequantized(where, names, node, wq.input_index, q, wqp, w_val.name or "weight", cache)
        if node.op_type in ("Conv", "Gemm") and len(node.inputs) > 2 and node.inputs[2] is not None:
            b_val = node.inputs[2]
            b = const_array(b_val)
            x_name = node.inputs[0].name or ""
            if b is not None and b.ndim == 1 and x_name in act_qp and np.size(wqp.scale) in (1, b.shape[0]):
                w_scale = np.broadcast_to(wqp.scale, b.shape).astype(np.float32)
                qb, bqp = quantize_bias(b.astype(np.float32), act_qp[x_name].scale, w_scale)
                replace_input_with_dequantized(where, names, node, 2, qb, bqp, b_val.name or "bias")
    for t in plan.activations:
        if t.source.startswith("weight:"):
            continue  # the gathered rows of an int8 table: dequantized above
        value = values[t.tensor]
        qp = act_qp[t.tensor]
        home = _home(value)
        integer_io = config.integer_io and home is graph  # a body's inputs and outputs stay float
        if value.is_graph_input() and integer_io:
            make_input_integer(graph, names, value, qp)
            io_meta[t.tensor] = {"kind": "input", **_qp_meta(qp)}
            continue
        insert_qdq(home, names, value, qp, integer_output=integer_io)
        if config.integer_io and any(o.name == t.tensor for o in graph.outputs):
            io_meta[t.tensor] = {"kind": "output", **_qp_meta(qp)}
    for d in plan.decisions:
        target = nodes.get(d.node)
        if d.action != "quantized" or target is None or target.graph is None:
            continue
        if d.op_type == "HardSigmoid":
            name = target.outputs[0].name or ""
            if name in act_qp and not write_integer_hardsigmoid(target.graph, names, target, act_qp[name]):
                logger.info("%s kept as DequantizeLinear → HardSigmoid → QuantizeLinear (float)", d.node)
        elif d.op_type == "Add" and scalar_shift(target) is not None:
            write_scalar_operand(target.graph, names, target, np.dtype(config.activation_dtype))
    if config.integer_io:
        float_outputs = [o.name for o in graph.outputs if o.dtype == ir.DataType.FLOAT]
        if float_outputs:
            logger.warning("integer_io: outputs %s stay float (produced by float ops)", float_outputs)
    return {"quantscope.integer_io": json.dumps(io_meta, sort_keys=True)} if io_meta else {}
