"""Large tensors a method writes, kept in temporary files (memory-mapped) instead of in memory.

A quantized or converted copy of a large model would otherwise hold every new weight in memory
at once (half the model for float16). :func:`spill` writes one tensor to its own file in a
temporary folder and hands back an ``onnx_ir`` external tensor reading it: saving, the load
check and ONNX Runtime sessions read it tensor by tensor like the weights of a loaded model.
The file is removed when the tensor is garbage collected; the folder on any exit
(:mod:`quantscope.signals`). Tensors under :data:`SPILL_BYTES` stay in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import weakref
from pathlib import Path

import onnx_ir as ir

from quantscope.model_stream import raw_view
from quantscope.signals import lasting_temp_dir

logger = logging.getLogger(__name__)

SPILL_BYTES = 64 * 2**20
"""Tensors at least this large go to a temporary file."""

__all__ = ["SPILL_BYTES", "SpilledTensor", "spill", "spill_value"]


class SpilledTensor(ir.ExternalTensor):
    """An external tensor over a temporary file of its own, removed with the tensor."""

    def __init__(self, path: Path, tensor: ir.TensorProtocol) -> None:
        super().__init__(
            path.name, offset=0, length=tensor.nbytes, dtype=tensor.dtype, shape=tensor.shape,
            name=tensor.name, doc_string=tensor.doc_string, metadata_props=dict(tensor.metadata_props),
            base_dir=path.parent,
        )
        weakref.finalize(self, _unlink, str(path))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Area:
    folder: Path | None = None


def _folder() -> Path:
    if _Area.folder is None or not _Area.folder.is_dir():
        _Area.folder = lasting_temp_dir("quantscope-spill-")
    return _Area.folder


def spill(tensor: ir.TensorProtocol) -> ir.TensorProtocol:
    """``tensor`` itself when small or already on disk, else a :class:`SpilledTensor` with its bytes."""
    if tensor.nbytes < SPILL_BYTES or isinstance(tensor, ir.ExternalTensor) or tensor.dtype == ir.DataType.STRING:
        return tensor
    fd, name = tempfile.mkstemp(dir=_folder(), suffix=".tensor")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw_view(tensor))
    except OSError as exc:  # a full temporary disk: keep the tensor in memory
        _unlink(name)
        logger.warning("cannot keep a %d-byte tensor in %s (%s); it stays in memory", tensor.nbytes, path.parent, exc)
        return tensor
    return SpilledTensor(path, tensor)


def spill_value(value: ir.Value) -> ir.Value:
    """``value`` with its constant tensor spilled (:func:`spill`); returns ``value``."""
    if value.const_value is not None:
        value.const_value = spill(value.const_value)
    return value
