"""In-memory sources: arrays, and one ``.npz`` (or ``.npy``) file; the key conventions
that every dict-like source shares.

Dict-like sources (``.npz`` files, folders, dicts from iterables) use the key
``labels`` (``labels_key=``) for labels; keys starting with ``meta_`` become metadata
under the name without the prefix (``meta_slice`` -> ``slice``), and keys listed in
``meta_keys=`` become metadata under their own name. Every other key is a model input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from quantscope.data.batch import Source, memory_chunk
from quantscope.data.checks import (
    READ_ERRORS,
    UNNAMED,
    Arrays,
    as_array,
    file_headers,
    num_rows,
    read_only,
)
from quantscope.data.limits import ReadLimits
from quantscope.errors import ConfigError, DataError, EmptyDatasetError

META_PREFIX: Final = "meta_"


def key_roles(
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


def split_keys(
    arrays: Mapping[str, Any], labels_key: str | None, meta_keys: Sequence[str], where: str
) -> Arrays:
    """Sort a dict's entries into inputs, labels and metadata."""
    inputs: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    labels = None
    for key, (kind, name) in key_roles(arrays, labels_key, meta_keys, where).items():
        if kind == "labels":
            labels = arrays[key]
        elif kind == "meta":
            meta[name] = arrays[key]
        else:
            inputs[name] = arrays[key]
    return Arrays(inputs, labels, meta)


def in_memory_source(arrays: Arrays, description: str) -> Source:
    """A source over read-only arrays whose first axis is the sample axis."""
    if not arrays.inputs:
        raise ConfigError(f"{description}: no input arrays (only labels or metadata)")
    n = num_rows(arrays, description)
    if n == 0:
        raise EmptyDatasetError(
            f"{description}: zero samples (the first axis is empty); give at least one sample"
        )
    return Source(
        description=description,
        num_samples=n,
        input_names=tuple(arrays.inputs),
        has_labels=arrays.labels is not None,
        chunks=lambda: iter([memory_chunk(arrays, n)]),
    )


def arrays_source(
    arrays: Mapping[str, Any] | np.ndarray,
    labels: Any | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Source:
    """The source of :meth:`Dataset.from_arrays`."""
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
    inputs = {k: as_array(v, f"input {k!r}") for k, v in raw.items()}
    lab = None if labels is None else as_array(labels, "labels")
    met = {k: as_array(v, f"metadata {k!r}") for k, v in (meta or {}).items()}
    return in_memory_source(Arrays(inputs, lab, met), "arrays")


def npz_source(
    path: str | Path, labels_key: str | None, meta_keys: Sequence[str], max_bytes: int | None = None
) -> Source:
    """The source of :meth:`Dataset.from_npz`: the file is read now (a ``.npy`` is mapped),
    after its headers are checked against the read limits (:mod:`quantscope.data.limits`)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} does not exist")
    if p.is_dir():
        raise DataError(f"{p} is a folder; use Dataset.from_folder for a folder of files")
    file_headers(p, ReadLimits.resolve(max_bytes))
    try:
        loaded = np.load(p, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays: dict[str, np.ndarray] = {UNNAMED: loaded}
        else:
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
    except READ_ERRORS as exc:
        raise DataError(
            f"cannot read {p}: not a valid .npz (or .npy) file, or it is truncated or "
            f"corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    where = f"npz file {p}"
    inputs, labels, meta = split_keys(arrays, labels_key, meta_keys, where)
    return in_memory_source(
        Arrays(
            {k: read_only(a) for k, a in inputs.items()},
            None if labels is None else read_only(labels),
            {k: read_only(a) for k, a in meta.items()},
        ),
        where,
    )
