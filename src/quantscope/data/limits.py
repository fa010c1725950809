"""Limits on what a data file may make quantscope read into memory, checked before reading.

An ``.npz`` is a zip of ``.npy`` members; each member's header declares a shape and dtype,
and the zip directory declares each member's inflated size. Both are read (a few hundred
bytes per member) and checked before any array is loaded:

* a header that declares more bytes than its member holds is a corrupt or crafted file
  (NumPy would allocate the declared size first: a header claiming 10^12 elements asks for
  terabytes);
* a member that inflates more than :attr:`ReadLimits.max_ratio` times its compressed size
  (above :data:`RATIO_FLOOR` bytes) is refused as a likely zip bomb;
* a file whose arrays total more than :attr:`ReadLimits.max_bytes` is refused before it
  is loaded into memory (``.npy`` files are memory-mapped and only checked for truth).

Raise the limits with ``QUANTSCOPE_MAX_ARRAY_BYTES`` / ``QUANTSCOPE_MAX_COMPRESSION_RATIO``
(bytes, with an optional K/M/G/T suffix) or ``Dataset.from_npz(..., max_bytes=...)``.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from quantscope.errors import ConfigError, DataError

BYTES_ENV: Final = "QUANTSCOPE_MAX_ARRAY_BYTES"
RATIO_ENV: Final = "QUANTSCOPE_MAX_COMPRESSION_RATIO"
DEFAULT_RATIO: Final = 200.0
RATIO_FLOOR: Final = 64 << 20
"""Members that inflate to less than this are never refused for their compression ratio."""
_FALLBACK_BYTES: Final = 4 << 30
_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def fmt_bytes(n: float) -> str:
    """``8589934592`` → ``'8.0 GiB (8589934592 bytes)'``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({int(n)} bytes)"
    return f"{int(n)} bytes"


def _physical_half() -> int:
    """Half the machine's physical memory, or 4 GiB when the system does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return _FALLBACK_BYTES
    return total // 2 if total > 0 else _FALLBACK_BYTES


def _parse_size(text: str, name: str) -> float:
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _UNITS else ""
    try:
        value = float(raw[: len(raw) - len(unit)]) * _UNITS[unit]
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise ConfigError(f"{name}={text!r} is not a positive size (e.g. 8G or 8589934592)")
    return value


@dataclass(frozen=True, kw_only=True)
class ReadLimits:
    """How much one data file may hold: bytes loaded into memory, and compression ratio."""

    max_bytes: int
    max_ratio: float = DEFAULT_RATIO

    @classmethod
    def resolve(cls, max_bytes: int | None = None) -> ReadLimits:
        """The limits in force: ``max_bytes`` if given, else the environment, else the defaults
        (half the physical memory; a ratio of 200)."""
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
                raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
            size = max_bytes
        elif os.environ.get(BYTES_ENV):
            size = int(_parse_size(os.environ[BYTES_ENV], BYTES_ENV))
        else:
            size = _physical_half()
        ratio = _parse_size(os.environ[RATIO_ENV], RATIO_ENV) if os.environ.get(RATIO_ENV) else DEFAULT_RATIO
        return cls(max_bytes=size, max_ratio=ratio)


def declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` needs (Python integers: no overflow)."""
    return math.prod(shape) * dtype.itemsize


def check_declared(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, held: int) -> int:
    """DataError when a header declares more bytes than its file (or member) holds; the bytes."""
    need = declared_bytes(shape, dtype)
    if need > held and not dtype.hasobject:  # object arrays are pickled: refused by the caller
        where = f"member {key!r} of {path}" if path.suffix == ".npz" else str(path)
        raise DataError(
            f"{where} declares an array of shape {shape} {dtype} = {fmt_bytes(need)} but holds "
            f"only {fmt_bytes(held)} of data: the file is corrupt or crafted; nothing was read"
        )
    return need


def check_member(path: Path, info: zipfile.ZipInfo, limits: ReadLimits) -> None:
    """DataError when an ``.npz`` member inflates suspiciously (before it is inflated)."""
    if info.compress_type == zipfile.ZIP_STORED or info.file_size < RATIO_FLOOR:
        return
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > limits.max_ratio:
        raise DataError(
            f"member {info.filename!r} of {path} inflates from {fmt_bytes(info.compress_size)} "
            f"to {fmt_bytes(info.file_size)}, a compression ratio of {ratio:.0f} (limit "
            f"{limits.max_ratio:.0f}): refused as a likely zip bomb, nothing was inflated. If the "
            f"data is genuine, set {RATIO_ENV} higher, or save it with np.savez (uncompressed)"
        )


def check_total(path: Path, total: int, limits: ReadLimits) -> None:
    """DataError when the arrays of one file total more than the memory limit."""
    if total > limits.max_bytes:
        size = path.stat().st_size if path.exists() else 0
        raise DataError(
            f"{path} holds arrays of {fmt_bytes(total)} in a file of {fmt_bytes(size)}; "
            f"reading it would take more than the limit of {fmt_bytes(limits.max_bytes)} of "
            f"memory. Split it into a folder of smaller .npz files (streamed file by file: "
            f"Dataset.from_folder), or raise the limit with {BYTES_ENV}=<bytes> or "
            "Dataset.from_npz(..., max_bytes=...)"
        )
