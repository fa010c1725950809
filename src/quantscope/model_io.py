"""Loading and saving models: validation, fingerprints, atomic writes.

Protobuf appears here and in :mod:`quantscope.runtime` only; everything else works on
``onnx_ir`` models. A loaded model is never written back to its own path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from quantscope.errors import ModelError, OutputError
from quantscope.specs import TensorSpec

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

    @cached_property
    def _proto(self) -> onnx.ModelProto:
        return ir.to_proto(self.ir)

    def to_proto(self) -> onnx.ModelProto:
        """A protobuf copy of the model (safe to modify)."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self._proto)
        return proto

    @cached_property
    def _bytes(self) -> bytes:
        return self._proto.SerializeToString()

    def serialize(self) -> bytes:
        """The model as bytes, for ONNX Runtime sessions (cached)."""
        if self._proto.ByteSize() > _TWO_GB:
            raise ModelError("model is larger than 2 GB and cannot be serialized in memory; save it first")
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

    Raises :class:`ModelError` naming the problem for missing, corrupt or invalid files.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"{p} is a directory; pass the path of an .onnx file")
    if p.stat().st_size == 0:
        raise ModelError(f"{p} is empty (0 bytes); re-export or re-download the model")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise ModelError(
            f"cannot read {p}: the file is not an ONNX model or is truncated/corrupt; "
            f"re-export or re-download it ({type(exc).__name__}: {exc})"
        ) from exc
    data_files = external_data_files(proto, p.parent)
    missing = [f for f in data_files if not f.is_file()]
    if missing:
        raise ModelError(
            f"cannot read {p}: the external data file(s) holding its weights are missing: "
            + ", ".join(str(f) for f in missing)
            + f"; keep them beside the model (in {p.parent}) under the names it refers to"
        )
    try:
        onnx.load_external_data_for_model(proto, str(p.parent))
    except (onnx.checker.ValidationError, RuntimeError, ValueError, OSError) as exc:
        raise ModelError(
            f"cannot read the external data of {p}: {exc}; keep the .data files beside the model "
            "and re-export it if they are truncated"
        ) from exc
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(
            f"{p} parsed as an empty ONNX model (no nodes, no outputs); it is probably not a model file"
        )
    if check:
        try:
            if proto.ByteSize() > _TWO_GB:
                onnx.checker.check_model(str(p))
            else:
                onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise ModelError(f"{p} is not a valid ONNX model: {checker_message(exc)}") from exc
    proto = infer_shapes(proto)
    model = Model(
        ir=ir.from_proto(proto), path=p.resolve(), fingerprint=fingerprint_file(p),
        data_files=tuple(f.resolve() for f in data_files),
    )
    logger.debug("loaded %s (opset %d, %d nodes)", p, model.opset, len(proto.graph.node))
    return model


def external_data_files(proto: onnx.ModelProto, base_dir: Path) -> list[Path]:
    """The external data files ``proto`` refers to (subgraphs included), resolved against ``base_dir``."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    files: dict[str, Path] = {}
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            files.setdefault(location, base_dir / location)
    return list(files.values())


def infer_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference, tolerant: a model it cannot fully infer is returned as is."""
    if proto.ByteSize() > _TWO_GB:
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


def check_output_path(out: str | os.PathLike[str], *inputs: Path | None) -> Path:
    """Refuse output paths that would overwrite an input or cannot be written."""
    o = Path(out).resolve()
    for src in inputs:
        if src is not None and o == Path(src).resolve():
            raise OutputError(
                f"output path {o} is the input model or one of its data files ({Path(src).name}); "
                "choose another path (inputs are never overwritten)"
            )
    if o.exists() and o.is_dir():
        raise OutputError(f"output path {o} is a directory; give a file name such as {o / 'model.onnx'}")
    parent = o.parent
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {o}: {parent} is a file, not a directory; choose an output path inside a directory"
        )
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable; choose another location")
    return o


def _file_mode() -> int:
    """0o666 minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _temporary_sibling(path: Path, suffix: str = "") -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    try:  # mkstemp makes the file 0600; give the written file the usual umask-based mode
        os.fchmod(fd, _file_mode())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place."""
    p = Path(path)
    try:
        with _temporary_sibling(p) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"cannot write {p}: {exc.strerror or exc}") from exc
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save(model: Model, path: str | os.PathLike[str], *, check: bool = True, value_info: bool = True) -> Path:
    """Save atomically. Models over ~1.8 GB get one external data file ``<name>.data``.

    The file is validated with the ONNX checker before it replaces anything at ``path``.
    ``value_info=False`` leaves out the inferred types of intermediate tensors (runtimes
    infer them again), which keeps small quantized models small.
    """
    out = check_output_path(path, model.path, *model.data_files)
    proto = ir.to_proto(model.ir)
    if not value_info:
        del proto.graph.value_info[:]
    external = proto.ByteSize() > _EXTERNAL_THRESHOLD
    try:
        if not external:
            data = proto.SerializeToString()
            with _temporary_sibling(out) as tmp:
                tmp.write_bytes(data)
                if check:
                    _check_file(tmp)
                os.replace(tmp, out)
        else:
            data_name = out.name + ".data"
            with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmpdir:
                tmp_model = Path(tmpdir) / out.name
                onnx.save_model(
                    proto, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024,
                )
                if check:
                    _check_file(tmp_model)
                os.replace(Path(tmpdir) / data_name, out.parent / data_name)
                os.replace(tmp_model, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


def _check_file(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"refusing to write an invalid model: {str(exc).splitlines()[0]}") from exc
