"""The dataset: a source of samples plus the transforms applied to each batch.

An immutable, re-iterable, deterministic sequence of samples ({input name: array}, with an
optional label and metadata). Bound to a model, samples come as the model takes them: batched
on its batch axis, or one whole feed per run (:mod:`quantscope.data.feeding`). ``take``, ``map``
and ``bind`` return new datasets and read nothing until :meth:`Dataset.batches` iterates.
Memory: one ``.npz`` is read once (its headers checked first, :mod:`quantscope.data.limits`),
``.npy`` is memory-mapped, folders, texts and framework datasets are streamed; caller data is
never modified (read-only views or new arrays).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.data import binding
from quantscope.data.batch import (
    Batch,
    Origin,
    Piece,
    Source,
    Step,
    assemble,
    fingerprint,
    finite_step,
    gather,
    group_pieces,
    iter_pieces,
    map_step,
)
from quantscope.data.checks import validate_int
from quantscope.data.feeding import Feeder
from quantscope.data.folders import folder_source
from quantscope.data.images import ImagePreprocess, image_source
from quantscope.data.iterables import iterable_source
from quantscope.data.paths import path_source
from quantscope.data.sources import arrays_source, npz_source
from quantscope.data.texts import text_source
from quantscope.errors import ConfigError, EmptyDatasetError
from quantscope.specs import TensorSpec

logger = logging.getLogger(__name__)



class Dataset:
    """An immutable, re-iterable, deterministic sequence of samples for a model.

    Build one with :meth:`from_path`, :meth:`from_npz`, :meth:`from_folder`,
    :meth:`from_arrays` or :meth:`from_iterable`; iterate it with :meth:`batches`.
    Iterating twice yields identical batches.
    """

    def __init__(
        self,
        _source: Source,
        *,
        _selection: np.ndarray | None = None,
        _limit: int | None = None,
        _steps: tuple[Step, ...] = (),
        _feeder: Feeder | None = None,
    ) -> None:
        if not isinstance(_source, Source):
            raise ConfigError(
                "build a Dataset with Dataset.from_path, from_npz, from_folder, from_images, "
                "from_texts, from_arrays or from_iterable, or quantscope.data.as_dataset(obj)"
            )
        self._source = _source
        self._selection = _selection  # sorted source indices, or None for all
        self._limit = _limit  # keep only the first _limit source samples
        self._steps = _steps
        self._feeder = _feeder  # set by bind: samples -> the feeds the model takes

    def _replace(self, **changes: Any) -> Dataset:
        fields = {
            "_selection": self._selection,
            "_limit": self._limit,
            "_steps": self._steps,
            "_feeder": self._feeder,
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
        return cls(arrays_source(arrays, labels, meta))

    @classmethod
    def from_npz(
        cls,
        path: str | Path,
        *,
        labels_key: str | None = "labels",
        meta_keys: Sequence[str] = (),
        max_bytes: int | None = None,
    ) -> Dataset:
        """Samples from one ``.npz`` file keyed by model input name (first axis = samples).

        The file is read once, now; batches are views of the loaded arrays. A ``.npy``
        file is accepted too, as the model's single input, and is memory-mapped.
        Keys ``labels`` (``labels_key=``), ``meta_*`` and ``meta_keys=`` hold labels and
        metadata; every other key is a model input: samples concatenated on the batch axis
        (``(N, 3, 224, 224)`` for ``[batch, 3, 224, 224]``), or stacked session feeds
        (``(N, 1, 3, 48, 320)`` for ``[1, 3, 48, 320]``, ``(N,)`` for a scalar input).
        Headers are checked before anything is read (:mod:`quantscope.data.limits`): a file
        whose arrays exceed ``max_bytes`` (default: ``QUANTSCOPE_MAX_ARRAY_BYTES``, else half
        the physical memory), a zip bomb or a lying header raise DataError.
        """
        return cls(npz_source(path, labels_key, meta_keys, max_bytes))

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        pattern: str | None = None,
        labels_key: str | None = "labels",
        meta_keys: Sequence[str] = (),
        max_bytes: int | None = None,
    ) -> Dataset:
        """Samples streamed from a folder of ``.npz`` files, or of ``.npy`` files.

        Every ``.npz`` holds one or more samples under the same keys (as
        :meth:`from_npz`). A ``.npy`` file holds samples of the model's single input
        (first axis = samples), named by :meth:`bind`; a folder may not mix the two.
        Files are taken in sorted order of their path relative to the folder (name them
        with zero-padded numbers). ``pattern`` is a glob relative to the folder
        (``"**/*.npz"`` recurses); by default every ``.npz``/``.npy`` file directly in
        it. Only array headers are read now (each file checked as by :meth:`from_npz`, with
        ``max_bytes`` per file); data is read file by file while iterating.
        """
        return cls(folder_source(path, pattern, labels_key, meta_keys, max_bytes))

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
        return cls(iterable_source(source, batched, labels_key, meta_keys))

    @classmethod
    def from_images(
        cls,
        images: str | Path | Sequence[str | Path],
        *,
        preprocess: ImagePreprocess | None = ImagePreprocess(),  # noqa: B008 (frozen)
        transform: Callable[[Any], Any] | None = None,
        labels: str | Sequence[int] | None = None,
    ) -> Dataset:
        """Samples from images: a folder (searched recursively, sorted by relative path), one
        image, or a list of paths (in its order). Each image is decoded from disk when its
        sample is read (Pillow), never the whole folder at once.

        ``preprocess`` declares the common steps (:class:`ImagePreprocess`: resize, crop,
        scale, mean/std, layout, grey/RGB, dtype); ``transform(sample) -> array`` then does
        anything else. With ``preprocess=None``, ``transform(PIL image) -> array`` does it all.
        ``labels="folders"`` labels each image by its class sub-folder: class names sorted,
        label = index (:attr:`classes`, and metadata ``class``); or pass one label per image.
        The images are the model's single input, named by :meth:`bind`.
        """
        return cls(image_source(images, preprocess, transform, labels))

    @classmethod
    def from_texts(
        cls,
        texts: str | Path | Sequence[str],
        *,
        tokenizer: Any,
        max_length: int = 128,
        dtype: Any = "int64",
        labels: Sequence[int] | None = None,
    ) -> Dataset:
        """Samples from texts (a list of strings, or a ``.txt`` file with one text per line),
        tokenized by ``tokenizer`` (a path to ``tokenizer.json`` or a ``tokenizers.Tokenizer``;
        copied, never changed) into ``input_ids``, ``attention_mask`` and ``token_type_ids``,
        truncated and padded to ``max_length``. Binding keeps those the model takes.
        """
        return cls(text_source(texts, tokenizer, max_length, dtype, labels))

    @classmethod
    def from_path(cls, path: str | Path, **options: Any) -> Dataset:
        """Samples from a path, the source picked by its kind: a folder of ``.npz``/``.npy``
        files (:meth:`from_folder`), a folder of images with no such file in it, or an image
        (:meth:`from_images`), an ``.npz`` or ``.npy`` file (:meth:`from_npz`), a ``.txt`` file
        (:meth:`from_texts`, with ``tokenizer=``).

        ``options`` are those of the chosen source. Raises DataError for a missing path or a
        file of another kind, ConfigError for an option the source does not take.
        """
        return cls(path_source(path, options))

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
        names = self._known_names()
        if names is None:
            names = tuple(self._peek()[0].inputs)
        return names

    def _known_names(self) -> tuple[str, ...] | None:
        return self._steps[-1].names if self._steps else self._source.input_names

    @property
    def labels(self) -> np.ndarray | None:
        """All labels in dataset order (read from the source on each call), or None."""
        return self._collect("labels")

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Class names by label index when the source knows them (``from_images(labels="folders")``)."""
        return self._source.classes

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
        return gather(pieces, kind, Origin(pieces, np.arange(total)))

    def __repr__(self) -> str:
        n = self.num_samples
        names = self._known_names()
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
        n = validate_int(n, "take(n)", 1)
        if seed is not None:
            seed = validate_int(seed, "take(seed)", 0)
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

    def rows(self, start: int, stop: int) -> Dataset:
        """Samples ``start`` to ``stop`` (exclusive) of this dataset, in order (positions, not
        source indices; ``stop`` past the end is clipped). Needs a known length."""
        start, stop = validate_int(start, "rows(start)", 0), validate_int(stop, "rows(stop)", 0)
        n = len(self)
        base = self._selection if self._selection is not None else np.arange(n)
        return self._replace(_selection=base[start : min(max(stop, start), n)], _limit=None)

    def map(self, fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]]) -> Dataset:
        """A dataset whose input batches pass through ``fn`` (lazily, per batch).

        ``fn`` takes and returns ``{input name: array}`` with the batch as first axis;
        it must treat samples independently and return new arrays rather than change
        its (read-only) arguments. Labels and metadata are passed through unchanged.
        """
        if not callable(fn):
            raise ConfigError(f"map needs a function, got {type(fn).__name__}")
        return self._replace(_steps=(*self._steps, map_step(fn)))

    def require_finite(self, purpose: str = "evaluation") -> Dataset:
        """A dataset that raises NonFiniteDataError at the first NaN or infinity in a float
        input while it is read, naming the input and the sample (no extra pass).

        ``purpose`` (``"evaluation"`` or ``"calibration"``) says in the message why it matters.
        """
        return self._replace(_steps=(*self._steps, finite_step(purpose, self._known_names())))

    def bind(self, specs: Sequence[TensorSpec]) -> Dataset:
        """Check the data against the model's input specs, name it as the model does, and
        deliver it as the model takes it.

        Checks names now, and shapes and dtypes on the first sample now and on every
        batch while iterating. Data for inputs the model does not take is ignored (with a
        logged warning). The rank of a sample tells how it is fed (see
        :mod:`quantscope.data.feeding`): one rank below the model's input, samples are
        batched on the batch axis; of the same rank, each sample is a whole feed (stacked
        session feeds, scalars). Fixed dimensions must match. Dtypes must match, except
        that float64 data for a float32 input and int32 data for an int64 input are
        converted (with one logged warning per input). :meth:`batches` then holds as many
        samples as the model takes per run. Raises DataMismatchError.
        """
        specs = tuple(specs)
        binding.check_specs(specs)
        rename = binding.bind_names(
            specs, self.input_names, self._source.warned, self._source.optional
        )
        stepped = self._replace(
            _steps=(*self._steps, binding.bind_step(specs, rename)), _feeder=None
        )
        first, origin = stepped._peek()
        feeder = Feeder.plan(specs, first, origin)
        for _ in feeder.feeds(first, origin):  # check the first sample now, before any work
            pass
        return stepped._replace(_feeder=feeder)

    # -- reading -------------------------------------------------------------

    def batches(
        self,
        batch_size: int,
        *,
        drop_last: bool = False,
        require_finite: bool = False,
        feeds: bool = True,
    ) -> Iterator[Batch]:
        """Consecutive batches of ``batch_size`` samples, in dataset order.

        After :meth:`bind`, a batch's inputs are feeds as the model takes them, and batches
        hold what the model takes per run when that differs from ``batch_size``: its fixed
        batch size, or one sample (read :attr:`Batch.size`). With ``feeds=False`` they keep
        the dataset's layout instead (sample axis first, ``batch_size`` samples), e.g. to
        change samples and build a new dataset from them. Memory per step is proportional
        to the batch (plus, for folders, the files it spans). ``drop_last`` drops a final
        short batch. ``require_finite`` raises NonFiniteDataError at the first NaN or
        infinity in a float input, naming it.
        """
        batch_size = validate_int(batch_size, "batch_size", 1)
        if self._feeder is not None and feeds:
            batch_size = self._feeder.batch_size(batch_size)
        n = self.num_samples
        if drop_last and n is not None and n < batch_size:
            raise ConfigError(
                f"drop_last=True with batch_size {batch_size} leaves no batch for "
                f"{n} samples; use a smaller batch size"
            )
        return self._batches(batch_size, drop_last, require_finite, feeds)

    def check_finite(self, batch_size: int = 256) -> None:
        """Read the whole dataset once and raise NonFiniteDataError at a NaN or infinity.

        To check while calibrating instead, with no extra pass, use
        ``batches(..., require_finite=True)``.
        """
        for _ in self.batches(batch_size, require_finite=True):
            pass

    def fingerprint(self, batch_size: int = 256) -> str:
        """SHA-256 of the samples: names, dtypes, shapes, values, labels and metadata, as
        bound (but before they are laid out as feeds). Independent of the source kind and
        of ``batch_size``."""
        return fingerprint(self.batches(batch_size, feeds=False))

    def _pieces(self) -> Iterator[Piece]:
        return iter_pieces(self._source, self._selection, self._limit)

    def _peek(self) -> tuple[Batch, Origin]:
        """The first sample, as bound (sample axis first), before it is laid out as a feed."""
        iterator = self._assembled(1, False, False, peek=True)
        try:
            return next(iterator)
        finally:
            iterator.close()

    def _batches(
        self, batch_size: int, drop_last: bool, require_finite: bool, feeds: bool
    ) -> Iterator[Batch]:
        for batch, origin in self._assembled(batch_size, drop_last, require_finite):
            if self._feeder is None:
                yield batch
            elif feeds:
                yield from self._feeder.feeds(batch, origin)
            else:
                self._feeder.check(batch, origin)
                yield batch

    def _assembled(
        self, batch_size: int, drop_last: bool, require_finite: bool, peek: bool = False
    ) -> Iterator[tuple[Batch, Origin]]:
        """Batches with the sample axis first, each with where its rows come from."""
        groups = group_pieces(self._pieces(), batch_size, drop_last, self._source.description)
        for pieces, start in groups:
            yield assemble(pieces, start, self._steps, require_finite, peek)
