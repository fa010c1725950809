"""The OpenVINO path: the same ONNX files (float or quantscope's QDQ int8) run by OpenVINO's CPU runtime.

:class:`OpenVINOVariant` compiles an ``.onnx`` file with ``openvino.Core().compile_model(path,
"CPU")`` (OpenVINO reads ONNX directly and runs QDQ models with its own int8 kernels) and
predicts and times it like an ONNX Runtime variant, so :func:`add_to_results` can put its rows
(named ``<variant> [openvino]``, kind ``openvino``) into the same
:class:`~quantscope.analysis.results.Results` as the ONNX Runtime ones; their speed is against
the ONNX Runtime float model. ``INFERENCE_NUM_THREADS`` is set from the thread count measured,
with one stream, the latency hint and the accuracy execution mode (float32 where the file is
float: the CPU plugin's default may compute in bfloat16), like ONNX Runtime's one-session timing.

OpenVINO may refuse a QDQ file ONNX Runtime accepts. Such a file is measured once more after
the ``QuantizeLinear`` of each constant subgraph (e.g. a bias ``Reshape``) is folded into an
integer initializer, which changes no value; the row says so. Needs the ``openvino`` package
(the ``[openvino]`` extra), imported when first used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.analysis.evaluate import Latency, time_calls
from quantscope.calibrate import Progress
from quantscope.data import Dataset
from quantscope.errors import ConfigError, ModelError
from quantscope.specs import TensorSpec

logger = logging.getLogger(__name__)

SUFFIX = " [openvino]"
KIND = "openvino"


def _core() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ConfigError("running models with OpenVINO needs openvino: pip install 'quantscope[openvino]'") from exc
    return openvino.Core()


def available() -> bool:
    """Whether the ``openvino`` package can be imported here."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def reason(exc: BaseException) -> str:
    """The informative line of an OpenVINO exception (its first lines only name C++ source files)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from ")]
    return (useful or lines or [type(exc).__name__])[0][:400]


def compile_model(path: str | os.PathLike[str] | bytes, *, threads: int | None = None) -> Any:
    """An OpenVINO CPU ``CompiledModel`` of an ONNX file (or its bytes); refusals become :class:`ModelError`."""
    core = _core()
    # ACCURACY: float32 arithmetic where the file says float (the CPU plugin's default may run
    # bfloat16 and quantize fully-connected activations on the fly, which is another model)
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "EXECUTION_MODE_HINT": "ACCURACY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        if isinstance(path, bytes):
            return core.compile_model(core.read_model(path, b""), "CPU", config)
        return core.compile_model(str(path), "CPU", config)
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot load the model: {reason(exc)}") from exc


@dataclass(frozen=True)
class OpenVINOVariant:
    """An ONNX file to run with OpenVINO; ``name`` is how reports show it (``static-int8 [openvino]``).

    ``model`` (ONNX bytes), when set, is what OpenVINO compiles instead of the file (the file
    with constant quantization folded; see :func:`fold_constant_quantization`).
    """

    name: str
    path: Path
    description: str = ""
    model: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return KIND

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def compiled(self, threads: int | None = None) -> Any:
        return compile_model(self.model if self.model is not None else self.path, threads=threads)

    @cached_property
    def inputs(self) -> list[TensorSpec]:
        from quantscope.io import load

        return list(load(self.path).inputs)

    def predict(
        self, dataset: Dataset, *, batch_size: int = 32, threads: int | None = None, progress: Progress | None = None
    ) -> list[np.ndarray]:
        """All outputs over ``dataset``, in the ONNX graph's output order, concatenated along the samples."""
        data = dataset.bind(self.inputs)
        request = self.compiled(threads).create_infer_request()
        chunks: list[list[np.ndarray]] = []
        done, total = 0, len(data)
        for batch in data.batches(batch_size):
            chunks.append(_infer(request, batch.inputs))
            done += batch.size
            if progress is not None:
                progress(done, total)
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))] if chunks else []

    def measure_latency(
        self, feeds: Mapping[str, np.ndarray], *, threads: int | None = None, warmup: int = 5, runs: int = 30
    ) -> Latency:
        """Median and p90 wall time of one synchronous inference after warm-up."""
        names = [spec.name for spec in self.inputs]
        if not set(names) <= set(feeds):
            raise ConfigError(f"feeds {sorted(feeds)} do not cover the inputs {names}")
        bound = {n: np.ascontiguousarray(feeds[n]) for n in names}
        request = self.compiled(threads).create_infer_request()
        batch = int(next(iter(bound.values())).shape[0]) if bound else 1
        return time_calls(lambda: request.infer(bound, share_inputs=True), batch=batch, threads=threads,
                          warmup=warmup, runs=runs)


def _infer(request: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    try:
        result = request.infer(dict(feeds))
    except Exception as exc:
        raise ModelError(f"OpenVINO failed to run the model: {reason(exc)}") from exc
    return [np.array(result[out], copy=True) for out in request.model_outputs]


def fold_constant_quantization(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """The ONNX file with each ``QuantizeLinear`` of a constant subgraph replaced by its integer result.

    Only a ``QuantizeLinear`` whose input is computed from initializers alone (e.g. a bias
    ``Reshape``d to ``[1, C, 1, 1]`` before an ``Add``) is folded, with ONNX Runtime computing
    the value, so no number changes. OpenVINO 2026's low-precision ``Add`` transformation throws
    on an ``Add`` of two ``DequantizeLinear`` outputs when one comes from such a subgraph; with
    the constant folded into a ``DequantizeLinear`` of an initializer it loads. Returns the
    model's bytes and how many were folded.
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(str(path))
    graph = proto.graph
    constant = {init.name for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    position = {id(node): i for i, node in enumerate(graph.node)}
    folded: list[onnx.NodeProto] = []
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        subgraph = _constant_subgraph(node, producer, constant, position)
        if subgraph is None:
            continue
        inits = [init for init in graph.initializer if init.name in _inputs_of(subgraph)]
        tiny = onnx.helper.make_graph(subgraph, "fold", [], [onnx.helper.make_tensor_value_info(
            node.output[0], onnx.TensorProto.UNDEFINED, None)], inits)
        value = ReferenceEvaluator(onnx.helper.make_model(tiny, opset_imports=proto.opset_import)).run(None, {})[0]
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), node.output[0]))
        graph.node.remove(node)
        folded.append(node)
    while True:  # drop what only fed the folded nodes
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not (set(n.output) & used)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    return proto.SerializeToString(), len(folded)


def _constant_subgraph(
    node: Any, producer: Mapping[str, Any], constant: set[str], position: Mapping[int, int]
) -> list[Any] | None:
    """The nodes computing ``node`` from initializers only (in graph order, ``node`` last), else None."""
    order: dict[int, Any] = {}
    stack = [node]
    while stack:
        cur = stack.pop()
        if cur.op_type in ("DequantizeLinear", "QuantizeLinear") and cur is not node:
            return None
        order[id(cur)] = cur
        for name in cur.input:
            if not name or name in constant:
                continue
            prev = producer.get(name)
            if prev is None or len(order) > 16:
                return None
            stack.append(prev)
    if len(order) == 1:
        return None  # a QuantizeLinear of an initializer: already how OpenVINO takes weights
    return sorted(order.values(), key=lambda n: position[id(n)])


def _inputs_of(nodes: Sequence[Any]) -> set[str]:
    return {name for n in nodes for name in n.input}


def variant_for(name: str, path: str | os.PathLike[str]) -> tuple[OpenVINOVariant, list[str]]:
    """The OpenVINO variant of ONNX file ``path`` (row ``<name> [openvino]``), and notes about it.

    Raises :class:`ModelError` when OpenVINO refuses the file even after folding constant
    quantization.
    """
    file = Path(path)
    variant = OpenVINOVariant(name + SUFFIX, file)
    try:
        variant.compiled(1)
        return variant, []
    except ModelError as exc:
        refused = exc
    model, folded = fold_constant_quantization(file)
    if not folded:
        raise refused
    variant = dataclasses.replace(variant, model=model)
    variant.compiled(1)  # raises if the folded model is refused too
    note = (f"OpenVINO refused the file as written ({refused}); measured with the QuantizeLinear of "
            f"{folded} constant subgraph(s) folded into integer initializers (the same values)")
    logger.warning("%s: %s", name, note)
    return variant, [note]


def add_to_results(
    results: Any,
    float_model: Any,
    data: Dataset,
    *,
    options: Any = None,
    metric: Any = None,
    models: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Any:
    """``results`` with every ONNX variant (the float model too) measured again by OpenVINO.

    Each row with a file (``VariantResult.path``; the float model's own path; or ``models``:
    {variant name: ONNX file}) gets a row ``<name> [openvino]`` of kind ``openvino`` measured
    the way TFLite rows are: quality against the float ONNX model's outputs on ``data`` and
    latency over the same batch sizes and thread counts. A variant OpenVINO refuses, or
    without a file, gets a note instead of a row.
    """
    from quantscope.backends import tflite
    from quantscope.signals import temp_dir

    files = dict(models or {})
    notes = list(results.notes)
    variants: list[OpenVINOVariant] = []
    extra: dict[str, list[str]] = {}
    with temp_dir(prefix="quantscope-openvino-") as tmp:
        for row in results.variants:
            if row.kind not in ("float", "onnx"):
                continue
            path = files.get(row.name) or row.path or (float_model.path if row.kind == "float" else None)
            if path is None and row.kind == "float":
                path = Path(tmp) / "float.onnx"
                Path(path).write_bytes(float_model.serialize())
            if path is None:
                notes.append(f"{row.name}{SUFFIX}: not measured: the variant has no file (save it first)")
                continue
            try:
                variant, row_notes = variant_for(row.name, path)
            except ModelError as exc:
                notes.append(f"{row.name}{SUFFIX}: not measured: {exc}")
                logger.warning("%s: not measured with OpenVINO: %s", row.name, exc)
                continue
            variants.append(variant)
            extra[variant.name] = row_notes
        measured = tflite.add_to_results(dataclasses.replace(results, notes=notes), float_model, variants, data,
                                         options=options, metric=metric)
    rows = [_as_openvino(v, extra[v.name]) if v.name in extra else v for v in measured.variants]
    return dataclasses.replace(measured, variants=rows)


def _as_openvino(row: Any, notes: list[str]) -> Any:
    """A row measured through the shared (LiteRT-named) path, relabelled as OpenVINO's."""
    return dataclasses.replace(row, kind=KIND, warnings=list(notes))
