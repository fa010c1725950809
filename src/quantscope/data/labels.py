"""Labels as class indices: the check every labelled metric (accuracy, top-k) makes first.

:func:`check_labels` turns labels into int64 class indices or raises a DataError that names
the labels, what is wrong with them (strings, fractions, one-hot rows, out of range) and what
is expected, instead of a metric failing later without saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quantscope.data.checks import fmt_shape
from quantscope.errors import DataError


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0])


def _fits(got: tuple[int, ...], want: tuple[int | str, ...]) -> bool:
    return len(got) == len(want) and all(isinstance(w, str) or g == w for g, w in zip(got, want, strict=True))


def check_labels(
    labels: Any,
    num_classes: int | None = None,
    *,
    sample_shape: Sequence[int | str] | None = (),
    what: str = "the labels",
) -> np.ndarray:
    """``labels`` as int64 class indices, or a DataError naming them and what is expected.

    ``num_classes`` (the length of the model's score axis) bounds the indices to
    ``0 .. num_classes - 1``. ``sample_shape`` is the shape of one sample's labels: ``()``
    for one class per sample (``(N, 1)`` labels are accepted and flattened), ``(T,)`` for
    one class per token of scores ``(N, T, C)``; a name (str) in it is a dimension whose size
    is not known, and None skips the shape check. Booleans count as classes 0 and 1; strings,
    non-integer numbers and one-hot rows are refused with the conversion to apply.
    """
    arr = np.asarray(labels)
    want = tuple(arr.shape[1:] if sample_shape is None else sample_shape)
    expected = (
        f"integer class indices, one per sample (shape (N,){' of 0..' + str(num_classes - 1) if num_classes else ''})"
        if not want
        else f"integer class indices of shape (N, {', '.join(map(str, want))})"
    )
    if arr.ndim == 0:
        raise DataError(f"{what} are a single value {arr.tolist()!r}; expected {expected}")
    if arr.dtype.kind in "USO":
        sample = ", ".join(repr(v) for v in np.unique(arr.astype(str))[:3].tolist())
        raise DataError(
            f"{what} are text ({sample}, ...); expected {expected}. Map the names to indices, e.g. "
            "classes, labels = np.unique(labels, return_inverse=True)"
        )
    if arr.dtype.kind in "fc":
        integral = np.isfinite(arr) & (arr == np.round(arr.real))
        bad = ~integral
        if bad.any():
            row = _first_bad(bad)
            raise DataError(
                f"{what} are {arr.dtype.name} and not whole numbers (sample {row}: "
                f"{arr[row].tolist()!r}); expected {expected}. Scores or probabilities are not labels"
            )
        raise DataError(
            f"{what} are {arr.dtype.name} numbers; expected {expected}. They are whole "
            "numbers: convert them with labels.astype(np.int64)"
        )
    if arr.dtype.kind not in "iub":
        raise DataError(f"{what} have dtype {arr.dtype}; expected {expected}")
    if not _fits(arr.shape[1:], want):
        if not want and arr.shape[1:] == (1,):
            arr = arr.reshape(len(arr))
        else:
            hint = (
                "; one-hot or multi-label rows: take labels.argmax(axis=-1) for one class each"
                if arr.ndim == len(want) + 2
                else ""
            )
            raise DataError(
                f"{what} have shape {fmt_shape(arr.shape)} ({fmt_shape(arr.shape[1:])} per "
                f"sample); expected {expected}{hint}"
            )
    out = arr.astype(np.int64)
    if num_classes is not None and out.size:
        bad = (out < 0) | (out >= num_classes)
        if bad.any():
            row = _first_bad(bad)
            count = int(bad.reshape(len(out), -1).any(axis=1).sum())
            raise DataError(
                f"{what} hold {count} sample(s) out of range (sample {row}: {out[row].tolist()!r}, the "
                f"labels span {int(out.min())}..{int(out.max())}); the model scores "
                f"{num_classes} classes, so labels must lie in 0..{num_classes - 1}"
            )
    return out
