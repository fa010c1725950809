"""Working on a large array a slice at a time, so no temporary is as big as the array.

A weight read from a memory-mapped external data file is as large as the model allows; an
element-wise expression over it (``np.isfinite(w)``, ``w.astype(np.float64)``, ``w / scale``)
allocates temporaries of its size. The helpers here bound each temporary to
:data:`CHUNK_BYTES` of input; results are the same as over the whole array.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_BYTES = 16 * 2**20
"""Input bytes processed at a time; a chunk holds at least one row."""

__all__ = ["CHUNK_BYTES", "all_finite", "row_slices"]


def row_slices(rows: int, row_bytes: int, chunk_bytes: int | None = None) -> Iterator[slice]:
    """Consecutive slices covering ``range(rows)``, each about ``chunk_bytes`` (default
    :data:`CHUNK_BYTES`; at least one row)."""
    step = max(1, (CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // max(int(row_bytes), 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def all_finite(a: np.ndarray) -> bool:
    """``np.all(np.isfinite(a))`` for a float array, without a boolean temporary of its size."""
    a = np.asarray(a)
    if a.dtype.kind not in "fc":
        return True
    if a.ndim == 0 or a.nbytes <= CHUNK_BYTES:
        return bool(np.all(np.isfinite(a)))
    row_bytes = a.nbytes // a.shape[0] if a.shape[0] else 0
    return all(bool(np.all(np.isfinite(a[rows]))) for rows in row_slices(a.shape[0], row_bytes))
