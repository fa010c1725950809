"""Tidy what a converter wrote into a valid quantscope :class:`Model`.

Converters differ in small ways that break other tools: skl2onnx can import the default
opset twice, tf2onnx names the batch dimension ``unk__20``, exporters name outputs after
internal nodes. :func:`finalize` normalises all of that, validates the model and infers
shapes. It works on a copy; the converter's proto is not modified.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnx

from quantscope.errors import ConversionError
from quantscope.io import Model, infer_shapes

logger = logging.getLogger(__name__)

BATCH = "batch"


def dedupe_opsets(proto: onnx.ModelProto) -> list[str]:
    """Keep one opset import per domain (the highest version); returns notes on what changed."""
    versions: dict[str, int] = {}
    order: list[str] = []
    repeated: set[str] = set()
    for imp in proto.opset_import:
        domain = "" if imp.domain == "ai.onnx" else imp.domain
        if domain in versions:
            repeated.add(domain)
            versions[domain] = max(versions[domain], int(imp.version))
        else:
            order.append(domain)
            versions[domain] = int(imp.version)
    if not repeated:
        return []
    del proto.opset_import[:]
    for domain in order:
        proto.opset_import.append(onnx.helper.make_opsetid(domain, versions[domain]))
    names = ", ".join(repr(d or "ai.onnx") for d in sorted(repeated))
    return [f"the converter imported opset domain(s) {names} more than once; kept one import each"]


def name_batch_dims(proto: onnx.ModelProto, name: str = BATCH) -> None:
    """Give the first (batch) dimension of every graph input and output the same symbolic name."""
    initializers = {t.name for t in proto.graph.initializer}
    for value in (*proto.graph.input, *proto.graph.output):
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        if len(shape.dim) == 0:
            continue
        first = shape.dim[0]
        if not first.HasField("dim_value"):
            first.dim_param = name


def rename_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> None:
    """Rename the graph outputs to ``names``, moving any other value of a wanted name aside."""
    graph = proto.graph
    if len(names) != len(graph.output):
        raise ConversionError(
            f"{len(names)} output name(s) {list(names)} given for {len(graph.output)} model output(s)"
        )
    if len(set(names)) != len(names):
        raise ConversionError(f"output names must be distinct, got {list(names)}")
    used = {v for node in graph.node for v in (*node.input, *node.output)}
    used |= {v.name for v in (*graph.input, *graph.initializer, *graph.value_info, *graph.output)}

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if v == old else v for v in node.input]
            node.output[:] = [new if v == old else v for v in node.output]
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.name == old:
                value.name = new
        for tensor in graph.initializer:
            if tensor.name == old:
                tensor.name = new

    current = [o.name for o in graph.output]
    for i, new in enumerate(names):
        old = current[i]
        if old == new:
            continue
        if new in used:  # an internal value (or another output) has the wanted name: move it aside
            k = 0
            while f"{new}__{k}" in used:
                k += 1
            rename(new, f"{new}__{k}")
            used.add(f"{new}__{k}")
            current = [o.name for o in graph.output]
            old = current[i]
        rename(old, new)
        used.add(new)
        current = [o.name for o in graph.output]


def finalize(
    proto: onnx.ModelProto,
    *,
    notes: Sequence[str] = (),
    output_names: Sequence[str] | None = None,
    batch_dim: bool = True,
    name: str | None = None,
) -> Model:
    """A validated :class:`Model` from a converter's proto (which is left unchanged).

    ``name`` (the framework model's name) becomes the graph name, which reports show.
    """
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    if name:
        out.graph.name = name
    all_notes = [*notes, *dedupe_opsets(out)]
    if output_names is not None:
        rename_outputs(out, output_names)
    if batch_dim:
        name_batch_dims(out)
    del out.graph.value_info[:]  # stale symbolic names; inferred again below
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ConversionError(f"the converter wrote an invalid ONNX model: {first}") from exc
    out = infer_shapes(out)
    model = Model.from_proto(out)
    return Model(ir=model.ir, fingerprint=model.fingerprint, notes=tuple(all_notes))
