"""Datasets that feed models during calibration and evaluation.

A :class:`Dataset` is an immutable, re-iterable, deterministic sequence of samples.
Each sample maps model input names to arrays *without* the sample axis; it may carry
a label and metadata (e.g. a slice name). Methods such as :meth:`Dataset.take`,
:meth:`Dataset.map` and :meth:`Dataset.bind` return new datasets and read nothing
until the data is iterated, with :meth:`Dataset.batches`.

Conventions, shared by every source:

* Dict-like sources (``.npz`` files, folders, dicts from iterables) use the key
  ``labels`` (``labels_key=``) for labels; keys starting with ``meta_`` become
  metadata under the name without the prefix (``meta_slice`` -> ``slice``), and keys
  listed in ``meta_keys=`` become metadata under their own name. Every other key is
  a model input.
* A bare array is "the model's only input": it is held under :data:`UNNAMED` until
  :meth:`Dataset.bind` gives it the model's input name.
* Memory: a single ``.npz`` is read once, when the dataset is created, and batches
  are views of it; a ``.npy`` file is memory-mapped. A folder is streamed file by
  file: only its array headers are read up front (to count samples and check keys),
  and a step holds at most the files its batch spans. In-memory arrays are never
  copied for batches that are contiguous slices.
* Caller data is never modified: arrays handed out are read-only views, or new
  arrays. Treat batch arrays as read-only and copy before changing them in place.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np

from quantscope.errors import (
    ConfigError,
    DataError,
    DataMismatchError,
    EmptyDatasetError,
    NonFiniteDataError,
)
from quantscope.specs import TensorSpec

logger = logging.getLogger(__name__)

UNNAMED: Final = "<unnamed>"
"""Name under which a bare array waits for :meth:`Dataset.bind` to name it."""

META_PREFIX: Final = "meta_"

_CONVERTIBLE: Final = frozenset(
    {
        (np.dtype(np.float64), np.dtype(np.float32)),
        (np.dtype(np.int32), np.dtype(np.int64)),
    }
)
"""(data dtype, model dtype) pairs that :meth:`Dataset.bind` converts instead of refusing."""

# What numpy and zipfile raise on a missing, truncated or corrupt .npy/.npz file.
_READ_ERRORS: Final = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


@dataclass(frozen=True, eq=False)
class Batch:
    """A batch of consecutive dataset samples; every array's first axis is the batch."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    meta: dict[str, np.ndarray]
    indices: np.ndarray
    """Positions of the samples in the dataset the batch came from (0 .. len-1)."""

    @property
    def size(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------------
# Sources: chunks of consecutive samples read as one unit.


class _Chunk:
    """Consecutive source samples read as one unit (an array set, a file, an element).

    ``get(kind)`` loads the inputs, labels or metadata on first use and keeps them
    while the chunk lives, so a file is read only while its samples are batched.
    """

    __slots__ = ("_cache", "_describe", "_loader", "n")

    def __init__(
        self, n: int, loader: Callable[[str], Any], describe: Callable[[int], str]
    ) -> None:
        self.n = n
        self._loader = loader
        self._describe = describe
        self._cache: dict[str, Any] = {}

    def get(self, kind: str) -> Any:
        if kind not in self._cache:
            self._cache[kind] = self._loader(kind)
        return self._cache[kind]

    def describe(self, row: int) -> str:
        return self._describe(row)


def _no_place(_row: int) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class _Source:
    description: str
    num_samples: int | None  # None: unknown until iterated
    input_names: tuple[str, ...] | None  # None: known only by reading
    has_labels: bool | None
    chunks: Callable[[], Iterator[_Chunk]]


@dataclass(frozen=True, slots=True)
class _Piece:
    """Rows of one chunk that go into one batch."""

    chunk: _Chunk
    rows: slice | np.ndarray  # local rows in the chunk
    src: int | np.ndarray  # source index of the first row (slice) or of every row

    def __len__(self) -> int:
        if isinstance(self.rows, slice):
            return self.rows.stop - self.rows.start
        return len(self.rows)

    def split(self, k: int) -> tuple[_Piece, _Piece | None]:
        if len(self) <= k:
            return self, None
        rows, src = self.rows, self.src
        if isinstance(rows, slice):
            start, stop = rows.start, rows.stop
            return (
                _Piece(self.chunk, slice(start, start + k), src),
                _Piece(self.chunk, slice(start + k, stop), src + k),
            )
        return (
            _Piece(self.chunk, rows[:k], src[:k]),
            _Piece(self.chunk, rows[k:], src[k:]),
        )

    def local_at(self, i: int) -> int:
        return self.rows.start + i if isinstance(self.rows, slice) else int(self.rows[i])

    def src_at(self, i: int) -> int:
        return self.src + i if isinstance(self.src, int) else int(self.src[i])


class _Ctx:
    """Where each row of a batch comes from, for error messages."""

    __slots__ = ("peek", "pieces", "positions")

    def __init__(self, pieces: list[_Piece], positions: np.ndarray, peek: bool = False) -> None:
        self.pieces = pieces
        self.positions = positions
        self.peek = peek

    def where(self, row: int) -> str:
        pos = int(self.positions[row])
        offset = 0
        for piece in self.pieces:
            if row < offset + len(piece):
                i = row - offset
                notes = []
                src = piece.src_at(i)
                if src != pos:
                    notes.append(f"sample {src} of the source")
                place = piece.chunk.describe(piece.local_at(i))
                if place:
                    notes.append(place)
                return f"sample {pos}" + (f" ({', '.join(notes)})" if notes else "")
            offset += len(piece)
        return f"sample {pos}"


@dataclass(frozen=True, slots=True)
class _Step:
    """A per-batch transform of the inputs (``map`` or ``bind``)."""

    apply: Callable[[dict[str, np.ndarray], _Ctx], dict[str, np.ndarray]]
    names: tuple[str, ...] | None  # input names after the step; None: known only by running


# ---------------------------------------------------------------------------
# Small helpers.


def _read_only(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} is not an array: {exc}") from exc
    return _read_only(arr)


def _rows(arr: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    out = arr[rows]
    if isinstance(arr, np.memmap):  # copy the batch out, so no batch pins the file
        return np.array(out)
    return out


def _fmt_shape(shape: Sequence[Any]) -> str:
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _key_roles(
    keys: Iterable[Any], labels_key: str | None, meta_keys: Sequence[str], where: str
) -> dict[str, tuple[str, str]]:
    """Role of each key of a dict-like source: ``key -> (kind, name)`` (see the module doc)."""
    listed = set(meta_keys)
    roles: dict[str, tuple[str, str]] = {}
    meta_names: set[str] = set()
    for key in keys:
        if not isinstance(key, str):
            raise DataError(f"{where}: key {key!r} is not a string; name arrays by model input")
        if labels_key is not None and key == labels_key:
            roles[key] = ("labels", "labels")
            continue
        if key in listed:
            name = key
        elif key.startswith(META_PREFIX):
            name = key[len(META_PREFIX) :]
        else:
            roles[key] = ("inputs", key)
            continue
        if name in meta_names:
            raise DataError(f"{where}: two keys give metadata {name!r}; rename one of them")
        meta_names.add(name)
        roles[key] = ("meta", name)
    return roles


def _split_keys(
    arrays: Mapping[str, Any], labels_key: str | None, meta_keys: Sequence[str], where: str
) -> tuple[dict[str, Any], Any | None, dict[str, Any]]:
    """Sort a dict's entries into inputs, labels and metadata."""
    inputs: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    labels = None
    for key, (kind, name) in _key_roles(arrays, labels_key, meta_keys, where).items():
        if kind == "labels":
            labels = arrays[key]
        elif kind == "meta":
            meta[name] = arrays[key]
        else:
            inputs[name] = arrays[key]
    return inputs, labels, meta


def _num_rows(
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    meta: Mapping[str, np.ndarray],
    where: str,
) -> int:
    """The common first-axis length of every array, or a DataMismatchError."""
    named = [(f"input {k!r}", a) for k, a in inputs.items()]
    if labels is not None:
        named.append(("labels", labels))
    named += [(f"metadata {k!r}", a) for k, a in meta.items()]
    for label, arr in named:
        if arr.ndim == 0:
            raise DataMismatchError(
                f"{where}: {label} is a scalar; arrays need a first (sample) axis"
            )
    lengths = {label: arr.shape[0] for label, arr in named}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{label}: {n}" for label, n in lengths.items())
        raise DataMismatchError(
            f"{where}: arrays have different numbers of samples (first axis) - {listing}"
        )
    return next(iter(lengths.values()))


def _memory_chunk(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray | None,
    meta: dict[str, np.ndarray],
    n: int,
    describe: Callable[[int], str] = _no_place,
) -> _Chunk:
    parts = {"inputs": inputs, "labels": labels, "meta": meta}
    return _Chunk(n, parts.__getitem__, describe)


def _validate_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, got {value}")
    return int(value)


# ---------------------------------------------------------------------------
# .npy / .npz reading.


def _read_npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from an open .npy stream; None for header versions we do not parse."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return None
    return tuple(shape), np.dtype(dtype)


def _file_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array headers of an .npz (by key) or .npy (under UNNAMED), without reading data."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        if path.suffix == ".npy":
            with path.open("rb") as f:
                header = _read_npy_header(f)
            if header is None:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                header = arr.shape, arr.dtype
            out[UNNAMED] = header
        else:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as f:
                        header = _read_npy_header(f)
                    if header is None:
                        with zf.open(info) as f:
                            arr = np.lib.format.read_array(f, allow_pickle=False)
                        header = arr.shape, arr.dtype
                    out[info.filename[: -len(".npy")]] = header
    except _READ_ERRORS as exc:
        raise DataError(
            f"cannot read {path}: not a valid {path.suffix} file ({type(exc).__name__}: {exc})"
        ) from exc
    for key, (_, dtype) in out.items():
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {key!r} holds Python objects (needs pickle); save numeric arrays"
            )
    return out


# ---------------------------------------------------------------------------
# Iterable sources.


def _element_parts(
    item: Any, index: int, batched: bool, labels_key: str | None, meta_keys: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, np.ndarray], int]:
    where = f"element {index} of the iterable"
    if isinstance(item, Mapping):
        raw_inputs, raw_labels, raw_meta = _split_keys(item, labels_key, meta_keys, where)
        inputs = {k: _as_array(v, f"{where}, key {k!r}") for k, v in raw_inputs.items()}
        labels = None if raw_labels is None else _as_array(raw_labels, f"{where}, labels")
        meta = {k: _as_array(v, f"{where}, metadata {k!r}") for k, v in raw_meta.items()}
        if not inputs:
            raise DataError(f"{where} holds no model input (only labels or metadata)")
    else:
        inputs = {UNNAMED: _as_array(item, where)}
        labels, meta = None, {}
    if not batched:
        inputs = {k: a[None] for k, a in inputs.items()}
        labels = None if labels is None else labels[None]
        meta = {k: a[None] for k, a in meta.items()}
        return inputs, labels, meta, 1
    return inputs, labels, meta, _num_rows(inputs, labels, meta, f"{where} (batched=True)")


def _iterable_chunks(
    make: Callable[[], Any],
    batched: bool,
    labels_key: str | None,
    meta_keys: Sequence[str],
    state: dict[str, Any],
) -> Iterator[_Chunk]:
    produced = make()
    try:
        iterator = iter(produced)
    except TypeError as exc:
        raise ConfigError(
            f"the data callable must return an iterable, got {type(produced).__name__}"
        ) from exc
    last = state.get("last")
    if last is not None and last() is iterator:
        raise ConfigError(
            "the data callable returned the same iterator twice; it must return a fresh "
            "iterator on every call (e.g. lambda: iter(my_list) or lambda: my_generator())"
        )
    try:
        state["last"] = weakref.ref(iterator)
    except TypeError:  # not every iterator supports weak references
        state["last"] = None
    first: tuple[frozenset[str], bool, frozenset[str]] | None = None
    count = 0
    try:
        for index, item in enumerate(iterator):
            inputs, labels, meta, n = _element_parts(item, index, batched, labels_key, meta_keys)
            signature = (frozenset(inputs), labels is not None, frozenset(meta))
            if first is None:
                first = signature
            elif signature != first:
                raise DataMismatchError(
                    f"element {index} of the iterable has inputs {sorted(signature[0])}, "
                    f"labels {'yes' if signature[1] else 'no'}, metadata {sorted(signature[2])}; "
                    f"element 0 has inputs {sorted(first[0])}, labels "
                    f"{'yes' if first[1] else 'no'}, metadata {sorted(first[2])}; "
                    "every element needs the same keys"
                )
            count += 1
            state["produced"] = True
            if batched:

                def describe(row: int, i: int = index) -> str:
                    return f"row {row} of element {i}"

            else:

                def describe(row: int, i: int = index) -> str:
                    return f"element {i}"

            yield _memory_chunk(inputs, labels, meta, n, describe)
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    if count == 0 and state.get("produced"):
        raise DataError(
            "the data callable returned an exhausted iterator on a second pass; "
            "it must return a fresh iterator on every call (e.g. lambda: iter(my_list))"
        )


# ---------------------------------------------------------------------------
# Checks applied per batch.


def _check_finite(inputs: Mapping[str, np.ndarray], ctx: _Ctx) -> None:
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
            f"input {name!r}: {ctx.where(row)} holds {n_nan} NaN and {n_inf} infinite "
            f"value(s) out of {sample.size}{also}. Calibration needs finite data: "
            "clean or drop these samples"
        )


def _dims_match(want: Sequence[Any], got: Sequence[int]) -> bool:
    if len(want) != len(got):
        return False
    return all(not isinstance(w, int) or w < 0 or w == g for w, g in zip(want, got, strict=True))


def _bind_step(specs: tuple[TensorSpec, ...], rename: dict[str, str]) -> _Step:
    """The per-batch check and conversion of :meth:`Dataset.bind`."""
    expected = "; ".join(spec.describe() for spec in specs)
    data_names = {spec.name: rename.get(spec.name, spec.name) for spec in specs}
    warned: set[str] = set()

    def check_shape(spec: TensorSpec, arr: np.ndarray, ctx: _Ctx) -> None:
        if spec.shape is None:
            return
        want, got = spec.shape[1:], arr.shape[1:]
        if not _dims_match(want, got):
            what = "rank" if len(want) != len(got) else "shape"
            raise DataMismatchError(
                f"input {spec.name!r}: {what} mismatch - {ctx.where(0)} has shape "
                f"{_fmt_shape(got)} but the model expects {_fmt_shape(want)} per sample "
                f"(model input {spec.describe()}; its first dimension is the batch)"
            )
        batch = spec.shape[0]
        if not ctx.peek and isinstance(batch, int) and batch > 0 and arr.shape[0] != batch:
            raise DataMismatchError(
                f"model input {spec.name!r} has a fixed batch size of {batch} but the batch "
                f"starting at {ctx.where(0)} holds {arr.shape[0]} samples; use "
                f"batches({batch}, drop_last=True)"
            )

    def convert(spec: TensorSpec, arr: np.ndarray, ctx: _Ctx) -> np.ndarray:
        want = np.dtype(spec.dtype)
        if arr.dtype == want:
            return arr
        if (arr.dtype, want) not in _CONVERTIBLE:
            raise DataMismatchError(
                f"input {spec.name!r}: the model wants {want.name} but {ctx.where(0)} is "
                f"{arr.dtype.name}; convert the data first, e.g. arr.astype(np.{want.name})"
            )
        if spec.name not in warned:
            warned.add(spec.name)
            logger.warning(
                "input %r: converting %s data to the %s the model expects "
                "(pass %s data to avoid the copy)",
                spec.name,
                arr.dtype.name,
                want.name,
                want.name,
            )
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(want)
        if want.kind == "f":
            overflow = np.isinf(out) & np.isfinite(arr)
            if overflow.any():
                row = int(np.flatnonzero(overflow.reshape(len(arr), -1).any(axis=1))[0])
                raise DataMismatchError(
                    f"input {spec.name!r}: {ctx.where(row)} holds values beyond the "
                    f"{want.name} range (max {np.finfo(want).max:.3g}); rescale the data"
                )
        return out

    def apply(inputs: dict[str, np.ndarray], ctx: _Ctx) -> dict[str, np.ndarray]:
        if set(inputs) != set(data_names.values()):
            raise DataMismatchError(
                f"the batch starting at {ctx.where(0)} has inputs {sorted(inputs)} "
                f"but the model expects: {expected}"
            )
        out: dict[str, np.ndarray] = {}
        for spec in specs:
            arr = inputs[data_names[spec.name]]
            check_shape(spec, arr, ctx)
            out[spec.name] = convert(spec, arr, ctx)
        return out

    return _Step(apply, tuple(spec.name for spec in specs))


def _map_step(fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]]) -> _Step:
    label = getattr(fn, "__name__", repr(fn))

    def apply(inputs: dict[str, np.ndarray], ctx: _Ctx) -> dict[str, np.ndarray]:
        result = fn(dict(inputs))
        if not isinstance(result, Mapping):
            raise ConfigError(
                f"map function {label} must return a dict of arrays, got {type(result).__name__}"
            )
        n = len(ctx.positions)
        out: dict[str, np.ndarray] = {}
        for key, value in result.items():
            if not isinstance(key, str):
                raise ConfigError(f"map function {label} returned a non-string key {key!r}")
            arr = np.asarray(value)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ConfigError(
                    f"map function {label} returned {key!r} with shape {arr.shape} for a "
                    f"batch of {n} samples; it must keep the first (sample) axis"
                )
            out[key] = arr
        if not out:
            raise ConfigError(f"map function {label} returned no arrays")
        return out

    return _Step(apply, None)


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Equal dtypes; text of different widths counts as the same (it widens on joining)."""
    return a == b or (a.kind == b.kind and a.kind in "US")


def _gather(pieces: list[_Piece], kind: str, ctx: _Ctx) -> Any:
    """The rows of ``pieces`` for one kind, concatenated (a view when there is one piece)."""
    single = kind == "labels"
    parts: list[dict[str, np.ndarray]] = []
    for piece in pieces:
        value = piece.chunk.get(kind)
        if single:
            value = {} if value is None else {"labels": value}
        parts.append({k: _rows(a, piece.rows) for k, a in value.items()})
    first = parts[0]
    if len(parts) > 1:
        row = 0
        for piece, part in zip(pieces, parts, strict=True):
            if set(part) != set(first):
                raise DataMismatchError(
                    f"{ctx.where(row)} has {kind} {sorted(part)} but {ctx.where(0)} has "
                    f"{sorted(first)}; every sample needs the same keys"
                )
            for key, arr in part.items():
                ref = first[key]
                if arr.shape[1:] != ref.shape[1:] or not _same_dtype(arr.dtype, ref.dtype):
                    label = "labels" if single else f"{kind} {key!r}"
                    raise DataMismatchError(
                        f"{label}: {ctx.where(row)} is {arr.dtype.name}{_fmt_shape(arr.shape[1:])} "
                        f"but {ctx.where(0)} is {ref.dtype.name}{_fmt_shape(ref.shape[1:])}; "
                        "samples of different shapes or dtypes cannot share a batch "
                        "(use batch size 1 for ragged data, or pad)"
                    )
            row += len(piece)
        first = {k: np.concatenate([part[k] for part in parts]) for k in first}
    if single:
        return first.get("labels")
    return first


# ---------------------------------------------------------------------------
# The dataset.


class Dataset:
    """An immutable, re-iterable, deterministic sequence of samples for a model.

    Build one with :meth:`from_npz`, :meth:`from_folder`, :meth:`from_arrays` or
    :meth:`from_iterable`; iterate it with :meth:`batches`. Iterating twice yields
    identical batches.
    """

    def __init__(
        self,
        _source: _Source,
        *,
        _selection: np.ndarray | None = None,
        _limit: int | None = None,
        _steps: tuple[_Step, ...] = (),
    ) -> None:
        if not isinstance(_source, _Source):
            raise ConfigError(
                "build a Dataset with Dataset.from_npz, from_folder, from_arrays or from_iterable"
            )
        self._source = _source
        self._selection = _selection  # sorted source indices, or None for all
        self._limit = _limit  # keep only the first _limit source samples
        self._steps = _steps

    def _replace(self, **changes: Any) -> Dataset:
        fields = {
            "_selection": self._selection,
            "_limit": self._limit,
            "_steps": self._steps,
        }
        fields.update(changes)
        return Dataset(self._source, **fields)

    # -- sources -------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, Any] | np.ndarray,
        labels: Any | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Samples from in-memory arrays whose first axis is the sample axis.

        A bare array is the model's single input, named by :meth:`bind`. The arrays
        are not copied; batches are read-only views of them.
        """
        if isinstance(arrays, Mapping):
            raw = dict(arrays)
        elif isinstance(arrays, list | tuple):
            raise ConfigError(
                "from_arrays takes an array or a dict {input name: array}; for a list of "
                "samples use Dataset.from_iterable"
            )
        else:
            raw = {UNNAMED: arrays}
        if meta is not None and not isinstance(meta, Mapping):
            raise ConfigError(f"meta must be a dict {{name: array}}, got {type(meta).__name__}")
        for key in [*raw, *(meta or {})]:
            if not isinstance(key, str):
                raise ConfigError(f"array names must be strings, got {key!r}")
        inputs = {k: _as_array(v, f"input {k!r}") for k, v in raw.items()}
        lab = None if labels is None else _as_array(labels, "labels")
        met = {k: _as_array(v, f"metadata {k!r}") for k, v in (meta or {}).items()}
        return cls._in_memory(inputs, lab, met, "arrays")

    @classmethod
    def _in_memory(
        cls,
        inputs: dict[str, np.ndarray],
        labels: np.ndarray | None,
        meta: dict[str, np.ndarray],
        description: str,
    ) -> Dataset:
        if not inputs:
            raise ConfigError(f"{description}: no input arrays (only labels or metadata)")
        n = _num_rows(inputs, labels, meta, description)
        if n == 0:
            raise EmptyDatasetError(f"{description}: zero samples (the first axis is empty); give at least one sample")
        chunk_args = (inputs, labels, meta, n)
        source = _Source(
            description=description,
            num_samples=n,
            input_names=tuple(inputs),
            has_labels=labels is not None,
            chunks=lambda: iter([_memory_chunk(*chunk_args)]),
        )
        return cls(source)

    @classmethod
    def from_npz(
        cls,
        path: str | Path,
        *,
        labels_key: str | None = "labels",
        meta_keys: Sequence[str] = (),
    ) -> Dataset:
        """Samples from one ``.npz`` file keyed by model input name (first axis = samples).

        The file is read once, now; batches are views of the loaded arrays. A ``.npy``
        file is accepted too, as the model's single input, and is memory-mapped.
        """
        p = Path(path)
        if not p.exists():
            raise DataError(f"data file {p} does not exist")
        if p.is_dir():
            raise DataError(f"{p} is a folder; use Dataset.from_folder for a folder of files")
        try:
            loaded = np.load(p, mmap_mode="r", allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                arrays: dict[str, np.ndarray] = {UNNAMED: loaded}
            else:
                with loaded:
                    arrays = {k: loaded[k] for k in loaded.files}
        except _READ_ERRORS as exc:
            raise DataError(
                f"cannot read {p}: not a valid .npz (or .npy) file, or it is truncated or "
                f"corrupt ({type(exc).__name__}: {exc})"
            ) from exc
        where = f"npz file {p}"
        inputs, labels, meta = _split_keys(arrays, labels_key, meta_keys, where)
        return cls._in_memory(
            {k: _read_only(a) for k, a in inputs.items()},
            None if labels is None else _read_only(labels),
            {k: _read_only(a) for k, a in meta.items()},
            where,
        )

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        pattern: str | None = None,
        labels_key: str | None = "labels",
        meta_keys: Sequence[str] = (),
    ) -> Dataset:
        """Samples streamed from a folder of ``.npz`` files, or of ``.npy`` files.

        Every ``.npz`` holds one or more samples under the same keys (as
        :meth:`from_npz`). A ``.npy`` file holds samples of the model's single input
        (first axis = samples), named by :meth:`bind`; a folder may not mix the two.
        Files are taken in sorted order of their path relative to the folder (name them
        with zero-padded numbers). ``pattern`` is a glob relative to the folder
        (``"**/*.npz"`` recurses); by default every ``.npz``/``.npy`` file directly in
        it. Only array headers are read now; data is read file by file while iterating.
        """
        root = Path(path)
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a folder"
            raise DataError(f"data folder {root} {what}")
        if pattern is None:
            candidates = [p for p in root.iterdir() if p.is_file()]
            files = [p for p in candidates if p.suffix in (".npz", ".npy")]
            if len(files) != len(candidates):
                logger.debug("%s: ignoring files that are not .npz or .npy", root)
        else:
            try:
                files = [p for p in root.glob(pattern) if p.is_file()]
            except (ValueError, NotImplementedError) as exc:
                raise ConfigError(f"pattern {pattern!r} is not a usable glob: {exc}") from exc
            odd = [p.name for p in files if p.suffix not in (".npz", ".npy")]
            if odd:
                raise ConfigError(
                    f"pattern {pattern!r} in {root} matches files that are neither .npz nor "
                    f".npy: {odd[:5]}"
                )
        files.sort(key=lambda p: p.relative_to(root).as_posix())
        if not files:
            raise EmptyDatasetError(
                f"data folder {root} holds no .npz or .npy files"
                + (f" matching {pattern!r}" if pattern else "")
            )
        if len({p.suffix for p in files}) > 1:
            raise DataError(
                f"data folder {root} mixes .npz and .npy files; keep one kind, or select "
                "one with pattern='*.npz'"
            )

        entries: list[tuple[Path, int, dict[str, tuple[str, str]]]] = []
        reference: tuple[Path, dict[tuple[str, str], tuple[np.dtype, int]]] | None = None
        total = 0
        for file in files:
            headers = _file_headers(file)
            where = f"file {file}"
            keys = _key_roles(headers, labels_key, meta_keys, where)
            if not any(kind == "inputs" for kind, _ in keys.values()):
                raise DataError(f"{where} holds no model input (only labels or metadata)")
            layout = {keys[k]: (dtype, len(shape)) for k, (shape, dtype) in headers.items()}
            for (kind, name), (_dtype, ndim) in layout.items():
                if ndim == 0:
                    raise DataMismatchError(
                        f"{where}: {kind} {name!r} is a scalar; arrays need a first (sample) axis"
                    )
            lengths = {f"{kind} {name!r}": headers[k][0][0] for k, (kind, name) in keys.items()}
            if len(set(lengths.values())) > 1:
                raise DataMismatchError(
                    f"{where}: arrays have different numbers of samples (first axis) - "
                    + ", ".join(f"{label}: {n}" for label, n in lengths.items())
                )
            if reference is None:
                reference = (file, layout)
            elif layout != reference[1]:
                raise DataMismatchError(
                    f"{where} does not match {reference[0]}: "
                    f"{_describe_layout(layout)} vs {_describe_layout(reference[1])}; every "
                    "file needs the same keys, dtypes and ranks"
                )
            n = next(iter(lengths.values()))
            total += n
            entries.append((file, n, keys))
        if total == 0 or reference is None:
            raise EmptyDatasetError(f"the files in data folder {root} hold zero samples")
        names = tuple(name for kind, name in reference[1] if kind == "inputs")
        has_labels = any(kind == "labels" for kind, _ in reference[1])

        def chunks() -> Iterator[_Chunk]:
            for file, n, keys in entries:
                if n:
                    yield _file_chunk(file, n, keys)

        source = _Source(f"data folder {root}", total, names, has_labels, chunks)
        return cls(source)

    @classmethod
    def from_iterable(
        cls,
        source: Iterable[Any] | Callable[[], Iterable[Any]],
        *,
        batched: bool = False,
        labels_key: str | None = "labels",
        meta_keys: Sequence[str] = (),
    ) -> Dataset:
        """Samples from dicts ``{name: array}`` or bare arrays (the single input).

        Each element is one sample, or with ``batched=True`` one batch (first axis).
        The source must be re-iterable: a list/tuple (length known, checked now), a
        re-iterable object, or a zero-argument callable returning a fresh iterator on
        every call (length unknown: :attr:`num_samples` is None). A one-shot iterator
        or generator is refused, since a dataset is read more than once.
        """
        if isinstance(source, str | bytes | np.ndarray | Mapping):
            raise ConfigError(
                f"from_iterable needs a list of samples or a callable, got "
                f"{type(source).__name__}; for arrays or a dict of arrays use "
                "Dataset.from_arrays"
            )
        if isinstance(source, Iterator):
            raise ConfigError(
                "from_iterable got a one-shot iterator or generator, but a dataset is read "
                "more than once (peeked, calibrated, evaluated); pass a list, or a callable "
                "that returns a fresh iterator, e.g. Dataset.from_iterable(lambda: make_samples())"
            )
        if not isinstance(batched, bool):
            raise ConfigError(f"batched must be True or False, got {batched!r}")
        state: dict[str, Any] = {}
        if isinstance(source, Sequence):
            seq = source

            def make() -> Any:
                return iter(seq)

        elif callable(source):
            make = source
        elif isinstance(source, Iterable):
            iterable = source

            def make() -> Any:
                return iter(iterable)

        else:
            raise ConfigError(
                f"from_iterable needs a list, a re-iterable or a callable, got "
                f"{type(source).__name__}"
            )

        def chunks() -> Iterator[_Chunk]:
            return _iterable_chunks(make, batched, labels_key, meta_keys, state)

        kind = "batches" if batched else "samples"
        if isinstance(source, Sequence):
            total = 0
            names: tuple[str, ...] | None = None
            has_labels: bool | None = None
            for chunk in chunks():
                if names is None:
                    names = tuple(chunk.get("inputs"))
                    has_labels = chunk.get("labels") is not None
                total += chunk.n
            if total == 0:
                raise EmptyDatasetError(f"the list of {kind} holds zero samples")
            return cls(_Source(f"list of {len(source)} {kind}", total, names, has_labels, chunks))
        return cls(_Source(f"iterable of {kind}", None, None, None, chunks))

    # -- facts ---------------------------------------------------------------

    @property
    def num_samples(self) -> int | None:
        """Number of samples, or None when the source is a callable (unknown until read)."""
        if self._selection is not None:
            return len(self._selection)
        n = self._source.num_samples
        if n is None or self._limit is None:
            return n
        return min(n, self._limit)

    def __len__(self) -> int:
        """Number of samples; TypeError when unknown (see :attr:`num_samples`)."""
        n = self.num_samples
        if n is None:
            raise TypeError(
                "the length of this dataset is unknown until it is read (its source is a "
                "callable); use num_samples, or build it from a list"
            )
        return n

    @cached_property
    def input_names(self) -> tuple[str, ...]:
        """Input names, in order; ``(UNNAMED,)`` for a bare array not yet bound."""
        names = self._steps[-1].names if self._steps else self._source.input_names
        if names is None:
            names = tuple(self._peek().inputs)
        return names

    @property
    def labels(self) -> np.ndarray | None:
        """All labels in dataset order (read from the source on each call), or None."""
        return self._collect("labels")

    @property
    def meta(self) -> dict[str, np.ndarray]:
        """All metadata arrays in dataset order (read from the source on each call)."""
        return self._collect("meta")

    def _collect(self, kind: str) -> Any:
        if kind == "labels" and self._source.has_labels is False:
            return None
        pieces = list(self._pieces())
        if not pieces:
            raise EmptyDatasetError(f"{self._source.description} holds zero samples")
        total = sum(len(p) for p in pieces)
        return _gather(pieces, kind, _Ctx(pieces, np.arange(total)))

    def __repr__(self) -> str:
        n = self.num_samples
        names = self._steps[-1].names if self._steps else self._source.input_names
        return (
            f"Dataset({self._source.description}, samples={'?' if n is None else n}, "
            f"inputs={'?' if names is None else list(names)})"
        )

    # -- derived datasets ----------------------------------------------------

    def take(self, n: int, seed: int | None = 0) -> Dataset:
        """A deterministic subset of ``n`` samples, kept in dataset order.

        With a seed, the samples are a seeded random choice (same seed, same subset);
        with ``seed=None``, the first ``n``. ``n`` larger than the dataset gives all of
        it. For a callable source of unknown length, a seeded take first counts the
        samples with one pass over the source.
        """
        n = _validate_int(n, "take(n)", 1)
        if seed is not None:
            seed = _validate_int(seed, "take(seed)", 0)
        length = self.num_samples
        if seed is None:
            if self._selection is not None:
                return self._replace(_selection=self._selection[:n])
            limit = n if self._limit is None else min(n, self._limit)
            return self._replace(_limit=limit)
        if length is None:
            length = sum(len(p) for p in self._pieces())
            if length == 0:
                raise EmptyDatasetError(f"{self._source.description} holds zero samples")
        if n >= length:
            logger.debug("take(%d): the dataset has only %d samples; keeping all", n, length)
            return self
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(length, size=n, replace=False, shuffle=False))
        selection = positions if self._selection is None else self._selection[positions]
        return self._replace(_selection=selection, _limit=None)

    def map(self, fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]]) -> Dataset:
        """A dataset whose input batches pass through ``fn`` (lazily, per batch).

        ``fn`` takes and returns ``{input name: array}`` with the batch as first axis;
        it must treat samples independently and return new arrays rather than change
        its (read-only) arguments. Labels and metadata are passed through unchanged.
        """
        if not callable(fn):
            raise ConfigError(f"map needs a function, got {type(fn).__name__}")
        return self._replace(_steps=(*self._steps, _map_step(fn)))

    def bind(self, specs: Sequence[TensorSpec]) -> Dataset:
        """Check the data against the model's input specs and name it as the model does.

        Checks names now, and shapes and dtypes on the first sample now and on every
        batch while iterating. Shapes are compared per sample (the model's shape minus
        its first, batch, dimension), fixed dimensions only. Dtypes must match, except
        that float64 data for a float32 input and int32 data for an int64 input are
        converted (with one logged warning per input). Raises DataMismatchError.
        """
        specs = tuple(specs)
        if not specs:
            raise ConfigError("bind needs the model's input specs; got none")
        spec_names = [spec.name for spec in specs]
        if len(set(spec_names)) != len(spec_names):
            raise ConfigError(f"input specs repeat a name: {spec_names}")
        for spec in specs:
            if spec.shape is not None and len(spec.shape) == 0:
                raise DataMismatchError(
                    f"model input {spec.describe()} is a scalar with no batch dimension; "
                    "quantscope feeds inputs in batches"
                )
        expected = "; ".join(spec.describe() for spec in specs)
        have = self.input_names
        rename: dict[str, str] = {}
        if have == (UNNAMED,):
            if len(specs) != 1:
                raise DataMismatchError(
                    f"the data is a single unnamed array but the model has {len(specs)} "
                    f"inputs ({expected}); pass a dict keyed by input name, e.g. "
                    f"Dataset.from_arrays({{{spec_names[0]!r}: ..., {spec_names[1]!r}: ...}})"
                )
            rename = {spec_names[0]: UNNAMED}
        else:
            missing = [name for name in spec_names if name not in have]
            extra = [name for name in have if name not in spec_names]
            if missing:
                also = f"; it also has {extra}, which the model does not take" if extra else ""
                raise DataMismatchError(
                    f"the data lacks model input(s) {missing}{also}. The data has "
                    f"{list(have)}; the model expects: {expected}"
                )
            if extra:
                raise DataMismatchError(
                    f"the data has input(s) {extra} that the model does not take (the model "
                    f"expects: {expected}); remove them, or store labels under 'labels' and "
                    "metadata under 'meta_*' keys (labels=/meta= for from_arrays)"
                )
        bound = self._replace(_steps=(*self._steps, _bind_step(specs, rename)))
        bound._peek()  # check the first sample now, before any work
        return bound

    # -- reading -------------------------------------------------------------

    def batches(
        self, batch_size: int, *, drop_last: bool = False, require_finite: bool = False
    ) -> Iterator[Batch]:
        """Consecutive batches of ``batch_size`` samples, in dataset order.

        Memory per step is proportional to the batch (plus, for folders, the files it
        spans). ``drop_last`` drops a final short batch. ``require_finite`` raises
        NonFiniteDataError at the first NaN or infinity in a float input, naming it.
        """
        batch_size = _validate_int(batch_size, "batch_size", 1)
        n = self.num_samples
        if drop_last and n is not None and n < batch_size:
            raise ConfigError(
                f"drop_last=True with batch_size {batch_size} leaves no batch for "
                f"{n} samples; use a smaller batch size"
            )
        return self._batches(batch_size, drop_last, require_finite)

    def check_finite(self, batch_size: int = 256) -> None:
        """Read the whole dataset once and raise NonFiniteDataError at a NaN or infinity.

        To check while calibrating instead, with no extra pass, use
        ``batches(..., require_finite=True)``.
        """
        for _ in self.batches(batch_size, require_finite=True):
            pass

    def fingerprint(self, batch_size: int = 256) -> str:
        """SHA-256 of the data as batches deliver it: names, dtypes, shapes, values,
        labels and metadata. Independent of the source kind and of ``batch_size``."""
        hashers: dict[str, Any] = {}
        signatures: dict[str, tuple[str, tuple[int, ...]]] = {}
        for batch in self.batches(batch_size):
            labels = {} if batch.labels is None else {"": batch.labels}
            for kind, arrays in (
                ("inputs", batch.inputs),
                ("labels", labels),
                ("meta", batch.meta),
            ):
                for name, arr in arrays.items():
                    key = f"{kind}:{name}"
                    hasher = hashers.setdefault(key, hashlib.sha256())
                    signature = (arr.dtype.str, arr.shape[1:])
                    if signatures.get(key) != signature:
                        signatures[key] = signature
                        hasher.update(repr(signature).encode())
                    if arr.dtype.hasobject:
                        hasher.update(repr(arr.tolist()).encode())
                    else:
                        hasher.update(np.ascontiguousarray(arr).data)
        total = hashlib.sha256()
        for key in sorted(hashers):
            total.update(key.encode() + b"\0" + hashers[key].digest())
        return total.hexdigest()

    def _pieces(self) -> Iterator[_Piece]:
        """Selected rows of the source, chunk by chunk, in order."""
        selection, limit = self._selection, self._limit
        offset = 0
        chunks = self._source.chunks()
        try:
            for chunk in chunks:
                n = chunk.n
                if selection is None:
                    k = n if limit is None else min(n, limit - offset)
                    if k > 0:
                        yield _Piece(chunk, slice(0, k), offset)
                    offset += n
                    if limit is not None and offset >= limit:
                        return
                else:
                    lo, hi = np.searchsorted(selection, [offset, offset + n])
                    if hi > lo:
                        chosen = selection[lo:hi]
                        yield _Piece(chunk, chosen - offset, chosen)
                    offset += n
                    if hi == len(selection):
                        return
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        if selection is not None:
            raise DataError(
                f"{self._source.description} yielded {offset} samples, fewer than when the "
                "subset was chosen; a callable source must yield the same data every time"
            )

    def _peek(self) -> Batch:
        iterator = self._batches(1, False, False, peek=True)
        try:
            return next(iterator)
        finally:
            iterator.close()

    def _batches(
        self, batch_size: int, drop_last: bool, require_finite: bool, peek: bool = False
    ) -> Iterator[Batch]:
        pending: list[_Piece] = []
        count = 0
        position = 0
        for piece in self._pieces():
            rest: _Piece | None = piece
            while rest is not None:
                head, rest = rest.split(batch_size - count)
                pending.append(head)
                count += len(head)
                if count == batch_size:
                    yield self._assemble(pending, position, require_finite, peek)
                    position += count
                    pending, count = [], 0
        if pending and not drop_last:
            yield self._assemble(pending, position, require_finite, peek)
        if position + count == 0:
            raise EmptyDatasetError(f"{self._source.description} holds zero samples")
        if position == 0 and drop_last:
            raise ConfigError(
                f"drop_last=True with batch_size {batch_size} leaves no batch for "
                f"{count} samples; use a smaller batch size"
            )

    def _assemble(
        self, pieces: list[_Piece], start: int, require_finite: bool, peek: bool
    ) -> Batch:
        n = sum(len(p) for p in pieces)
        positions = np.arange(start, start + n)
        ctx = _Ctx(pieces, positions, peek)
        inputs = _gather(pieces, "inputs", ctx)
        labels = _gather(pieces, "labels", ctx)
        meta = _gather(pieces, "meta", ctx)
        for step in self._steps:
            inputs = step.apply(inputs, ctx)
        if require_finite:
            _check_finite(inputs, ctx)
        return Batch(inputs, labels, meta, positions)


def _describe_layout(layout: Mapping[tuple[str, str], tuple[np.dtype, int]]) -> str:
    return (
        "{"
        + ", ".join(
            f"{kind} {name!r}: {dtype.name} rank {ndim}"
            for (kind, name), (dtype, ndim) in sorted(layout.items())
        )
        + "}"
    )


def _file_chunk(path: Path, n: int, keys: Mapping[str, tuple[str, str]]) -> _Chunk:
    """A chunk that reads one folder file, one kind of array at a time, when asked."""

    def load(kind: str) -> Any:
        wanted = {raw: name for raw, (k, name) in keys.items() if k == kind}
        if not wanted:
            return None if kind == "labels" else {}
        try:
            if path.suffix == ".npy":
                arrays = {UNNAMED: np.load(path, mmap_mode="r", allow_pickle=False)}
            else:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {name: _read_only(z[raw]) for raw, name in wanted.items()}
        except _READ_ERRORS as exc:
            raise DataError(
                f"cannot read {path}: not a valid {path.suffix} file, or it is truncated or "
                f"corrupt ({type(exc).__name__}: {exc})"
            ) from exc
        for name, arr in arrays.items():
            if arr.ndim == 0 or arr.shape[0] != n:
                raise DataError(
                    f"{path} changed since the dataset was created: {name!r} now has shape "
                    f"{arr.shape}, expected {n} samples"
                )
        if kind == "labels":
            return arrays["labels"]
        return arrays

    def describe(row: int) -> str:
        return f"row {row} of file {path.name}"

    return _Chunk(n, load, describe)


__all__ = ["META_PREFIX", "UNNAMED", "Batch", "Dataset"]
