"""How bound samples become the feeds a model takes: data as the model takes it.

Inside a dataset every array has the sample axis first. :meth:`Dataset.bind` reads the
first sample and, for each model input, compares the rank of a sample with the rank of
the model's input, which tells the two ways data is recorded apart:

* a sample one rank *below* the input lacks the batch axis: samples are batched on the
  model's batch axis, axis 0 (``[N, 3, 224, 224]`` fed ``(b, 3, 224, 224)``), or, when a
  sample fits only with an axis of size 1 (or symbolic) removed elsewhere, on that axis
  (a state ``[layers, 1, hidden]`` fed one sample at a time);
* a sample of the *same* rank is a whole feed, as ``session.run`` took it (stacked
  session feeds, ``(N, 1, 3, 48, 320)`` for an input ``[1, 3, 48, 320]``; ``(N,)`` for a
  scalar input): it is fed as is, one sample per run; a scalar whose value is the same
  for every sample of a batch is fed once for the whole batch.

A fixed batch dimension decides how many samples a run takes: batches shrink (or grow)
to it, with no option needed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from quantscope.data.batch import Batch, Origin
from quantscope.data.checks import dims_match, fmt_shape
from quantscope.errors import DataMismatchError
from quantscope.specs import Dim, TensorSpec

logger = logging.getLogger(__name__)


def _fixed(dim: Dim) -> int | None:
    """A dimension's fixed size, or None for a symbolic or unknown one."""
    return dim if isinstance(dim, int) and dim >= 0 else None


@dataclass(frozen=True, slots=True)
class InputLayout:
    """Where one model input takes the samples of a batch."""

    spec: TensorSpec
    axis: int | None
    """The model's batch axis the samples go on; None: each sample is a whole feed."""
    sample: tuple[Dim, ...] | None
    """The shape a sample must have (dataset layout, without the sample axis); None: any."""

    @property
    def exact(self) -> int | None:
        """Samples every run must hold (a fixed batch dimension), or None."""
        if self.axis is None or self.spec.shape is None:
            return None
        return _fixed(self.spec.shape[self.axis])

    @property
    def one_at_a_time(self) -> bool:
        """True when at most one sample fits a run (whole feeds, or a batch axis other than 0)."""
        if self.axis is None:
            return bool(self.sample)  # a scalar can be shared by a whole batch
        return self.axis > 0

    def describe_batch(self) -> str:
        if self.axis is None:
            return "each sample is a whole feed"
        return (
            "its first dimension is the batch"
            if self.axis == 0
            else f"dimension {self.axis} is the batch"
        )

    def check(self, arr: np.ndarray, origin: Origin) -> None:
        """Raise DataMismatchError when a batch's samples do not have this layout's shape."""
        if self.sample is not None and not dims_match(self.sample, arr.shape[1:]):
            raise _mismatch(self.spec, arr.shape[1:], origin, self.sample, self.describe_batch())

    def feed(self, arr: np.ndarray) -> np.ndarray:
        """The samples of a batch (sample axis first) as the model takes them."""
        if self.axis is None:
            return arr[0, ...]  # one sample, or a scalar shared by the whole batch
        return arr if self.axis == 0 else np.moveaxis(arr, 0, self.axis)


def _mismatch(
    spec: TensorSpec, got: Sequence[int], origin: Origin, want: Sequence[Dim], how: str
) -> DataMismatchError:
    what = "rank" if len(want) != len(got) else "shape"
    return DataMismatchError(
        f"input {spec.name!r}: {what} mismatch - {origin.where(0)} has shape "
        f"{fmt_shape(got)} but the model expects {fmt_shape(want)} per sample "
        f"(model input {spec.describe()}; {how})"
    )


def plan_layout(spec: TensorSpec, got: tuple[int, ...], origin: Origin) -> InputLayout:
    """The layout of one input, from the shape of its first sample (see the module doc)."""
    shape = spec.shape
    if shape is None:
        return InputLayout(spec, 0, None)
    if len(got) == len(shape) and dims_match(shape, got):
        return InputLayout(spec, None, shape)
    if len(got) == len(shape) - 1:
        # a batch dimension is symbolic or 1; a fixed batch larger than 1 only on axis 0, last
        order = [a for a, d in enumerate(shape) if _fixed(d) in (None, 1)]
        for axis in [*order, 0] if 0 not in order else order:
            rest = shape[:axis] + shape[axis + 1 :]
            if dims_match(rest, got):
                return InputLayout(spec, axis, rest)
    if not shape:
        raise DataMismatchError(
            f"input {spec.name!r} is a scalar (model input {spec.describe()}) but "
            f"{origin.where(0)} has shape {fmt_shape(got)}; give one value per sample "
            "(an array of shape (N,))"
        )
    raise _mismatch(
        spec,
        got,
        origin,
        shape[1:],
        f"its first dimension is the batch; a sample that is a whole feed has shape {fmt_shape(shape)}",
    )


@dataclass(frozen=True, slots=True)
class Feeder:
    """Turns batches of bound samples into feeds, and says how many samples a run takes."""

    layouts: tuple[InputLayout, ...]

    @classmethod
    def plan(cls, specs: Sequence[TensorSpec], first: Batch, origin: Origin) -> Feeder:
        """Layouts for every input, from the first bound sample; DataMismatchError if none fits."""
        feeder = cls(tuple(plan_layout(s, first.inputs[s.name].shape[1:], origin) for s in specs))
        exact = {lay.spec.name: lay.exact for lay in feeder.layouts if lay.exact is not None}
        single = [lay.spec.name for lay in feeder.layouts if lay.one_at_a_time]
        sizes = set(exact.values())
        if len(sizes) > 1 or (single and sizes - {1}):
            fixed = ", ".join(f"{name!r}: {n}" for name, n in exact.items())
            alone = f"; {single} take one sample per run" if single else ""
            raise DataMismatchError(
                f"the model's inputs disagree on how many samples a run takes (fixed batch sizes "
                f"{fixed}{alone}); quantscope cannot feed this model"
            )
        for lay in feeder.layouts:
            if lay.axis != 0:
                logger.debug("input %r: %s", lay.spec.name, lay.describe_batch())
        return feeder

    def batch_size(self, requested: int) -> int:
        """The batch size to read for ``requested``: the model's fixed batch size, or 1
        when a run takes one sample, else ``requested``."""
        exact = next((lay.exact for lay in self.layouts if lay.exact is not None), None)
        size = exact if exact is not None else requested
        if any(lay.one_at_a_time for lay in self.layouts):
            size = 1
        if size != requested:
            why = next(
                (f"model input {lay.spec.describe()}" for lay in self.layouts
                 if lay.exact is not None or lay.one_at_a_time),
                "",
            )  # fmt: skip
            logger.info(
                "feeding %d sample(s) per run instead of %d, as the model takes them (%s)",
                size,
                requested,
                why,
            )
        return size

    def check(self, batch: Batch, origin: Origin) -> None:
        """Raise DataMismatchError when the samples of a batch do not fit the model's inputs."""
        for lay in self.layouts:
            if lay.spec.name in batch.inputs:
                lay.check(batch.inputs[lay.spec.name], origin)

    def feeds(self, batch: Batch, origin: Origin) -> Iterator[Batch]:
        """The batch as feeds: one batch, or one per sample when a scalar input varies in it."""
        self.check(batch, origin)
        for lay in self.layouts:
            exact = lay.exact
            if exact is not None and not origin.peek and batch.size != exact:
                raise DataMismatchError(
                    f"model input {lay.spec.name!r} has a fixed batch size of {exact} but the batch "
                    f"starting at {origin.where(0)} holds {batch.size} samples; give a number of "
                    f"samples that is a multiple of {exact}"
                )
        if batch.size > 1 and not self._shared_scalars(batch):
            if any(lay.exact is not None for lay in self.layouts):
                raise DataMismatchError(
                    f"a scalar input varies within the batch starting at {origin.where(0)}, but "
                    "the model's fixed batch size needs one value for the whole batch"
                )
            for row in range(batch.size):
                yield self._feed(_row(batch, row))
            return
        yield self._feed(batch)

    def _shared_scalars(self, batch: Batch) -> bool:
        """True when every whole-feed scalar input has one value across the batch."""
        scalars = [batch.inputs.get(lay.spec.name) for lay in self.layouts if lay.axis is None]
        return all(arr is None or (arr == arr[:1]).all() for arr in scalars)

    def _feed(self, batch: Batch) -> Batch:
        by_name = {lay.spec.name: lay for lay in self.layouts}
        inputs = {
            name: by_name[name].feed(arr) if name in by_name else arr
            for name, arr in batch.inputs.items()
        }
        return Batch(inputs, batch.labels, batch.meta, batch.indices)


def _row(batch: Batch, row: int) -> Batch:
    rows = slice(row, row + 1)
    return Batch(
        {k: a[rows] for k, a in batch.inputs.items()},
        None if batch.labels is None else batch.labels[rows],
        {k: a[rows] for k, a in batch.meta.items()},
        batch.indices[rows],
    )
