"""What a quantized tensor's float consumers make of it: the transfer to the next quantized tensors.

A Conv's output is often quantized and then, in float, scaled by a constant, shifted, and passed
through an activation (``x * HardSigmoid(x)``, ``Relu``, ``Clip``) before the next quantized
tensor. The error that counts is the one at the end of that chain, not the tensor's own: values
a HardSwish maps to 0 can be clipped for free, so a range that spends half its levels on them
wastes them. For every observed tensor whose consumers are all elementwise with scalar constants
up to other observed tensors (or model outputs), :func:`transfers` tabulates that function on a
grid over the tensor's observed range; range selection then judges each candidate by the error
it causes there (:func:`quantscope.numerics.ranges.transfer_error`).

Pure statistics of the model and the observers: a :class:`Transfer` is a grid and values, no graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper

from quantscope.io import Model
from quantscope.numerics.ranges import Transfer
from quantscope.numerics.tensor_observer import TensorObserver

logger = logging.getLogger(__name__)

ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh",
    "LeakyRelu", "Neg", "Identity",
})
"""Float ops a transfer may pass through: elementwise, and with scalar constants only."""

GRID_POINTS = 4097
MAX_NODES = 24


def transfers(model: Model, names: Iterable[str], observers: Mapping[str, TensorObserver]) -> dict[str, Transfer]:
    """The transfer of every observed tensor in ``names`` whose float consumers allow one.

    A tensor read directly by a non-elementwise op (a Conv, a MatMul), or through an op with a
    non-scalar operand, gets none (its own error is what counts there).
    """
    targets = {n for n in names if n in observers}
    proto = model.to_proto()
    graph = proto.graph
    scalars = _scalar_constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    opset = [o for o in proto.opset_import]
    found: dict[str, Transfer] = {}
    for name in sorted(targets):
        chain = _chain(name, targets, outputs, consumers, scalars)
        if chain is None:
            continue
        nodes, frontier = chain
        obs = observers[name]
        try:
            found[name] = _tabulate(name, nodes, frontier, scalars, opset, obs)
        except Exception as exc:
            logger.debug("no consumer transfer for %s: %s", name, exc)
    if found:
        logger.info("consumer transfers for %d of %d calibrated tensors", len(found), len(targets))
    return found


def _scalar_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    out = {t.name: t for t in graph.initializer if int(np.prod(t.dims, dtype=np.int64)) == 1}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = node.attribute[0].t
            if int(np.prod(t.dims, dtype=np.int64)) == 1:
                copy = onnx.TensorProto()
                copy.CopyFrom(t)
                copy.name = node.output[0]
                out[node.output[0]] = copy
    return out


def _chain(
    start: str, targets: set[str], outputs: set[str], consumers: Mapping[str, list[onnx.NodeProto]],
    scalars: Mapping[str, onnx.TensorProto],
) -> tuple[list[onnx.NodeProto], list[str]] | None:
    """The float elementwise nodes from ``start`` to the next observed tensors, or None."""
    reached = {start}
    nodes: list[onnx.NodeProto] = []
    frontier: list[str] = []
    queue = [start]
    while queue:
        value = queue.pop(0)
        if value != start and (value in targets or value in outputs):
            frontier.append(value)
            if value in targets:
                continue
        for node in consumers.get(value, []):
            if any(node is n for n in nodes):
                continue
            if node.op_type not in ELEMENTWISE or len(nodes) >= MAX_NODES:
                return None
            if any(i and i not in reached and i not in scalars for i in node.input):
                return None  # another activation or a non-scalar constant joins in
            nodes.append(node)
            for out in node.output:
                reached.add(out)
                queue.append(out)
    if not frontier or not nodes:
        return None
    return nodes, list(dict.fromkeys(frontier))


def _tabulate(
    name: str, nodes: list[onnx.NodeProto], frontier: list[str], scalars: Mapping[str, onnx.TensorProto],
    opset: list[onnx.OperatorSetIdProto], obs: TensorObserver,
) -> Transfer:
    import onnxruntime as ort

    used = {i for n in nodes for i in n.input if i in scalars}
    graph = helper.make_graph(
        nodes,
        "transfer",
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info(f, onnx.TensorProto.FLOAT, None) for f in frontier],
        initializer=[scalars[i] for i in sorted(used)],
    )
    sub = helper.make_model(graph, opset_imports=opset)
    lo, hi = min(obs.min, 0.0), max(obs.max, 0.0)
    grid = np.unique(np.concatenate([np.linspace(lo, hi, GRID_POINTS), [0.0]])).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(frontier, {name: grid})
    table = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
    if table.shape[1] != grid.size or not np.all(np.isfinite(table)):
        raise ValueError("the chain does not map the grid elementwise")
    return Transfer(grid=grid.astype(np.float64), values=table)
