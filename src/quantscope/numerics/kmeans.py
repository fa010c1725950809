"""Seeded 1-D k-means codebooks for weight clustering (pure NumPy, deterministic).

Scalar weights make k-means one-dimensional, where everything is cheap and exact:

* clusters of a sorted array are contiguous runs cut at the midpoints between sorted
  centroids, so one Lloyd iteration over ``n`` sorted values costs ``O(k log n)``
  (binary searches for the cuts, prefix sums for the means) instead of ``O(n k)``;
* the nearest centroid of any value is one ``searchsorted`` into those midpoints.

Initialisation is k-means++ (Arthur & Vassilvitskii 2007) with a ``numpy`` generator seeded
by the caller, run on a seeded subsample of at most :data:`INIT_SAMPLE` values (k-means++
costs ``O(m k)``); Lloyd iterations then run on all values. A tensor with at most ``k``
distinct values is represented exactly by its distinct values. Ties go to the lower
centroid. The same input, ``k``, iteration count and seed always give the same codebook.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.chunks import row_slices
from quantscope.numerics.lowbit import CodedTensor
from quantscope.numerics.packing import check_bits

__all__ = ["INIT_SAMPLE", "assign", "cluster_weights", "kmeans1d"]

INIT_SAMPLE = 1 << 16
"""Largest sample k-means++ initialisation looks at."""

LEAN_ABOVE = 1 << 24
"""Above this many float32 values the sorted copy stays float32 and each cluster's sum is taken over
its run (float64 accumulator) instead of from a float64 prefix array: about one copy of the tensor
instead of four."""

Seed = int | tuple[int, ...]


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``centroids`` for every value of ``x`` (ties: lower)."""
    c = np.asarray(centroids, dtype=np.float64)
    bounds = (c[:-1] + c[1:]) / 2.0
    return np.searchsorted(bounds, np.asarray(x, dtype=np.float64), side="left")


def _kmeans_pp(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (at most ``k``, fewer when the sample has fewer distinct values)."""
    centers = [sample[rng.integers(sample.size)]]
    d2 = np.square(sample - centers[0])
    for _ in range(1, k):
        cum = np.cumsum(d2)
        total = cum[-1]
        if total <= 0.0:
            break
        pick = min(int(np.searchsorted(cum, rng.random() * total, side="right")), sample.size - 1)
        centers.append(sample[pick])
        np.minimum(d2, np.square(sample - sample[pick]), out=d2)
    return np.sort(np.asarray(centers, dtype=np.float64))


def _distinct(xs: np.ndarray) -> int:
    """How many distinct values the sorted ``xs`` holds (a chunk at a time: no mask of its size)."""
    changes = 0
    for part in row_slices(max(xs.size - 1, 0), xs.itemsize):
        changes += int(np.count_nonzero(xs[part.start + 1 : part.stop + 1] != xs[part]))
    return changes + 1


def _below(bounds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``bounds`` as the largest values of ``dtype`` not above them: searching an array of that dtype
    gives the same positions as the exact bounds, and NumPy makes no float64 copy of the array."""
    if dtype == np.float64:
        return bounds
    low = bounds.astype(dtype)
    return np.where(low > bounds, np.nextafter(low, dtype.type(-np.inf)), low)


def _pad(centroids: np.ndarray, k: int) -> np.ndarray:
    if centroids.size >= k:
        return centroids
    return np.concatenate([centroids, np.full(k - centroids.size, centroids[-1])])


def kmeans1d(x: np.ndarray, k: int, *, iterations: int = 25, seed: Seed = 0) -> np.ndarray:
    """``k`` sorted float64 centroids of the values of ``x`` (repeats when fewer are distinct)."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    flat = np.asarray(x).reshape(-1)
    lean = flat.size > LEAN_ABOVE and flat.dtype == np.float32
    xs = np.array(flat, dtype=np.float32 if lean else np.float64)  # a copy, sorted in place
    del flat
    xs.sort()
    if xs.size == 0:
        raise ConfigError("cannot cluster an empty array")
    if not np.isfinite(xs[0]) or not np.isfinite(xs[-1]):
        raise ConfigError("cannot cluster values that include NaN or infinity")
    if _distinct(xs) <= k:
        return _pad(xs[np.concatenate([[True], xs[1:] != xs[:-1]])], k)
    rng = np.random.default_rng(seed)
    sample = xs if xs.size <= INIT_SAMPLE else rng.choice(xs, size=INIT_SAMPLE, replace=False)
    c = _pad(_kmeans_pp(np.asarray(sample, dtype=np.float64), k, rng), k)
    prefix = None
    if not lean:
        prefix = np.zeros(xs.size + 1, dtype=np.float64)
        np.cumsum(xs, out=prefix[1:])
    previous: np.ndarray | None = None
    for _ in range(iterations):
        bounds = (c[:-1] + c[1:]) / 2.0
        cuts = np.concatenate([[0], np.searchsorted(xs, _below(bounds, xs.dtype), side="right"), [xs.size]])
        if previous is not None and np.array_equal(cuts, previous):
            break
        previous = cuts
        counts = np.diff(cuts)
        if prefix is not None:
            sums = prefix[cuts[1:]] - prefix[cuts[:-1]]
        else:  # float64 accumulation in NumPy's buffered chunks: no float64 copy of the run
            sums = np.array([np.sum(xs[a:b], dtype=np.float64) for a, b in pairwise(cuts)])
        # an empty cluster keeps its centroid (which stays between its neighbours: order holds)
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
    return c


def cluster_weights(
    w: np.ndarray, bits: int, *, axis: int | None = None, iterations: int = 25, seed: int = 0
) -> CodedTensor:
    """A ``2**bits``-entry k-means codebook for ``w``: one for the tensor, or one per index of ``axis``.

    Channel ``c`` is seeded with ``(seed, c)``; the whole tensor with ``seed``.
    """
    bits = check_bits(bits)
    k = 1 << bits
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        book = kmeans1d(w, k, iterations=iterations, seed=seed).astype(np.float32)
        codes = np.empty(w.shape, dtype=np.uint8)
        flat_codes, flat_w = codes.reshape(-1), w.reshape(-1)
        for part in row_slices(flat_w.size, 8):  # a chunk at a time: no int64 indices of the tensor's size
            flat_codes[part] = assign(flat_w[part], book)
        return CodedTensor(codes=codes, codebook=book, axis=None, bits=bits)
    axis = axis % w.ndim
    moved = np.moveaxis(w, axis, 0)
    rows = moved.reshape(moved.shape[0], -1)
    books = np.empty((rows.shape[0], k), dtype=np.float32)
    codes = np.empty(rows.shape, dtype=np.uint8)
    for c, row in enumerate(rows):
        books[c] = kmeans1d(row, k, iterations=iterations, seed=(seed, c)).astype(np.float32)
        codes[c] = assign(row, books[c])
    codes_w = np.ascontiguousarray(np.moveaxis(codes.reshape(moved.shape), 0, axis))
    return CodedTensor(codes=codes_w, codebook=books, axis=axis, bits=bits)
