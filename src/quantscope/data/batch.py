"""Batches and the machinery that cuts a source into them.

A source yields *chunks*: consecutive samples read as one unit (an array set, a
file, an iterable's element). A dataset's selection of samples becomes *pieces*
(rows of one chunk), and pieces are joined into batches of a requested size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantscope.data.checks import FINITE_NEEDS, Arrays, check_finite, fmt_shape, same_dtype
from quantscope.errors import ConfigError, DataError, DataMismatchError, EmptyDatasetError


@dataclass(frozen=True, eq=False)
class Batch:
    """A batch of consecutive dataset samples.

    Labels and metadata have the sample axis first. Inputs too, until the dataset is bound
    to a model (:meth:`Dataset.bind`); then they are the feeds as ``session.run`` takes
    them: the samples on the model's batch axis, or one sample as a whole feed, or a
    scalar shared by the batch. Read the number of samples from :attr:`size`, not from
    an input's shape.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    meta: dict[str, np.ndarray]
    indices: np.ndarray
    """Positions of the samples in the dataset the batch came from (0 .. len-1)."""

    @property
    def size(self) -> int:
        """Number of samples in the batch."""
        return len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Chunk:
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


def no_place(_row: int) -> str:
    return ""


def memory_chunk(arrays: Arrays, n: int, describe: Callable[[int], str] = no_place) -> Chunk:
    """A chunk over arrays already in memory."""
    return Chunk(n, arrays._asdict().__getitem__, describe)


@dataclass(frozen=True, slots=True)
class Source:
    """Where samples come from, and what is known about them before reading."""

    description: str
    num_samples: int | None  # None: unknown until iterated
    input_names: tuple[str, ...] | None  # None: known only by reading
    has_labels: bool | None
    chunks: Callable[[], Iterator[Chunk]]
    warned: set[str] = field(default_factory=set, compare=False)
    """Warnings already logged about this data, so binding it again does not repeat them."""
    classes: tuple[str, ...] | None = None
    """Class names by label index, when the source knows them (image class folders)."""
    optional: frozenset[str] = frozenset()
    """Inputs the source makes for any model that may take them (a tokenizer's
    ``token_type_ids``): dropped without a warning when the model does not take them."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Rows of one chunk that go into one batch."""

    chunk: Chunk
    rows: slice | np.ndarray  # local rows in the chunk
    src: int | np.ndarray  # source index of the first row (slice) or of every row

    def __len__(self) -> int:
        if isinstance(self.rows, slice):
            return self.rows.stop - self.rows.start
        return len(self.rows)

    def split(self, k: int) -> tuple[Piece, Piece | None]:
        if len(self) <= k:
            return self, None
        rows, src = self.rows, self.src
        if isinstance(rows, slice):
            start, stop = rows.start, rows.stop
            return (
                Piece(self.chunk, slice(start, start + k), src),
                Piece(self.chunk, slice(start + k, stop), src + k),
            )
        return (
            Piece(self.chunk, rows[:k], src[:k]),
            Piece(self.chunk, rows[k:], src[k:]),
        )

    def local_at(self, i: int) -> int:
        return self.rows.start + i if isinstance(self.rows, slice) else int(self.rows[i])

    def src_at(self, i: int) -> int:
        return self.src + i if isinstance(self.src, int) else int(self.src[i])


class Origin:
    """Where each row of a batch comes from, for error messages."""

    __slots__ = ("peek", "pieces", "positions")

    def __init__(self, pieces: list[Piece], positions: np.ndarray, peek: bool = False) -> None:
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
class Step:
    """A per-batch transform of the inputs (``map`` or ``bind``)."""

    apply: Callable[[dict[str, np.ndarray], Origin], dict[str, np.ndarray]]
    names: tuple[str, ...] | None  # input names after the step; None: known only by running


def map_step(fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]]) -> Step:
    """The per-batch transform of :meth:`Dataset.map`, with its result checked."""
    label = getattr(fn, "__name__", repr(fn))

    def apply(inputs: dict[str, np.ndarray], origin: Origin) -> dict[str, np.ndarray]:
        result = fn(dict(inputs))
        if not isinstance(result, Mapping):
            raise ConfigError(
                f"map function {label} must return a dict of arrays, got {type(result).__name__}"
            )
        n = len(origin.positions)
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

    return Step(apply, None)


def finite_step(purpose: str, names: tuple[str, ...] | None) -> Step:
    """The per-batch check of :meth:`Dataset.require_finite` (inputs pass through unchanged)."""
    if purpose not in FINITE_NEEDS:
        raise ConfigError(f"require_finite: purpose must be one of {sorted(FINITE_NEEDS)}, got {purpose!r}")

    def apply(inputs: dict[str, np.ndarray], origin: Origin) -> dict[str, np.ndarray]:
        check_finite(inputs, origin, purpose)
        return inputs

    return Step(apply, names)


def assemble(
    pieces: list[Piece], start: int, steps: tuple[Step, ...], require_finite: bool, peek: bool
) -> tuple[Batch, Origin]:
    """One batch (sample axis first) from ``pieces``, through ``steps``, with its origin."""
    n = sum(len(p) for p in pieces)
    positions = np.arange(start, start + n)
    origin = Origin(pieces, positions, peek)
    inputs = gather(pieces, "inputs", origin)
    labels = gather(pieces, "labels", origin)
    meta = gather(pieces, "meta", origin)
    for step in steps:
        inputs = step.apply(inputs, origin)
    if require_finite:
        check_finite(inputs, origin)
    return Batch(inputs, labels, meta, positions), origin


def _rows(arr: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    out = arr[rows]
    if isinstance(arr, np.memmap):  # copy the batch out, so no batch pins the file
        return np.array(out)
    return out


def gather(pieces: list[Piece], kind: str, origin: Origin) -> Any:
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
                    f"{origin.where(row)} has {kind} {sorted(part)} but {origin.where(0)} has "
                    f"{sorted(first)}; every sample needs the same keys"
                )
            for key, arr in part.items():
                ref = first[key]
                if arr.shape[1:] != ref.shape[1:] or not same_dtype(arr.dtype, ref.dtype):
                    label = "labels" if single else f"{kind} {key!r}"
                    raise DataMismatchError(
                        f"{label}: {origin.where(row)} is {arr.dtype.name}{fmt_shape(arr.shape[1:])} "
                        f"but {origin.where(0)} is {ref.dtype.name}{fmt_shape(ref.shape[1:])}; "
                        "samples of different shapes or dtypes cannot share a batch "
                        "(use batch size 1 for ragged data, or pad)"
                    )
            row += len(piece)
        first = {k: np.concatenate([part[k] for part in parts]) for k in first}
    if single:
        return first.get("labels")
    return first


def iter_pieces(source: Source, selection: np.ndarray | None, limit: int | None) -> Iterator[Piece]:
    """Selected rows of the source, chunk by chunk, in order.

    ``selection``: sorted source indices, or None for all; ``limit``: keep only the
    first ``limit`` source samples (with no selection).
    """
    offset = 0
    chunks = source.chunks()
    try:
        for chunk in chunks:
            n = chunk.n
            if selection is None:
                k = n if limit is None else min(n, limit - offset)
                if k > 0:
                    yield Piece(chunk, slice(0, k), offset)
                offset += n
                if limit is not None and offset >= limit:
                    return
            else:
                lo, hi = np.searchsorted(selection, [offset, offset + n])
                if hi > lo:
                    chosen = selection[lo:hi]
                    yield Piece(chunk, chosen - offset, chosen)
                offset += n
                if hi == len(selection):
                    return
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    if selection is not None:
        raise DataError(
            f"{source.description} yielded {offset} samples, fewer than when the "
            "subset was chosen; a callable source must yield the same data every time"
        )


def group_pieces(
    pieces: Iterator[Piece], batch_size: int, drop_last: bool, description: str
) -> Iterator[tuple[list[Piece], int]]:
    """Pieces regrouped into runs of ``batch_size`` rows, each with its first position.

    The final run may be shorter (dropped with ``drop_last``). Raises EmptyDatasetError
    for a source with no rows, and ConfigError when ``drop_last`` leaves no batch.
    """
    pending: list[Piece] = []
    count = 0
    position = 0
    for piece in pieces:
        rest: Piece | None = piece
        while rest is not None:
            head, rest = rest.split(batch_size - count)
            pending.append(head)
            count += len(head)
            if count == batch_size:
                yield pending, position
                position += count
                pending, count = [], 0
    if pending and not drop_last:
        yield pending, position
    if position + count == 0:
        raise EmptyDatasetError(f"{description} holds zero samples")
    if position == 0 and drop_last:
        raise ConfigError(
            f"drop_last=True with batch_size {batch_size} leaves no batch for "
            f"{count} samples; use a smaller batch size"
        )


def fingerprint(batches: Iterator[Batch]) -> str:
    """SHA-256 of batches: names, dtypes, per-sample shapes, values, labels and metadata.

    Independent of how the samples are cut into batches.
    """
    hashers: dict[str, Any] = {}
    signatures: dict[str, tuple[str, tuple[int, ...]]] = {}
    for batch in batches:
        labels = {} if batch.labels is None else {"": batch.labels}
        for kind, arrays in (("inputs", batch.inputs), ("labels", labels), ("meta", batch.meta)):
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
