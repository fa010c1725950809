"""Loading and saving models: validation, fingerprints, atomic writes.

Protobuf appears here and in :mod:`quantscope.runtime` only; everything else works on
``onnx_ir`` models. A loaded model is never written back to its own path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from quantscope.errors import ModelError, OutputError
from quantscope.model_stream import model_pieces
from quantscope.output_paths import check_output_path
from quantscope.specs import TensorSpec
from quantscope.transaction import Transaction, write_files

logger = logging.getLogger(__name__)

_TWO_GB = 2**31 - 1024
_EXTERNAL_THRESHOLD = 1_800_000_000  # leave headroom under protobuf's 2 GB limit


@dataclass(frozen=True, eq=False)
class Model:
    """An ONNX model held as an ``onnx_ir`` graph, with where it came from.

    Treat ``ir`` as read-only: every quantscope pass clones before it edits.
    """

    ir: ir.Model
    path: Path | None = None
    fingerprint: str = ""
    notes: tuple[str, ...] = field(default=())
    data_files: tuple[Path, ...] = field(default=())  # external data the file at ``path`` refers to

    @classmethod
    def from_proto(cls, proto: onnx.ModelProto, *, path: Path | None = None) -> Model:
        return cls(ir=ir.from_proto(proto), path=path, fingerprint=_fingerprint_proto(proto))

    def to_proto(self) -> onnx.ModelProto:
        """A protobuf copy of the model (safe to modify), external tensors read into it."""
        return inline_external(ir.to_proto(self.ir), self.ir)

    @cached_property
    def _bytes(self) -> bytes:
        if tensor_bytes(self.ir) > _TWO_GB:
            raise ModelError("model is larger than 2 GB and cannot be serialized in memory; save it first")
        return b"".join(model_pieces(self.ir))  # tensor by tensor: no protobuf copy of the weights

    def serialize(self) -> bytes:
        """The model as bytes, for ONNX Runtime sessions (cached)."""
        return self._bytes

    @property
    def opset(self) -> int:
        return int(self.ir.opset_imports.get("", 0))

    @property
    def inputs(self) -> list[TensorSpec]:
        initializer_names = set(self.ir.graph.initializers)
        return [
            _spec(v) for v in self.ir.graph.inputs if v.name not in initializer_names
        ]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(v) for v in self.ir.graph.outputs]

    def op_histogram(self) -> dict[str, int]:
        """Count of nodes per operator, subgraphs included (``domain::op`` for non-default domains)."""
        counts: Counter[str] = Counter()
        for node in ir.traversal.RecursiveGraphIterator(self.ir.graph):
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            counts[key] += 1
        return dict(counts.most_common())

    def parameter_count(self) -> int:
        return sum(int(np.prod(v.shape.numpy())) for v in self.ir.graph.initializers.values() if v.shape is not None)

    def parameter_bytes(self) -> dict[str, int]:
        """Initializer bytes by NumPy-style dtype name (``float32``, ``int8``, ``uint4``, ...), largest first."""
        out: Counter[str] = Counter()
        for v in self.ir.graph.initializers.values():
            if v.const_value is not None:
                out[numpy_dtype_name(v.const_value.dtype)] += int(v.const_value.nbytes)
        return dict(out.most_common())


def numpy_dtype_name(dtype: ir.DataType) -> str:
    """The NumPy-style name of an ONNX element type (``float32``, ``int8``, ``uint4``, ...)."""
    try:
        return np.dtype(dtype.numpy()).name
    except (TypeError, ValueError, NotImplementedError):
        return dtype.name.lower()


def inline_external(proto: onnx.ModelProto, model: ir.Model) -> onnx.ModelProto:
    """``proto`` with the graph's memory-mapped (external) initializers read into it, in place."""
    external = {
        name: v.const_value for name, v in model.graph.initializers.items()
        if isinstance(v.const_value, ir.ExternalTensor)
    }
    if not external:
        return proto
    for tensor in proto.graph.initializer:
        source = external.get(tensor.name)
        if source is not None and tensor.data_location == onnx.TensorProto.EXTERNAL:
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
            tensor.raw_data = source.tobytes()
    return proto


def tensor_bytes(model: ir.Model) -> int:
    """Bytes of the graph's initializers, read from their headers (nothing is loaded)."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def float_bytes(model: ir.Model) -> int:
    """What the initializers may take once ONNX Runtime folds them: at least 4 bytes an element
    (a codebook Gather, a Cast or a low-bit weight becomes a float32 constant), read from headers."""
    return sum(max(v.const_value.nbytes, 4 * int(np.prod(v.const_value.shape.numpy(), dtype=np.int64)))
               for v in model.graph.initializers.values() if v.const_value is not None)


def _spec(value: ir.Value) -> TensorSpec:
    dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)
    shape = None
    if value.shape is not None:
        shape = tuple(
            d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None)
            for d in value.shape
        )
    return TensorSpec(value.name or "", dtype, shape)


def _fingerprint_proto(proto: onnx.ModelProto) -> str:
    h = hashlib.sha256()
    h.update(proto.SerializeToString(deterministic=True) if proto.ByteSize() <= _TWO_GB else b"")
    return "sha256:" + h.hexdigest()


def checker_message(exc: Exception) -> str:
    """The first line of an ONNX checker error: the line that names the problem."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def load(path: str | os.PathLike[str], *, check: bool = True) -> Model:
    """Load an ONNX model file (external data included), validate it and infer shapes.

    External data stays on disk, memory-mapped tensor by tensor when a tensor is read (protobuf
    cannot hold a message over 2 GB, and a copy of every weight in memory is what a large model
    cannot afford); the extents of the external tensors are checked against their files here. A model older than IR version 4 is upgraded to opset
    :data:`UPGRADE_OPSET` (see :func:`upgrade`). Raises :class:`ModelError` naming the problem
    for missing, unreadable, corrupt or invalid files.
    """
    p = Path(path)
    proto = _read_proto(p)
    data_files = external_data_files(proto, p.parent)
    missing = [f for f in data_files if not f.is_file()]
    if missing:
        raise ModelError(
            f"cannot read {p}: the external data file(s) holding its weights are missing: "
            + ", ".join(str(f) for f in missing)
            + f"; keep them beside the model (in {p.parent}) under the names it refers to"
        )
    lazy = bool(data_files)
    if lazy:
        _check_external_extents(proto, p)
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(
            f"{p} parsed as an empty ONNX model (no nodes, no outputs); it is probably not a model file"
        )
    if check:
        try:  # by path: the checker parses the file itself (and reads external data files), no serialized copy
            onnx.checker.check_model(str(p))
        except onnx.checker.ValidationError as exc:
            raise ModelError(f"{p} is not a valid ONNX model: {checker_message(exc)}") from exc
    proto, notes = upgrade(proto, p)
    proto = infer_shapes(proto, size_hint=p.stat().st_size)
    model_ir = ir.serde.deserialize_model(proto)
    if lazy:  # the tensors read their bytes from the data files when asked (memory-mapped)
        ir.external_data.set_base_dir(model_ir.graph, p.parent)
    model = Model(
        ir=model_ir, path=p.resolve(), fingerprint=fingerprint_file(p), notes=notes,
        data_files=tuple(f.resolve() for f in data_files),
    )
    logger.debug("loaded %s (opset %d, %d nodes)", p, model.opset, len(proto.graph.node))
    return model


def _check_external_extents(proto: onnx.ModelProto, p: Path) -> None:
    """Every external tensor lies inside its data file (nothing is read): a truncated file is named at load."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    sizes: dict[str, int] = {}
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        if info.location not in sizes:
            sizes[info.location] = (p.parent / info.location).stat().st_size
        end = int(info.offset or 0) + (int(info.length) if info.length else _nbytes(tensor))
        if end > sizes[info.location]:
            raise ModelError(
                f"cannot read the external data of {p}: tensor {tensor.name!r} ends at byte {end} of "
                f"{info.location}, which holds {sizes[info.location]}; keep the .data files beside the model "
                "and re-export it if they are truncated"
            )


def _nbytes(tensor: onnx.TensorProto) -> int:
    """The bytes a tensor's shape and element type take (0 when the type is not a whole-byte one)."""
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
    bits = ir.DataType(tensor.data_type).bitwidth
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize if bits % 8 == 0 else 0


def _read_proto(p: Path) -> onnx.ModelProto:
    """The model file's protobuf, external data not loaded."""
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    _refuse_other_formats(p)
    if p.is_dir():
        raise ModelError(f"{p} is a directory; pass the path of an .onnx file")
    if not p.is_file():
        raise ModelError(f"{p} is not a regular file (a device, FIFO or socket); pass the path of an .onnx file")
    if p.stat().st_size == 0:
        raise ModelError(f"{p} is empty (0 bytes); re-export or re-download the model")
    if not os.access(p, os.R_OK):
        raise ModelError(f"cannot read {p}: permission denied; make it readable (chmod u+r) or copy it")
    try:
        return onnx.load(str(p), load_external_data=False)
    except PermissionError as exc:
        raise ModelError(f"cannot read {p}: permission denied; make it readable (chmod u+r) or copy it") from exc
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise ModelError(
            f"cannot read {p}: the file is not an ONNX model or is truncated/corrupt; "
            f"re-export or re-download it ({type(exc).__name__}: {exc})"
        ) from exc


def _refuse_other_formats(p: Path) -> None:
    """A PyTorch, Keras, SavedModel, pickle or TFLite file passed by habit: say which ``convert`` to run."""
    from quantscope.formats import detect_format, not_onnx_message

    if not (p.is_dir() or p.is_file()) or (p.is_file() and not os.access(p, os.R_OK)):
        return
    fmt = detect_format(p)
    if fmt not in ("onnx", "unknown"):
        raise ModelError(not_onnx_message(p, fmt))


UPGRADE_OPSET = 13
"""Models older than IR version 4 (ONNX 1.2, opset 8 or below) are converted to this opset on load."""


def upgrade(proto: onnx.ModelProto, p: Path) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """An IR-3 model converted to :data:`UPGRADE_OPSET` and a current IR version, with a note saying so.

    IR 3 requires every initializer to be a graph input, which quantized models (new initializers)
    break; quantscope writes only valid models, so it works on the upgraded model. A model the
    ONNX version converter cannot upgrade is refused with :class:`ModelError`.
    """
    if proto.ir_version >= 4:
        return proto, ()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    try:
        from onnx import version_converter

        upgraded = version_converter.convert_version(proto, max(opset, UPGRADE_OPSET)) if opset < UPGRADE_OPSET else proto
        upgraded.ir_version = max(upgraded.ir_version, onnx.helper.find_min_ir_version_for(list(upgraded.opset_import)))
        onnx.checker.check_model(upgraded)
    except Exception as exc:
        raise ModelError(
            f"{p} uses IR version {proto.ir_version} (opset {opset}), which quantscope does not write, and the "
            f"ONNX version converter cannot upgrade it ({checker_message(exc)}); re-export it with opset "
            f"{UPGRADE_OPSET} or newer"
        ) from exc
    note = (f"upgraded on load from IR version {proto.ir_version} / opset {opset} to IR version "
            f"{upgraded.ir_version} / opset {max(opset, UPGRADE_OPSET)} (ONNX version converter)")
    logger.info("%s: %s", p, note)
    return upgraded, (note,)


def external_data_files(proto: onnx.ModelProto, base_dir: Path) -> list[Path]:
    """The external data files ``proto`` refers to (subgraphs included), resolved against ``base_dir``."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    files: dict[str, Path] = {}
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            files.setdefault(location, base_dir / location)
    return list(files.values())


def infer_shapes(proto: onnx.ModelProto, *, size_hint: int | None = None) -> onnx.ModelProto:
    """ONNX shape inference, tolerant: a model it cannot fully infer is returned as is.

    ``size_hint``: the bytes of the file the proto was read from; far below 2 GB it stands in for
    ``ByteSize()``, which walks every tensor (0.13 s on an 86 MB model).
    """
    if (proto.ByteSize() if size_hint is None or size_hint > _TWO_GB // 2 else size_hint) > _TWO_GB:
        return proto
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # inference is a help, not a requirement
        logger.warning("shape inference failed, continuing without it: %s", exc)
        return proto


def from_bytes(data: bytes) -> Model:
    try:
        proto = onnx.load_from_string(data)
    except DecodeError as exc:
        raise ModelError(f"bytes are not an ONNX model: {exc}") from exc
    return Model.from_proto(infer_shapes(proto))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place."""
    p = Path(path)
    write_files(p.parent, {p.name: data})
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save(model: Model, path: str | os.PathLike[str], *, check: bool = True, value_info: bool = True) -> Path:
    """Save atomically. Models over ~1.8 GB get one external data file ``<name>.data``.

    The file is validated with the ONNX checker before it replaces anything at ``path``; the
    model and its data file are renamed into place together (:class:`~quantscope.transaction.Transaction`).
    ``value_info=False`` leaves out the inferred types of intermediate tensors (runtimes
    infer them again), which keeps small quantized models small.
    """
    out = check_output_path(path, model.path, *model.data_files, siblings=[out_data_name(path)])
    with Transaction(out.parent) as transaction:
        write_staged(model, transaction, out.name, check=check, value_info=value_info)
        transaction.commit()
    return out


def out_data_name(path: str | os.PathLike[str]) -> str:
    """The external data file written beside a large model saved to ``path``."""
    return Path(path).name + ".data"


def written_bytes(path: Path) -> int:
    """Bytes of a model file written by :func:`write_staged` and of its external data file, if any."""
    data = path.with_name(out_data_name(path))
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def write_staged(
    model: Model, transaction: Transaction, name: str, *, check: bool = True, value_info: bool = True
) -> Path:
    """Write ``model`` as ``name`` (plus ``name.data`` when large) into ``transaction``; the staged model path.

    Large models are written tensor by tensor from their (memory-mapped) sources; no protobuf
    message over 2 GB is ever built.
    """
    staged = transaction.path(name)
    try:
        if tensor_bytes(model.ir) <= _EXTERNAL_THRESHOLD:
            with open(staged, "wb") as fh:  # tensor by tensor, from their arrays or memory maps
                for piece in model_pieces(model.ir, value_info=value_info):
                    fh.write(piece)
        else:
            data_name = out_data_name(name)
            transaction.path(data_name)
            ir.save(model.ir, staged, external_data=data_name, size_threshold_bytes=1024)
        if check:
            _check_file(staged)
    except OSError as exc:
        raise OutputError(f"cannot write {transaction.directory / name}: {exc.strerror or exc}") from exc
    return staged


IN_PROCESS_CHECK_BYTES = 64 * 2**20
"""Model files (or in-memory weights) larger than this are checked by the ONNX checker and loaded by
ONNX Runtime in a child process only: checking them here would hold another copy of every weight."""

_CHECK_CHILD = (
    "import sys, onnx\n"
    "try:\n"
    "    onnx.checker.check_model(sys.argv[1])\n"
    "except onnx.checker.ValidationError as exc:\n"
    "    print((str(exc).strip().splitlines() or [repr(exc)])[0], file=sys.stderr)\n"
    "    sys.exit(3)\n"
)


def _check_file(path: Path) -> None:
    if path.stat().st_size > IN_PROCESS_CHECK_BYTES:  # an inline model this big: parsed in a child
        done = subprocess.run([sys.executable, "-c", _CHECK_CHILD, str(path)], capture_output=True, text=True,
                              check=False)
        if done.returncode == 3:
            raise ModelError(f"refusing to write an invalid model: {done.stderr.strip().splitlines()[-1]}")
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise ModelError(f"the ONNX checker could not read the written model: {tail}")
        return
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"refusing to write an invalid model: {str(exc).splitlines()[0]}") from exc
