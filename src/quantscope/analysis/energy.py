"""Estimated energy of one inference, from operation counts by precision and bytes moved.

The estimate multiplies what the graph does by what each operation costs on a reference chip.
It is a *model*, not a measurement: it tells how much the arithmetic and the weight traffic of
one variant cost relative to another, not what a given CPU draws from the wall.

The graph priced is the one ONNX Runtime runs: the model as its optimizer leaves it at the
default level (fusions, constant folding, casts it inserts), each node in the precision of the
kernel that runs it. A float16 model on a CPU without float16 kernels is therefore priced as
float32 (ONNX Runtime casts around those nodes), and codebook weights (cluster, ternary,
binary) as the float32 weights ONNX Runtime unpacks them into at load.

The per-operation table (:data:`HOROWITZ_2014`) is M. Horowitz, "Computing's energy problem
(and what we can do about it)", ISSCC 2014, 45 nm process, 0.9 V. The assumptions
(:data:`ASSUMPTIONS`) are written out so the report can show them beside the numbers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from quantscope.analysis._capture import typed
from quantscope.analysis.layers import BodyCapture
from quantscope.analysis.results import EnergyResult
from quantscope.errors import DataError, RuntimeFailure
from quantscope.io import Model
from quantscope.runtime import make_session, run, session_options
from quantscope.signals import temp_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules; memory rows are per 64-bit access."""

    name: str
    source: str
    pj: Mapping[str, float]


HOROWITZ_2014 = EnergyTable(
    name="horowitz-2014-45nm",
    source=(
        "M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
        "IEEE ISSCC 2014, pp. 10-14; 45 nm, 0.9 V"
    ),
    pj={
        "int8 add": 0.03,
        "int8 mul": 0.2,
        "int32 add": 0.1,
        "int32 mul": 3.1,
        "fp16 add": 0.4,
        "fp16 mul": 1.1,
        "fp32 add": 0.9,
        "fp32 mul": 3.7,
        "SRAM 8KB": 10.0,  # per 64-bit read
        "SRAM 32KB": 20.0,
        "SRAM 1MB": 100.0,
        "DRAM": 1300.0,  # per 64-bit access; the paper gives 1.3-2.6 nJ, we use the low end
    },
)

ACTIVATION_MEMORY = "SRAM 1MB"

ASSUMPTIONS = (
    "One inference is one sample (batch 1); counts come from the tensor shapes of a real run.",
    "The graph priced is the one ONNX Runtime executes on this machine: its optimizer's output at the "
    "default level (fused kernels, folded constants, the casts it inserts where a CPU has no kernel for "
    "a type), with blocked channel layouts (NCHWc) left out since they pad channels but do the same "
    "arithmetic. Each node is priced in the precision of the kernel that runs it: a float16 model on a "
    "CPU without float16 kernels is priced as float32.",
    "A multiply-accumulate (MAC) costs one multiply and one add: int8 MACs multiply in 8 bits and "
    "accumulate in 32 bits (int8 mul + int32 add); float16 and float32 MACs stay in their precision.",
    "MACs are counted for Conv, ConvTranspose, MatMul, Gemm and their integer forms (QLinearConv, "
    "QLinearMatMul, ConvInteger, MatMulInteger, QGemm, MatMulNBits, ...).",
    "Integer kernels (QLinearConv, QGemm, MatMulInteger, ...) run in int8; a Conv/MatMul/Gemm left "
    "between DequantizeLinear nodes runs in float32 (ONNX Runtime did not fuse it); one with float16 "
    "inputs runs in float16; anything else runs in float32, including weight-only formats whose weights "
    "are dequantized before the float multiply. MatMulNBits with accuracy_level 4 runs in int8.",
    "Element-wise ops cost one add (Add, Sub, Relu, pooling, reductions: per input element) or one "
    "multiply (Mul, Div, Sigmoid, Softmax, ...: per output element) in the precision they run in.",
    "Quantize/Dequantize of activations cost one float32 multiply and add per element "
    "(requantization); those of constant weights are folded at load time and cost nothing.",
    "Every parameter byte of the running graph is read once from DRAM per inference, at the low end of "
    "the paper's 1.3-2.6 nJ per 64 bits: weights ONNX Runtime unpacks or casts at load (codebooks, "
    "float16 without float16 kernels) count at their unpacked size.",
    f"Activations are read and written once per node from a 1 MB SRAM ({ACTIVATION_MEMORY}), "
    "in the width of the precision the node runs in; data-movement ops are free.",
    "Ops inside If/Loop/Scan bodies are not counted.",
)

MAC_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "QLinearConv", "QLinearMatMul", "ConvInteger",
    "MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits",
    "FusedConv", "FusedMatMul", "FusedGemm",
})
INTEGER_MAC_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
})
ADD_PER_INPUT = frozenset({
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceSum", "ReduceMean",
    "ReduceMax", "ReduceMin", "QLinearAveragePool", "QLinearGlobalAveragePool", "NhwcMaxPool",
})
ADD_PER_OUTPUT = frozenset({
    "Add", "Sub", "Relu", "Max", "Min", "Clip", "LeakyRelu", "Sum", "Neg", "Abs", "QLinearAdd",
})
MUL_PER_OUTPUT = frozenset({
    "Mul", "Div", "Sigmoid", "Tanh", "Exp", "Log", "Softmax", "LogSoftmax", "Erf", "Sqrt",
    "Reciprocal", "Pow", "Gelu", "HardSigmoid", "HardSwish", "QLinearMul", "QLinearSigmoid",
    "BatchNormalization", "LayerNormalization", "InstanceNormalization",
})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
_BYTES = {"int8": 1, "fp16": 2, "fp32": 4}


def estimate_energy(
    model: Model, feeds: Mapping[str, np.ndarray], *, table: EnergyTable = HOROWITZ_2014, runtime: bool = True
) -> EnergyResult:
    """Energy of one inference of ``model`` on the first sample of ``feeds``.

    With ``runtime`` (the default) the graph priced is the one ONNX Runtime runs
    (:func:`runtime_graph`); without, the graph as written. Shapes come from one run on that sample.
    Only inputs whose first axis the model leaves free are cut to one sample: scalars and fixed
    leading axes (a ``[layers, batch, H]`` state) are fed as they are.
    """
    free = {spec.name for spec in model.inputs if spec.shape and not isinstance(spec.shape[0], int)}
    one = {k: np.asarray(v)[:1] if k in free else np.asarray(v) for k, v in feeds.items()}
    if any(v.size == 0 for v in one.values()):
        raise DataError("energy estimation needs at least one sample of input data")
    try:
        counts = count_operations(model, one, runtime=runtime)
    except RuntimeFailure as exc:
        if not runtime:
            raise
        logger.warning("energy priced on the graph as written: %s", exc)
        counts = count_operations(model, one, runtime=False)
    return energy_from_counts(counts, table)


def energy_from_counts(counts: Mapping[str, float], table: EnergyTable = HOROWITZ_2014) -> EnergyResult:
    """Price operation counts (as :func:`count_operations` returns them) with ``table``."""
    pj = table.pj
    comp: Counter[str] = Counter()
    for prec, mul, add in (("int8", "int8 mul", "int32 add"), ("fp16", "fp16 mul", "fp16 add"),
                           ("fp32", "fp32 mul", "fp32 add")):
        macs = counts.get(f"{prec} mac", 0.0)
        comp[mul] += macs * pj[mul]
        comp[add] += macs * pj[add]
    for key in ("int8 add", "int8 mul", "fp16 add", "fp16 mul", "fp32 add", "fp32 mul"):
        comp[key] += counts.get(key, 0.0) * pj[key]
    comp["DRAM"] += counts.get("DRAM bytes", 0.0) / 8.0 * pj["DRAM"]
    comp["SRAM"] += counts.get("SRAM bytes", 0.0) / 8.0 * pj[ACTIVATION_MEMORY]
    by_component = {k: v * 1e-6 for k, v in comp.items() if v > 0}  # pJ -> µJ
    return EnergyResult(
        total_uj=float(sum(by_component.values())),
        by_component=by_component,
        ops={k: float(v) for k, v in counts.items() if v},
        table=table.name,
    )


def count_operations(
    model: Model, feeds: Mapping[str, np.ndarray], *, runtime: bool = False
) -> dict[str, float]:
    """Operation counts of one run on ``feeds``: MACs and element-wise ops by precision, bytes moved.

    Keys: ``"<int8|fp16|fp32> mac"``, ``"<prec> add"``, ``"<prec> mul"``, ``"DRAM bytes"``,
    ``"SRAM bytes"``. Counts are for the whole batch in ``feeds``. ``runtime``: count the graph
    ONNX Runtime runs (:func:`runtime_graph`) instead of the graph as written; a model with
    If/Loop/Scan bodies is counted as written (the runtime's saved graph hides body shapes).
    Nodes inside bodies count as often as they run: a body tensor comes out stacked over the
    iterations of a Loop/Scan, and empty from an If branch that did not run.
    """
    dtypes: dict[str, np.dtype] = {}
    if runtime and not any(True for _ in model.ir.graph.subgraphs()):
        model, shapes, dtypes = runtime_graph(model, feeds)
        graph = model.ir.graph
        constant = _constant_values(graph)
    else:
        runtime = False
        model = typed(model)
        graph = model.ir.graph
        constant = _constant_values(graph)
        wanted = [n for n in _body_tensors(graph) if n not in constant]
        shapes = {name: arr.shape for name, arr in BodyCapture(model, wanted)(feeds).items()}
    for name, arr in feeds.items():
        shapes[name] = np.asarray(arr).shape
    counts: Counter[str] = Counter()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if all(o.name in constant for o in node.outputs if o.name):
            continue  # folded at load time
        prec = _precision(node, constant, dtypes if runtime else None)
        if node.op_type in MAC_OPS:
            counts[f"{prec} mac"] += _macs(node, shapes, constant)
        elif node.op_type in QDQ_OPS:
            n = _elements(shapes.get(node.outputs[0].name))
            counts["fp32 mul"] += n
            counts["fp32 add"] += n
            continue
        elif node.op_type in ADD_PER_INPUT:
            counts[f"{prec} add"] += _elements(shapes.get(_name(node.inputs[0])))
        elif node.op_type in ADD_PER_OUTPUT:
            counts[f"{prec} add"] += _elements(shapes.get(node.outputs[0].name))
        elif node.op_type in MUL_PER_OUTPUT:
            counts[f"{prec} mul"] += _elements(shapes.get(node.outputs[0].name))
        else:
            continue  # data movement (Reshape, Transpose, Gather, ...): no arithmetic, no traffic
        moved = [_name(v) for v in node.inputs if v is not None and _name(v) not in constant]
        moved += [o.name for o in node.outputs if o.name]
        counts["SRAM bytes"] += _BYTES[prec] * sum(_elements(shapes.get(n)) for n in moved)
    counts["DRAM bytes"] += sum(
        v.const_value.nbytes for g in (graph, *graph.subgraphs()) for v in g.initializers.values()
        if v.const_value is not None
    )
    return {k: float(v) for k, v in counts.items()}


def _body_tensors(graph: ir.Graph) -> list[str]:
    """Node outputs of the graph and of its bodies, and the inputs of the bodies (per iteration)."""
    names = [out.name for node in ir.traversal.RecursiveGraphIterator(graph) for out in node.outputs if out.name]
    return names + [v.name for body in graph.subgraphs() for v in body.inputs if v.name]




def _name(value: ir.Value | None) -> str:
    return (value.name or "") if value is not None else ""


def _elements(shape: tuple[int, ...] | None) -> int:
    return int(np.prod(shape)) if shape is not None else 0


def _constant_values(graph: ir.Graph) -> set[str]:
    """Names of values computable at load time (initializers and what only they feed)."""
    const = {name for g in (graph, *graph.subgraphs()) for name, v in g.initializers.items() if not v.is_graph_input()}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        ins = [v for v in node.inputs if v is not None]
        if node.op_type == "Constant" or (ins and all(v.name in const for v in ins)):
            const.update(o.name for o in node.outputs if o.name)
    return const


def _precision(node: ir.Node, constant: set[str], runtime_dtypes: Mapping[str, np.dtype] | None = None) -> str:
    """The precision ``node`` computes in; with ``runtime_dtypes`` (a run of the optimized graph) a
    DequantizeLinear -> op pattern left unfused runs in float, and dtypes are the ones observed."""
    if node.op_type in INTEGER_MAC_OPS or node.op_type.startswith("QLinear"):
        return "int8"
    if node.op_type == "MatMulNBits":
        attr = node.attributes.get("accuracy_level")
        return "int8" if attr is not None and attr.as_int() == 4 else "fp32"
    activations = [v for v in node.inputs if v is not None and v.name not in constant]
    if runtime_dtypes is None and activations and all(
        (p := v.producer()) is not None and p.op_type == "DequantizeLinear" for v in activations
    ):
        return "int8"
    if runtime_dtypes is not None:
        if any(runtime_dtypes.get(_name(v)) == np.float16 for v in activations):
            return "fp16"
        return "fp32"
    if any(v.dtype == ir.DataType.FLOAT16 for v in activations):
        return "fp16"
    return "fp32"


def runtime_graph(
    model: Model, feeds: Mapping[str, np.ndarray]
) -> tuple[Model, dict[str, tuple[int, ...]], dict[str, np.dtype]]:
    """The graph ONNX Runtime runs for ``model``, and the shape and dtype of every tensor in one run on ``feeds``.

    The graph is ONNX Runtime's optimizer output at its default level (blocked NCHWc layouts left
    out: they pad channels and would inflate the counts); the run exposes every node output, so
    shapes and dtypes are the ones the runtime's kernels see.
    """
    with temp_dir(prefix="quantscope-energy-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        try:
            ort.InferenceSession(model.serialize(), sess_options=session_options(optimized_model_path=str(out)),
                                 providers=["CPUExecutionProvider"], disabled_optimizers=["NchwcTransformer"])
            proto = onnx.load(str(out))
        except Exception as exc:
            raise RuntimeFailure(f"ONNX Runtime cannot optimize the model for the energy estimate: {exc}") from exc
    del proto.graph.value_info[:]
    listed = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in listed:  # untyped: ONNX Runtime fills in the type it infers
                proto.graph.output.add().name = name
                listed.add(name)
    session = make_session(proto.SerializeToString(), optimization="none")
    arrays = run(session, feeds)
    names = [o.name for o in session.get_outputs()]
    shapes = {n: tuple(a.shape) for n, a in zip(names, arrays, strict=True)}
    dtypes = {n: a.dtype for n, a in zip(names, arrays, strict=True)}
    for name, arr in feeds.items():
        dtypes[name] = np.asarray(arr).dtype
    optimized = Model(ir=ir.from_proto(proto), path=None, fingerprint=model.fingerprint)
    return optimized, shapes, dtypes


def _macs(node: ir.Node, shapes: Mapping[str, tuple[int, ...]], constant: set[str]) -> int:
    """Multiply-accumulates of one MAC node, from the shapes of its first input and output."""
    op = node.op_type
    out = shapes.get(node.outputs[0].name) if node.outputs else None
    x = shapes.get(_name(node.inputs[0]))
    if out is None or x is None:
        logger.debug("no shapes for %s; its MACs are not counted", node.name)
        return 0
    if op in ("Conv", "QLinearConv", "ConvInteger", "FusedConv"):
        w_index = 3 if op == "QLinearConv" else 1
        w = _shape_of(node.inputs[w_index], shapes)
        if w is None:
            return 0
        # every output element sums over (C_in / group) x kernel
        return _elements(out) * int(np.prod(w[1:]))
    if op == "ConvTranspose":
        w = _shape_of(node.inputs[1], shapes)
        if w is None:
            return 0
        # weight (C_in, C_out / group, k...): every input element meets (C_out / group) x kernel
        return _elements(x) * int(np.prod(w[1:]))
    if op == "MatMulNBits":
        k = node.attributes["K"].as_int()
        return _elements(out) * k
    # MatMul-like: every output element sums over K, the last axis of the first input
    if op == "QLinearMatMul":
        return _elements(out) * int(x[-1])
    if op in ("Gemm", "QGemm", "FusedGemm"):
        trans_a = node.attributes["transA"].as_int() if "transA" in node.attributes else 0
        return _elements(out) * int(x[0] if trans_a else x[-1])
    return _elements(out) * int(x[-1]) if len(x) >= 1 else 0


def _shape_of(value: ir.Value | None, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.name in shapes:
        return tuple(shapes[value.name])
    if value.const_value is not None:
        return tuple(value.const_value.shape.numpy())
    if value.shape is not None and all(isinstance(d, int) for d in value.shape):
        return tuple(int(d) for d in value.shape)  # type: ignore[arg-type]
    return None


def describe_table(table: EnergyTable = HOROWITZ_2014) -> dict[str, object]:
    """The table, its source and the assumptions, as plain data for reports."""
    return {"name": table.name, "source": table.source, "pj": dict(table.pj), "assumptions": list(ASSUMPTIONS)}
