"""A folder of ``.npz`` (or ``.npy``) files as a source, streamed file by file.

Only the array headers are read up front (to count samples and check that every
file has the same keys, dtypes and ranks); a batch holds at most the files it spans.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.data.batch import Chunk, Source
from quantscope.data.checks import READ_ERRORS, UNNAMED, check_lengths, file_headers, read_only
from quantscope.data.limits import ReadLimits
from quantscope.data.sources import key_roles
from quantscope.errors import ConfigError, DataError, DataMismatchError, EmptyDatasetError

logger = logging.getLogger(__name__)

_SUFFIXES = (".npz", ".npy")

Layout = dict[tuple[str, str], tuple[np.dtype, int]]
"""``(kind, name) -> (dtype, rank)`` of one file's arrays."""


def _list_files(root: Path, pattern: str | None) -> list[Path]:
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"data folder {root} {what}")
    if pattern is None:
        candidates = [p for p in root.iterdir() if p.is_file()]
        files = [p for p in candidates if p.suffix in _SUFFIXES]
        if len(files) != len(candidates):
            logger.debug("%s: ignoring files that are not .npz or .npy", root)
    else:
        try:
            files = [p for p in root.glob(pattern) if p.is_file()]
        except (ValueError, NotImplementedError) as exc:
            raise ConfigError(f"pattern {pattern!r} is not a usable glob: {exc}") from exc
        odd = [p.name for p in files if p.suffix not in _SUFFIXES]
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
    return files


def _describe_layout(layout: Layout) -> str:
    return (
        "{"
        + ", ".join(
            f"{kind} {name!r}: {dtype.name} rank {ndim}"
            for (kind, name), (dtype, ndim) in sorted(layout.items())
        )
        + "}"
    )


def _file_entry(
    file: Path, labels_key: str | None, meta_keys: Sequence[str], limits: ReadLimits
) -> tuple[int, dict[str, tuple[str, str]], Layout]:
    """Samples, key roles and layout of one file, from its headers (checked against ``limits``)."""
    headers = file_headers(file, limits)
    where = f"file {file}"
    keys = key_roles(headers, labels_key, meta_keys, where)
    if not any(kind == "inputs" for kind, _ in keys.values()):
        raise DataError(f"{where} holds no model input (only labels or metadata)")
    layout = {keys[k]: (dtype, len(shape)) for k, (shape, dtype) in headers.items()}
    for (kind, name), (_dtype, ndim) in layout.items():
        if ndim == 0:
            raise DataMismatchError(
                f"{where}: {kind} {name!r} is a scalar; arrays need a first (sample) axis"
            )
    lengths = {f"{kind} {name!r}": headers[k][0][0] for k, (kind, name) in keys.items()}
    return check_lengths(lengths, where), keys, layout


def folder_source(
    path: str | Path,
    pattern: str | None,
    labels_key: str | None,
    meta_keys: Sequence[str],
    max_bytes: int | None = None,
) -> Source:
    """The source of :meth:`Dataset.from_folder` (each file checked against the read limits)."""
    root = Path(path)
    limits = ReadLimits.resolve(max_bytes)
    entries: list[tuple[Path, int, dict[str, tuple[str, str]]]] = []
    reference: tuple[Path, Layout] | None = None
    total = 0
    for file in _list_files(root, pattern):
        n, keys, layout = _file_entry(file, labels_key, meta_keys, limits)
        if reference is None:
            reference = (file, layout)
        elif layout != reference[1]:
            raise DataMismatchError(
                f"file {file} does not match {reference[0]}: "
                f"{_describe_layout(layout)} vs {_describe_layout(reference[1])}; every "
                "file needs the same keys, dtypes and ranks"
            )
        total += n
        entries.append((file, n, keys))
    if total == 0 or reference is None:
        raise EmptyDatasetError(f"the files in data folder {root} hold zero samples")
    names = tuple(name for kind, name in reference[1] if kind == "inputs")
    has_labels = any(kind == "labels" for kind, _ in reference[1])

    def chunks() -> Iterator[Chunk]:
        for file, n, keys in entries:
            if n:
                yield _file_chunk(file, n, keys)

    return Source(f"data folder {root}", total, names, has_labels, chunks)


def _file_chunk(path: Path, n: int, keys: Mapping[str, tuple[str, str]]) -> Chunk:
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
                    arrays = {name: read_only(z[raw]) for raw, name in wanted.items()}
        except READ_ERRORS as exc:
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

    return Chunk(n, load, describe)
