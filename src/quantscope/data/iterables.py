"""Python iterables as a source: lists of samples or batches, re-iterables, and
zero-argument callables that return a fresh iterator on every call.

An element is a dict ``{name: array}`` (keys sorted into inputs, labels and metadata
as for every dict-like source) or a bare array (the model's single input).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from quantscope.data.batch import Chunk, Source, memory_chunk
from quantscope.data.checks import UNNAMED, Arrays, as_array, num_rows
from quantscope.data.sources import split_keys
from quantscope.errors import ConfigError, DataError, DataMismatchError, EmptyDatasetError


def _element_parts(
    item: Any, index: int, batched: bool, labels_key: str | None, meta_keys: Sequence[str]
) -> tuple[Arrays, int]:
    """The arrays of one element and its number of samples."""
    where = f"element {index} of the iterable"
    if isinstance(item, Mapping):
        raw_inputs, raw_labels, raw_meta = split_keys(item, labels_key, meta_keys, where)
        inputs = {k: as_array(v, f"{where}, key {k!r}") for k, v in raw_inputs.items()}
        labels = None if raw_labels is None else as_array(raw_labels, f"{where}, labels")
        meta = {k: as_array(v, f"{where}, metadata {k!r}") for k, v in raw_meta.items()}
        if not inputs:
            raise DataError(f"{where} holds no model input (only labels or metadata)")
    else:
        inputs = {UNNAMED: as_array(item, where)}
        labels, meta = None, {}
    if not batched:
        inputs = {k: a[None] for k, a in inputs.items()}
        labels = None if labels is None else labels[None]
        meta = {k: a[None] for k, a in meta.items()}
        return Arrays(inputs, labels, meta), 1
    arrays = Arrays(inputs, labels, meta)
    return arrays, num_rows(arrays, f"{where} (batched=True)")


def element_chunk(read: Callable[[], Any], index: int) -> Chunk:
    """A chunk of one sample that calls ``read()`` for its element only when it is batched."""
    parts: list[Arrays] = []

    def load(kind: str) -> Any:
        if not parts:
            parts.append(_element_parts(read(), index, False, "labels", ())[0])
        return getattr(parts[0], kind)

    def describe(_row: int) -> str:
        return f"element {index}"

    return Chunk(1, load, describe)


def _fresh_iterator(make: Callable[[], Any], state: dict[str, Any]) -> Iterator[Any]:
    """A new iterator from ``make``, refusing one handed out before."""
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
    return iterator


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _iterable_chunks(
    make: Callable[[], Any],
    batched: bool,
    labels_key: str | None,
    meta_keys: Sequence[str],
    state: dict[str, Any],
) -> Iterator[Chunk]:
    iterator = _fresh_iterator(make, state)
    first: tuple[frozenset[str], bool, frozenset[str]] | None = None
    count = 0
    try:
        for index, item in enumerate(iterator):
            arrays, n = _element_parts(item, index, batched, labels_key, meta_keys)
            signature = (
                frozenset(arrays.inputs),
                arrays.labels is not None,
                frozenset(arrays.meta),
            )
            if first is None:
                first = signature
            elif signature != first:
                raise DataMismatchError(
                    f"element {index} of the iterable has inputs {sorted(signature[0])}, "
                    f"labels {_yes_no(signature[1])}, metadata {sorted(signature[2])}; "
                    f"element 0 has inputs {sorted(first[0])}, labels "
                    f"{_yes_no(first[1])}, metadata {sorted(first[2])}; "
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

            yield memory_chunk(arrays, n, describe)
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    if count == 0 and state.get("produced"):
        raise DataError(
            "the data callable returned an exhausted iterator on a second pass; "
            "it must return a fresh iterator on every call (e.g. lambda: iter(my_list))"
        )


def _maker(source: Any) -> Callable[[], Any]:
    """A zero-argument callable giving a fresh iterator over ``source``, or a ConfigError."""
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
    if callable(source) and not isinstance(source, Sequence):
        return source
    if isinstance(source, Iterable):
        iterable = source

        def make() -> Any:
            return iter(iterable)

        return make
    raise ConfigError(
        f"from_iterable needs a list, a re-iterable or a callable, got {type(source).__name__}"
    )


def iterable_source(
    source: Iterable[Any] | Callable[[], Iterable[Any]],
    batched: bool,
    labels_key: str | None,
    meta_keys: Sequence[str],
) -> Source:
    """The source of :meth:`Dataset.from_iterable` (a list is read once now, to count it)."""
    make = _maker(source)
    if not isinstance(batched, bool):
        raise ConfigError(f"batched must be True or False, got {batched!r}")
    state: dict[str, Any] = {}

    def chunks() -> Iterator[Chunk]:
        return _iterable_chunks(make, batched, labels_key, meta_keys, state)

    kind = "batches" if batched else "samples"
    if not isinstance(source, Sequence):
        return Source(f"iterable of {kind}", None, None, None, chunks)
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
    return Source(f"list of {len(source)} {kind}", total, names, has_labels, chunks)
