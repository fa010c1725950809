"""A model's protobuf encoding produced tensor by tensor, never held whole in memory twice.

``ir.to_proto(model).SerializeToString()`` holds every weight three times at once (the graph,
the protobuf message, its bytes). :func:`model_pieces` instead encodes the model without its
initializers (a small message), then each initializer as one more ``graph { initializer {...} }``
record: protobuf merges repeated occurrences of an embedded message field, so a reader parses
the same ``ModelProto``. Each tensor's bytes are handed out as a view of its array (or of its
memory-mapped external data) where possible, so writing a model to a file costs about one
tensor of extra memory, and the pages of a memory-mapped source are released once written.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

__all__ = ["model_pieces", "raw_view", "release_all", "release_pages"]

_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


class _WithoutInitializers:
    """``model`` seen with a main graph that lists no initializers (for the serializer; nothing is changed)."""

    def __init__(self, model: ir.Model) -> None:
        self._model = model
        g = model.graph
        self.graph = ir.GraphView(
            g.inputs, g.outputs, nodes=g, doc_string=g.doc_string, opset_imports=dict(g.opset_imports),
            name=g.name, metadata_props=dict(g.metadata_props),
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def model_pieces(model: ir.Model, *, value_info: bool = True) -> Iterator[bytes | memoryview]:
    """The bytes of ``model`` as one ``ModelProto`` (initializers inline), in pieces to write in order.

    External tensors are read into the encoding (the result refers to no data file).
    ``value_info=False`` leaves out the inferred types of intermediate tensors.
    """
    skeleton = onnx.ModelProto()
    ir.serde.serialize_model_into(skeleton, _WithoutInitializers(model))  # type: ignore[arg-type]
    graph = model.graph
    if not value_info:
        del skeleton.graph.value_info[:]
    else:  # what the serializer writes for initializers that are not graph inputs
        inputs = {v.name for v in graph.inputs}
        for value in graph.initializers.values():
            if value.name not in inputs and value.name and (value.type is not None or value.shape is not None):
                ir.serde.serialize_value_into(skeleton.graph.value_info.add(), value)
    from quantscope.model_io import inline_external  # subgraph initializers stay in the skeleton

    yield inline_external(skeleton, model).SerializeToString()
    del skeleton
    for value in graph.initializers.values():
        if value.const_value is not None:
            yield from _initializer_pieces(value.name or "", value.const_value)


def _initializer_pieces(name: str, tensor: ir.TensorProtocol) -> Iterator[bytes | memoryview]:
    data = raw_view(tensor)
    if data is None:  # strings and unusual layouts: the serializer's own encoding
        proto = ir.serde.serialize_tensor(tensor)
        proto.name = name
        if proto.data_location == onnx.TensorProto.EXTERNAL:
            del proto.external_data[:]
            proto.data_location = onnx.TensorProto.DEFAULT
            proto.raw_data = tensor.tobytes()
        body = proto.SerializeToString()
        yield _key(_GRAPH) + _varint(len(body) + _field_overhead(len(body))) + _key(_INITIALIZER) + _varint(len(body))
        yield body
        return
    header = onnx.TensorProto(name=name, data_type=tensor.dtype.value, dims=[int(d) for d in tensor.shape.numpy()])
    if tensor.doc_string:
        header.doc_string = tensor.doc_string
    for key, value in tensor.metadata_props.items():
        entry = header.metadata_props.add()
        entry.key, entry.value = key, value
    head = header.SerializeToString() + _key(_RAW_DATA) + _varint(data.nbytes)
    tensor_len = len(head) + data.nbytes
    entry_len = tensor_len + _field_overhead(tensor_len)
    yield _key(_GRAPH) + _varint(entry_len) + _key(_INITIALIZER) + _varint(tensor_len) + head
    yield data
    release_pages(tensor)


def raw_view(tensor: ir.TensorProtocol) -> memoryview | None:
    """The tensor's ``raw_data`` bytes without a copy where possible; None for strings."""
    if tensor.dtype == ir.DataType.STRING:
        return None
    if isinstance(tensor, ir.ExternalTensor):
        np.asarray(tensor)  # maps the file
        raw = tensor.raw
        if isinstance(raw, mmap.mmap):
            start = tensor.offset or 0
            return memoryview(raw)[start:start + tensor.nbytes]
    raw = getattr(tensor, "raw", None)
    if (
        isinstance(raw, np.ndarray) and tensor.dtype.bitwidth in (8, 16, 32, 64) and raw.flags.c_contiguous
        and raw.dtype.itemsize * 8 == tensor.dtype.bitwidth and raw.dtype.byteorder in "=<|"
        and raw.dtype.kind not in "OUS"
    ):
        return memoryview(raw.reshape(-1).view(np.uint8))
    return memoryview(tensor.tobytes())


def release_pages(tensor: Any) -> None:
    """Drop the resident pages of a memory-mapped external tensor (they are read again from the
    file if the tensor is used again): a large model read tensor by tensor keeps one resident."""
    raw = getattr(tensor, "raw", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if not isinstance(tensor, ir.ExternalTensor) or not isinstance(raw, mmap.mmap) or advice is None:
        return
    start = ((tensor.offset or 0) // mmap.PAGESIZE) * mmap.PAGESIZE
    end = min((tensor.offset or 0) + tensor.nbytes, len(raw))
    if end > start:
        raw.madvise(advice, start, end - start)


def release_all(model: ir.Model) -> None:
    """:func:`release_pages` for every initializer of the main graph (after the model was copied out)."""
    for value in model.graph.initializers.values():
        release_pages(value.const_value)


def _key(field: int) -> bytes:
    return _varint(field << 3 | 2)  # wire type 2: length-delimited


def _field_overhead(length: int) -> int:
    """Bytes of the ``initializer`` key and length before a tensor of ``length`` bytes."""
    return len(_key(_INITIALIZER)) + len(_varint(length))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
