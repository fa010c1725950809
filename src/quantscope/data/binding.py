"""Binding data to a model's inputs: names and dtypes (shapes: :mod:`.feeding`).

:func:`bind_names` checks the data's input names against the model's input specs
(before any data is read); :func:`bind_step` is the per-batch check of dtypes, with the
few conversions that lose nothing a model can see, and drops data the model does not take.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import numpy as np

from quantscope.data.batch import Origin, Step
from quantscope.data.checks import UNNAMED
from quantscope.errors import ConfigError, DataMismatchError
from quantscope.specs import TensorSpec

logger = logging.getLogger(__name__)

CONVERTIBLE: Final = frozenset(
    {
        (np.dtype(np.float64), np.dtype(np.float32)),
        (np.dtype(np.int32), np.dtype(np.int64)),
    }
)
"""(data dtype, model dtype) pairs that :meth:`Dataset.bind` converts instead of refusing."""


def _describe_all(specs: Sequence[TensorSpec]) -> str:
    return "; ".join(spec.describe() for spec in specs)


def check_specs(specs: Sequence[TensorSpec]) -> None:
    """Refuse input specs that no data can be bound to (ConfigError, DataMismatchError)."""
    if not specs:
        raise ConfigError("bind needs the model's input specs; got none")
    spec_names = [spec.name for spec in specs]
    if len(set(spec_names)) != len(spec_names):
        raise ConfigError(f"input specs repeat a name: {spec_names}")


def bind_names(
    specs: Sequence[TensorSpec],
    have: tuple[str, ...],
    warned: set[str],
    optional: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Check the data's input names ``have`` against ``specs`` (checked by :func:`check_specs`).

    Returns ``{model input name: data name}`` for inputs named differently in the data
    (a bare array under :data:`UNNAMED`); raises DataMismatchError for a missing input.
    Data for inputs the model does not take is ignored, with a logged warning (once: the
    messages already logged are in ``warned``), except for the ``optional`` inputs a source
    makes for any model that may take them, which are dropped quietly.
    """
    spec_names = [spec.name for spec in specs]
    expected = _describe_all(specs)
    if have == (UNNAMED,):
        if len(specs) != 1:
            raise DataMismatchError(
                f"the data is a single unnamed array but the model has {len(specs)} "
                f"inputs ({expected}); pass a dict keyed by input name, e.g. "
                f"Dataset.from_arrays({{{spec_names[0]!r}: ..., {spec_names[1]!r}: ...}})"
            )
        return {spec_names[0]: UNNAMED}
    missing = [name for name in spec_names if name not in have]
    extra = [name for name in have if name not in spec_names]
    quiet = [name for name in extra if name in optional]
    if quiet:
        logger.debug("the model does not take %s; dropping them", quiet)
        extra = [name for name in extra if name not in optional]
    if missing:
        also = f"; it also has {extra}, which the model does not take" if extra else ""
        raise DataMismatchError(
            f"the data lacks model input(s) {missing}{also}. The data has "
            f"{list(have)}; the model expects: {expected}"
        )
    note = (
        f"ignoring data for input(s) {extra} that the model does not take (the model expects: "
        f"{expected}); store labels under 'labels' and metadata under 'meta_*' keys "
        "(labels=/meta= for from_arrays) to keep them"
    )
    if extra and note not in warned:
        warned.add(note)
        logger.warning("%s", note)
    return {}


def _convert(spec: TensorSpec, arr: np.ndarray, origin: Origin, warned: set[str]) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return arr
    if (arr.dtype, want) not in CONVERTIBLE:
        raise DataMismatchError(
            f"input {spec.name!r}: the model wants {want.name} but {origin.where(0)} is "
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
                f"input {spec.name!r}: {origin.where(row)} holds values beyond the "
                f"{want.name} range (max {np.finfo(want).max:.3g}); rescale the data"
            )
    return out


def bind_step(specs: tuple[TensorSpec, ...], rename: dict[str, str]) -> Step:
    """The per-batch check and conversion of :meth:`Dataset.bind`."""
    expected = _describe_all(specs)
    data_names = {spec.name: rename.get(spec.name, spec.name) for spec in specs}
    warned: set[str] = set()

    def apply(inputs: dict[str, np.ndarray], origin: Origin) -> dict[str, np.ndarray]:
        if not set(data_names.values()) <= set(inputs):
            raise DataMismatchError(
                f"the batch starting at {origin.where(0)} has inputs {sorted(inputs)} "
                f"but the model expects: {expected}"
            )
        return {
            spec.name: _convert(spec, inputs[data_names[spec.name]], origin, warned)
            for spec in specs
        }

    return Step(apply, tuple(spec.name for spec in specs))
