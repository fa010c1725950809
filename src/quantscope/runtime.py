"""ONNX Runtime sessions: options, intermediate outputs, the optimized graph."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from quantscope.errors import RuntimeFailure
from quantscope.graph.build import NameAllocator
from quantscope.graph.subgraphs import expose
from quantscope.model_io import IN_PROCESS_CHECK_BYTES, Model, tensor_bytes
from quantscope.model_stream import release_all
from quantscope.signals import temp_dir

logger = logging.getLogger(__name__)

Optimization = Literal["none", "basic", "extended", "all"]
_LEVELS = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(
    *, threads: int | None = None, optimization: Optimization = "all", optimized_model_path: str | None = None,
    lean: bool = False,
) -> ort.SessionOptions:
    """Session options. ``lean``: lower peak memory for a one-pass job such as calibration: nodes
    run in priority order (graph order on ties, so a node placed right after a tensor's producer
    runs early and the tensor is freed sooner) and without ONNX Runtime's growing CPU arena."""
    opts = ort.SessionOptions()
    if lean:
        opts.enable_cpu_mem_arena = False
        opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    opts.graph_optimization_level = _LEVELS[optimization]
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if optimized_model_path is not None:
        opts.optimized_model_filepath = optimized_model_path
    return opts


def make_session(
    model: Model | bytes | str | os.PathLike[str],
    *,
    threads: int | None = None,
    optimization: Optimization = "all",
    optimized_model_path: str | None = None,
    lean: bool = False,
) -> ort.InferenceSession:
    """A CPU session; failures become :class:`RuntimeFailure` with ONNX Runtime's reason.

    A ``lean`` session over a model whose weights exceed
    :data:`~quantscope.model_io.IN_PROCESS_CHECK_BYTES` is made from a temporary copy with its
    weights as external data, which ONNX Runtime memory-maps, and without pre-packing them (which
    would copy every MatMul weight): about one copy of the weights instead of three or four.
    """
    opts = session_options(threads=threads, optimization=optimization, optimized_model_path=optimized_model_path, lean=lean)
    if lean and isinstance(model, Model) and tensor_bytes(model.ir) > IN_PROCESS_CHECK_BYTES:
        opts.add_session_config_entry("session.disable_prepacking", "1")
        with temp_dir(prefix="quantscope-session-") as tmp:  # mapped files outlive their names
            path = Path(tmp) / "model.onnx"
            ir.save(model.ir, path, external_data="model.onnx.data")
            release_all(model.ir)
            return _session(str(path), opts)
    source: bytes | str
    source = model.serialize() if isinstance(model, Model) else model if isinstance(model, bytes) else str(model)
    return _session(source, opts)


def _session(source: bytes | str, opts: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"ONNX Runtime cannot load the model: {first}") from exc


def run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
    try:
        return session.run(list(outputs) if outputs is not None else None, dict(feeds))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"ONNX Runtime failed to run the model: {first}") from exc


def with_outputs(model: Model, names: Iterable[str]) -> Model:
    """A copy of ``model`` whose graph also outputs the named intermediate tensors.

    Tensors without a known element type are skipped (ONNX Runtime needs one). A tensor inside
    an If/Loop/Scan body comes out under another name (see :func:`exposing`).
    """
    return exposing(model, names)[0]


def exposing(model: Model, names: Iterable[str]) -> tuple[Model, dict[str, str]]:
    """:func:`with_outputs`, and {graph output name: tensor name} for every tensor exposed.

    A main-graph tensor is its own output; a tensor inside an If/Loop/Scan body is threaded out
    through its holders (:func:`quantscope.graph.subgraphs.expose`): from an ``If`` it is an
    empty tensor when its branch did not run, from a ``Loop``/``Scan`` the tensor of every
    iteration, stacked.
    """
    clone = model.ir.clone()
    exposed = expose(clone, names)
    return Model(ir=clone, path=None, fingerprint=model.fingerprint), exposed


Reduced = tuple[str, str, str, str]
"""Graph outputs of one reduced tensor: its min, max, sum (NaN when a value is) and element count."""

REDUCED_AS = {ir.DataType.FLOAT: None, ir.DataType.DOUBLE: None,
              ir.DataType.FLOAT16: ir.DataType.FLOAT, ir.DataType.BFLOAT16: ir.DataType.FLOAT}
"""Float types reduced in the graph, and the type a 16-bit one is cast to first (None: as it is)."""


def reducing(model: Model, names: Iterable[str]) -> tuple[Model, dict[str, str], dict[str, Reduced]]:
    """:func:`exposing`, but main-graph float tensors come out reduced to min, max, sum and size.

    Only those four scalars per tensor leave ONNX Runtime, not the tensor: ``ReduceMin``/
    ``ReduceMax``/``ReduceSum`` over all axes (``keepdims=0``; 16-bit floats cast to float32
    first, which is exact) and ``Size``. ``ReduceMin``/``ReduceMax`` may skip or garble NaN; the
    sum is NaN whenever a value is (infinities show in the min/max; an overflowing sum of finite
    values is only ``inf``), so it flags a tensor to look at whole. Returns the
    copy, {graph output: tensor} for the tensors exposed whole as :func:`exposing` does (inside
    an If/Loop/Scan body, not a float tensor), and {tensor: its four reduced outputs}.
    """
    clone = model.ir.clone()
    main = clone.graph
    by_name = {out.name: out for node in main for out in node.outputs if out.name}
    by_name.update({k: v for k, v in main.initializers.items() if k not in by_name})
    fresh = NameAllocator(main)
    reduced: dict[str, Reduced] = {}
    rest: list[str] = []
    for name in dict.fromkeys(names):
        value = by_name.get(name)
        if value is None or value.dtype not in REDUCED_AS:
            rest.append(name)
            continue
        source, kind = value, value.dtype
        # right after the producer, so the tensor can be freed once its real consumers ran
        at = _Inserter(main, value.producer())
        if REDUCED_AS[value.dtype] is not None:
            kind = REDUCED_AS[value.dtype]
            source = at.add(fresh, name, "Cast", [value], kind, {"to": kind})
        outs = []
        for op, dtype in (("ReduceMin", kind), ("ReduceMax", kind), ("ReduceSum", kind), ("Size", ir.DataType.INT64)):
            out = at.add(fresh, name, op, [source], dtype, {"keepdims": 0} if op != "Size" else None)
            out.shape = ir.Shape([])
            main.outputs.append(out)
            outs.append(out.name or "")
        reduced[name] = (outs[0], outs[1], outs[2], outs[3])
    exposed = expose(clone, rest)
    return Model(ir=clone, path=None, fingerprint=model.fingerprint), exposed, reduced


class _Inserter:
    """Adds nodes to ``graph`` one after the other, starting right after ``anchor`` (None: at the end)."""

    def __init__(self, graph: ir.Graph, anchor: ir.Node | None) -> None:
        self.graph, self.anchor = graph, anchor if anchor is not None and anchor.graph is graph else None

    def add(self, fresh: NameAllocator, base: str, op: str, inputs: list[ir.Value], dtype: ir.DataType,
            attributes: dict[str, object] | None = None) -> ir.Value:
        """One ``op`` node; returns its (named, typed) output."""
        node = ir.node(op, inputs, attributes, name=fresh(f"{base}/qs_{op}"))
        out = node.outputs[0]
        out.name, out.dtype = fresh(f"{base}/qs_{op.lower()}"), dtype
        if self.anchor is None:
            self.graph.append(node)
        else:
            self.graph.insert_after(self.anchor, node)
            self.anchor = node
        return out


def optimized_op_types(model: Model, *, optimization: Optimization = "all") -> dict[str, int]:
    """Operator histogram of the graph ONNX Runtime actually executes after its optimizer."""
    with temp_dir() as tmp:
        out = Path(tmp) / "optimized.onnx"
        make_session(model, optimization=optimization, optimized_model_path=str(out))
        proto = onnx.load(str(out), load_external_data=False)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def cpu_flags() -> frozenset[str]:
    """CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def int16_saturation_risk() -> bool:
    """True on x86 CPUs whose int8 dot products go through int16 (AVX2/AVX-512 without VNNI)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = cpu_flags()
    return not ({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)
