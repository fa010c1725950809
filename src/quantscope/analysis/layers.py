"""Per-layer error: SQNR of every quantized tensor against its float counterpart, worst first.

Like the TFLite quantization debugger: the float and the quantized model run on the same
inputs with their intermediate tensors exposed, and tensors are matched by name. quantscope's
quantizers keep the float tensor names: an activation ``t`` that gets a Q/DQ pair is read
downstream as ``t_dequantized`` (what the integer kernels see), while weight-only and codebook
methods leave ``t`` itself as the output of the rewritten node. Both graphs run as written
(no fusion), so each tensor holds exactly what the model file defines. Tensors inside If/Loop/Scan
bodies are compared too (stacked over the iterations of a Loop/Scan; an If branch that did not
run on a sample is skipped), with the labels the methods give body nodes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from quantscope.analysis._capture import Capture, typed
from quantscope.analysis.evaldata import checked_eval_data
from quantscope.analysis.results import LayerError
from quantscope.data import Dataset
from quantscope.graph.queries import node_label
from quantscope.graph.subgraphs import SubgraphNamesPass
from quantscope.io import Model
from quantscope.plan import QuantPlan
from quantscope.runtime import exposing

logger = logging.getLogger(__name__)

DEQUANTIZED_SUFFIX = "_dequantized"


def layer_errors(
    float_model: Model,
    quantized: Model,
    data: Dataset,
    *,
    plan: QuantPlan | None = None,
    samples: int = 32,
    batch_size: int = 16,
    seed: int = 0,
) -> list[LayerError]:
    """SQNR (dB) of each quantized tensor of ``quantized`` against ``float_model``, worst first.

    A float tensor ``t`` is compared with ``t_dequantized`` when the quantized model has a
    DequantizeLinear output of that name; otherwise with ``t`` itself when ``plan`` says its
    producer was quantized or fused (without a plan: every tensor both models share). Signal
    and noise are summed over ``samples`` samples (a seeded subset) before the ratio is taken.
    """
    f_model = labelled(typed(float_model))
    q_model = typed(quantized)
    pairs = match_tensors(f_model, q_model, plan)
    if not pairs:
        return []
    checked_eval_data(float_model, data)  # NaN/inf (a no-op for data an analysis already checked)
    subset = data.take(samples, seed=seed).bind(float_model.inputs)
    f_run = BodyCapture(f_model, [f for f, _, _ in pairs])
    q_run = BodyCapture(q_model, [q for _, q, _ in pairs])
    graph_inputs = {v.name for v in float_model.ir.graph.inputs if v.name}
    f_have, q_have = set(f_run.names) | graph_inputs, set(q_run.names)
    pairs = [p for p in pairs if p[0] in f_have and p[1] in q_have]
    signal = dict.fromkeys((f for f, _, _ in pairs), 0.0)
    noise = dict.fromkeys((f for f, _, _ in pairs), 0.0)
    skipped: set[str] = set()
    seen: set[str] = set()
    for batch in subset.batches(batch_size):
        f_out = {**batch.inputs, **f_run(batch.inputs)}  # a graph input is its own float value
        q_out = q_run(batch.inputs)
        for f_name, q_name, _ in pairs:
            ref, test = f_out[f_name], q_out[q_name]
            if ref.shape != test.shape or ref.dtype.kind != "f" or test.dtype.kind != "f":
                skipped.add(f_name)
                continue
            if ref.size == 0:
                continue  # inside an If branch that did not run
            seen.add(f_name)
            r = ref.astype(np.float64)
            signal[f_name] += float(np.sum(r * r))
            noise[f_name] += float(np.sum(np.square(r - test.astype(np.float64))))
    if skipped:
        logger.debug("per-layer error skipped %d tensor(s) whose shapes or types differ: %s",
                     len(skipped), sorted(skipped)[:5])
    out = [
        LayerError(tensor=f_name, node=node, op_type=op, sqnr_db=_ratio_db(signal[f_name], noise[f_name]))
        for f_name, _, (node, op) in pairs
        if f_name not in skipped and f_name in seen
    ]
    # worst first; ties (e.g. identical tensors at +inf) keep graph order
    return sorted(out, key=lambda e: e.sqnr_db if not math.isnan(e.sqnr_db) else -math.inf)


def match_tensors(
    float_model: Model, quantized: Model, plan: QuantPlan | None
) -> list[tuple[str, str, tuple[str, str]]]:
    """``(float tensor, quantized tensor, (float node, op type))`` for every tensor to compare."""
    q_values = _values(quantized.ir.graph)
    touched = None
    if plan is not None:
        touched = {d.node for d in plan.decisions if d.action in ("quantized", "fused")}
    pairs: list[tuple[str, str, tuple[str, str]]] = []
    for inp in float_model.ir.graph.inputs:  # the model's own input, when it is quantized
        dq = q_values.get(f"{inp.name}{DEQUANTIZED_SUFFIX}")
        if inp.name and dq is not None and (p := dq.producer()) is not None and p.op_type == "DequantizeLinear":
            pairs.append((inp.name, dq.name or "", (f"input:{inp.name}", "Input")))
    for node in ir.traversal.RecursiveGraphIterator(float_model.ir.graph):
        label = node_label(node)
        for out in node.outputs:
            name = out.name
            if not name or out.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
                continue
            dq = q_values.get(name + DEQUANTIZED_SUFFIX)
            if dq is not None and (p := dq.producer()) is not None and p.op_type == "DequantizeLinear":
                pairs.append((name, dq.name or "", (label, node.op_type)))
            elif name in q_values and (touched is None or label in touched) and not _is_constant(q_values[name]):
                pairs.append((name, name, (label, node.op_type)))
    return pairs


class BodyCapture:
    """A :class:`Capture` whose tensors may sit inside If/Loop/Scan bodies, keyed by tensor name."""

    def __init__(self, model: Model, names: Iterable[str]) -> None:
        exposed, self.carried = exposing(model, names)
        self.capture = Capture(exposed, [])
        self.names = [self.carried.get(n, n) for n in self.capture.names]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {self.carried.get(k, k): v for k, v in self.capture(feeds).items()}


def labelled(model: Model) -> Model:
    """``model`` with the labels methods give body nodes (``holder/attribute/node``); a copy when it has bodies."""
    if not any(True for _ in model.ir.graph.subgraphs()):
        return model
    clone = model.ir.clone()
    SubgraphNamesPass()(clone)
    return Model(ir=clone, path=model.path, fingerprint=model.fingerprint, notes=model.notes)


def _values(graph: ir.Graph) -> dict[str, ir.Value]:
    out: dict[str, ir.Value] = {}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for v in node.outputs:
            if v.name:
                out[v.name] = v
    return out


def _is_constant(value: ir.Value) -> bool:
    seen: set[int] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.is_graph_input():
            return False
        producer = v.producer()
        if producer is None:
            continue  # an initializer
        stack.extend(i for i in producer.inputs if i is not None)
    return True


def _ratio_db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    ratio = signal / noise  # 0 when the noise overflowed to inf, nan when the signal did too
    if ratio == 0.0:
        return -math.inf
    return 10.0 * math.log10(ratio) if math.isfinite(ratio) else math.nan


def worst_nodes(errors: Iterable[LayerError], quantized_nodes: Iterable[str], float_model: Model) -> list[str]:
    """Quantized nodes ranked by the error they add themselves, the most first.

    Raw SQNR grows worse along the graph (error accumulates), so the last layers always look
    worst. A node's own contribution is the relative noise power of its output (the node's own
    tensor, or the first measured one downstream through fused and data-movement nodes) minus
    that of its input (the nearest measured tensor upstream; an unmeasured float input is
    exact), with relative noise power ``10 ** (-SQNR / 10)``. Nodes without a measured output
    come last, in graph order.
    """
    sqnr = {e.tensor: min(e.sqnr_db, _CAP) if not math.isnan(e.sqnr_db) else -_CAP for e in errors}
    graph = labelled(float_model).ir.graph
    quantized = set(quantized_nodes)
    scored: list[tuple[float, int, str]] = []
    unscored: list[str] = []
    for index, node in enumerate(ir.traversal.RecursiveGraphIterator(graph)):
        label = node_label(node)
        if label not in quantized:
            continue
        out = _downstream_sqnr(node, sqnr)
        if out is None:
            unscored.append(label)
            continue
        ins = [_upstream_sqnr(v, sqnr) for v in node.inputs if v is not None and not _is_constant(v)]
        before = min(ins) if ins else _CAP
        scored.append((_noise(out) - _noise(before), index, label))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [label for _, _, label in scored] + unscored


_CAP = 100.0


def _noise(sqnr_db: float) -> float:
    return 10.0 ** (-sqnr_db / 10.0)


def _upstream_sqnr(value: ir.Value, sqnr: dict[str, float]) -> float:
    for _ in range(16):
        if value.name in sqnr:
            return sqnr[value.name or ""]
        producer = value.producer()
        if producer is None:
            return _CAP  # a graph input (or an initializer): exact unless measured
        ins = [v for v in producer.inputs if v is not None and not _is_constant(v)]
        if not ins:
            return _CAP
        value = ins[0]
    return _CAP


def _downstream_sqnr(node: ir.Node, sqnr: dict[str, float]) -> float | None:
    for _ in range(4):
        out = node.outputs[0] if node.outputs else None
        if out is None:
            return None
        if out.name in sqnr:
            return sqnr[out.name or ""]
        users = list(out.consumers())
        if len(users) != 1:
            return None
        node = users[0]
    return None
