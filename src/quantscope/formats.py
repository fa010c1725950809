"""Which kind of model file a path holds, from its magic bytes and suffix, and what to do about it.

Users pass the file they have: a ``.pt`` checkpoint, a ``.keras`` file, a SavedModel folder, a
pickle. :func:`detect_format` tells these apart without loading them (a zip is listed, a pickle
is never unpickled), and :func:`not_onnx_message` says which ``quantscope convert`` command turns
the file into ONNX.
"""

from __future__ import annotations

import os
import shlex
import zipfile
from pathlib import Path

FORMATS = ("onnx", "torch", "keras", "h5", "savedmodel", "pickle", "joblib", "tflite", "unknown")

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ckpt", ".bin")
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_ZLIB = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")  # joblib's default compression


def _head(path: Path, size: int = 16) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _is_hdf5(path: Path) -> bool:
    """The HDF5 signature sits at offset 0, or after a user block at 512, 1024, 2048 ..."""
    try:
        with path.open("rb") as f:
            offset = 0
            while True:
                f.seek(offset)
                chunk = f.read(8)
                if chunk == _HDF5:
                    return True
                if len(chunk) < 8 or offset > 1 << 20:
                    return False
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False


def _zip_format(path: Path) -> str:
    """A zip archive's kind from its member names (nothing in it is read or run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "unknown"
    base = {n.rsplit("/", 1)[-1] for n in names}
    if "config.json" in base and ({"model.weights.h5", "metadata.json"} & base):
        return "keras"  # Keras 3: config.json + metadata.json + model.weights.h5
    if {"data.pkl", "constants.pkl", "archive_format", "version"} & base or any(
        "/data/" in n or "/archive/" in n or n.startswith("archive/") for n in names
    ):
        return "torch"  # torch.save, torch.jit.save, torch.export.save (.pt2)
    return {".keras": "keras", ".pt2": "torch", ".pt": "torch", ".pth": "torch"}.get(path.suffix.lower(), "unknown")


def _pickle_protocol(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def detect_format(path: str | os.PathLike[str]) -> str:
    """The model format of ``path``, one of :data:`FORMATS`.

    ``onnx``; ``torch`` (``torch.save``/``torch.jit.save`` zips, ``.pt2`` archives, legacy
    pickled ``.pt``/``.pth``); ``keras`` (a Keras 3 ``.keras`` zip); ``h5`` (HDF5, Keras 2);
    ``savedmodel`` (a folder with ``saved_model.pb``); ``pickle``/``joblib``; ``tflite``;
    ``unknown``. Magic bytes decide; the suffix only separates formats that share them.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return "savedmodel"
        return "unknown"
    if not p.is_file():
        return "unknown"
    head = _head(p)
    if head[:4] in _ZIP:
        return _zip_format(p)
    if _is_hdf5(p):
        return "h5"
    if head[4:8] == b"TFL3":
        return "tflite"
    if _pickle_protocol(head):
        if suffix in _TORCH_SUFFIXES:
            return "torch"  # torch.save(..., _use_new_zipfile_serialization=False)
        return "joblib" if suffix == ".joblib" else "pickle"
    if suffix == ".joblib" and head[:2] in _ZLIB:
        return "joblib"
    if suffix == ".onnx" or (head[:1] == b"\x08" and suffix not in (".pb", ".pbtxt", *_TORCH_SUFFIXES)):
        return "onnx"  # a ModelProto opens with ir_version (field 1, varint)
    return "unknown"


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def not_onnx_message(path: str | os.PathLike[str], fmt: str) -> str:
    """Why ``path`` (of format ``fmt``, from :func:`detect_format`) cannot be used as it is, and
    the ``quantscope convert`` command that makes an ONNX model of it."""
    p = Path(path)
    out = _q(p.with_suffix(".onnx").name if fmt != "savedmodel" else f"{p.name}.onnx")
    src = _q(p)
    then = f"; then pass {out} to quantscope"
    if fmt == "keras":
        return f"{p} is a Keras model (.keras), not ONNX. Convert it first: quantscope convert {src} -o {out}{then}"
    if fmt == "h5":
        return (
            f"{p} is an HDF5 file (a Keras .h5 model), not ONNX. Convert it first: "
            f"quantscope convert {src} -o {out}{then}"
        )
    if fmt == "savedmodel":
        return (
            f"{p} is a TensorFlow SavedModel folder, not an ONNX file. Convert it first: "
            f"quantscope convert {src} -o {out}{then}"
        )
    if fmt in ("pickle", "joblib"):
        return (
            f"{p} is a {fmt} file (e.g. a scikit-learn model), not ONNX. Loading it runs code stored in "
            f"it, so only convert a file you trust, with example inputs to fix the input type: "
            f"quantscope convert {src} --trust --example x.npz -o {out}{then}"
        )
    if fmt == "torch":
        load = (
            f"torch.export.load({str(p)!r}).module()" if p.suffix.lower() == ".pt2"
            else f"a model built by your code, with model.load_state_dict(torch.load({str(p)!r}))"
        )
        return (
            f"{p} is a PyTorch file, not ONNX; it holds weights (or a program), not the code that builds "
            f"the network. Write a function that returns (model, example_inputs), e.g. in mymodels.py: "
            f"def make_model(): return {load}, torch.randn(1, ...) (the shape one call takes); then run: "
            f"quantscope convert mymodels.py:make_model -o {out}{then}"
        )
    if fmt == "tflite":
        return (
            f"{p} is a TensorFlow Lite model, not ONNX; quantscope quantizes ONNX. Convert the model it "
            f"came from (quantscope convert model.keras -o {out}), or measure the .tflite file beside "
            "ONNX variants with quantscope.backends.tflite"
        )
    return (
        f"{p} is not an ONNX model (nor a PyTorch, Keras, SavedModel or pickle file quantscope "
        "recognises), or it is truncated/corrupt; re-export or re-download it"
    )


__all__ = ["FORMATS", "detect_format", "not_onnx_message"]
