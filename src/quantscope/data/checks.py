"""Validation helpers shared by the data package: array coercion, sample counts,
``.npy``/``.npz`` header reading, finiteness, shape and dtype comparisons.

Pure functions over arrays and files; nothing here knows about datasets or models.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import numpy as np

from quantscope.data.limits import ReadLimits, check_declared, check_member, check_total
from quantscope.errors import ConfigError, DataError, DataMismatchError, NonFiniteDataError

UNNAMED: Final = "<unnamed>"
"""Name under which a bare array waits for :meth:`Dataset.bind` to name it."""

READ_ERRORS: Final = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)
"""What numpy and zipfile raise on a missing, truncated or corrupt .npy/.npz file."""

Header = tuple[tuple[int, ...], np.dtype]
"""Shape and dtype of a stored array."""


class Arrays(NamedTuple):
    """The arrays of some samples, sorted by role; every first axis is the sample axis."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    meta: dict[str, np.ndarray]


class Locator(Protocol):
    """Says where a row of a batch comes from, for error messages."""

    def where(self, row: int) -> str: ...


def read_only(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (the caller's own flags are left alone)."""
    view = arr.view()
    view.flags.writeable = False
    return view


def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a read-only array, or a DataError naming ``what``."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} is not an array: {exc}") from exc
    return read_only(arr)


def fmt_shape(shape: Sequence[Any]) -> str:
    """A shape as Python writes a tuple, ``?`` for unknown dimensions."""
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def validate_int(value: Any, what: str, minimum: int) -> int:
    """An integer argument at least ``minimum``, or a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, got {value}")
    return int(value)


def check_lengths(lengths: Mapping[str, int], where: str) -> int:
    """The common sample count of labelled arrays, or a DataMismatchError listing them."""
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{label}: {n}" for label, n in lengths.items())
        raise DataMismatchError(
            f"{where}: arrays have different numbers of samples (first axis) - {listing}"
        )
    return next(iter(lengths.values()))


def num_rows(arrays: Arrays, where: str) -> int:
    """The common first-axis length of every array, or a DataMismatchError."""
    named = [(f"input {k!r}", a) for k, a in arrays.inputs.items()]
    if arrays.labels is not None:
        named.append(("labels", arrays.labels))
    named += [(f"metadata {k!r}", a) for k, a in arrays.meta.items()]
    for label, arr in named:
        if arr.ndim == 0:
            raise DataMismatchError(
                f"{where}: {label} is a scalar; arrays need a first (sample) axis"
            )
    return check_lengths({label: arr.shape[0] for label, arr in named}, where)


def _read_npy_header(f: Any) -> Header | None:
    """Shape and dtype from an open .npy stream; None for header versions we do not parse."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return None
    return tuple(shape), np.dtype(dtype)


def _member_headers(path: Path, limits: ReadLimits) -> dict[str, Header]:
    """Headers of the ``.npy`` members of an ``.npz``, each checked against ``limits`` first."""
    out: dict[str, Header] = {}
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            check_member(path, info, limits)
            if not info.filename.endswith(".npy"):  # NumPy reads other members whole, as bytes
                total += info.file_size
                continue
            key = info.filename[: -len(".npy")]
            with zf.open(info) as f:
                header = _read_npy_header(f)
                offset = f.tell()
            if header is None:  # a header version we do not parse: bounded by the member size
                check_total(path, total + info.file_size, limits)
                with zf.open(info) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                header, offset = (arr.shape, arr.dtype), info.file_size - arr.nbytes
            total += check_declared(path, key, *header, info.file_size - offset)
            out[key] = header
    check_total(path, total, limits)
    return out


def file_headers(path: Path, limits: ReadLimits | None = None) -> dict[str, Header]:
    """Array headers of an .npz (by key) or .npy (under UNNAMED), without reading data.

    Every header is checked against the bytes its file holds, and an ``.npz`` against
    ``limits`` (default: :meth:`ReadLimits.resolve`), before anything is inflated; a
    ``.npy`` is memory-mapped when read, so only its header's truth is checked.
    """
    out: dict[str, Header] = {}
    try:
        if path.suffix == ".npy":
            with path.open("rb") as f:
                header = _read_npy_header(f)
                offset = f.tell()
            if header is None:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                header = arr.shape, arr.dtype
            else:
                check_declared(path, UNNAMED, *header, path.stat().st_size - offset)
            out[UNNAMED] = header
        else:
            out = _member_headers(path, limits or ReadLimits.resolve())
    except DataError:
        raise
    except PermissionError as exc:
        raise DataError(
            f"cannot read {path}: permission denied; make the file readable (chmod u+r)"
        ) from exc
    except READ_ERRORS as exc:
        raise DataError(
            f"cannot read {path}: not a valid {path.suffix} file ({type(exc).__name__}: {exc})"
        ) from exc
    for key, (_, dtype) in out.items():
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {key!r} holds Python objects (needs pickle); save numeric arrays"
            )
    return out


FINITE_NEEDS: Final = {
    "calibration": "Calibration needs finite data",
    "evaluation": "Evaluation needs finite data (metrics on NaN or infinite outputs are meaningless)",
}
"""What each use of :func:`check_finite` says it needs, by purpose."""


def check_finite(
    inputs: Mapping[str, np.ndarray], at: Locator, purpose: str = "calibration"
) -> None:
    """Raise NonFiniteDataError at the first sample with a NaN or infinity in a float input.

    ``purpose`` (``"calibration"`` or ``"evaluation"``) says in the message why it matters.
    """
    for name, arr in inputs.items():
        if arr.dtype.kind not in "fc":
            continue
        finite = np.isfinite(arr)
        if finite.all():
            continue
        bad_rows = np.flatnonzero(~finite.reshape(len(arr), -1).all(axis=1))
        row = int(bad_rows[0])
        sample = arr[row]
        n_nan = int(np.isnan(sample).sum())
        n_inf = int(np.isinf(sample).sum())
        more = len(bad_rows) - 1
        also = f"; {more} more sample(s) of this batch are affected too" if more else ""
        raise NonFiniteDataError(
            f"input {name!r}: {at.where(row)} holds {n_nan} NaN and {n_inf} infinite "
            f"value(s) out of {sample.size}{also}. {FINITE_NEEDS.get(purpose, FINITE_NEEDS['calibration'])}: "
            "clean or drop these samples"
        )


def dims_match(want: Sequence[Any], got: Sequence[int]) -> bool:
    """Same rank, and every fixed (non-negative int) dimension of ``want`` equal in ``got``."""
    if len(want) != len(got):
        return False
    return all(not isinstance(w, int) or w < 0 or w == g for w, g in zip(want, got, strict=True))


def same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Equal dtypes; text of different widths counts as the same (it widens on joining)."""
    return a == b or (a.kind == b.kind and a.kind in "US")
