"""Streaming statistics of one tensor: exact min/max and counts plus two fixed-size histograms.

A :class:`TensorObserver` keeps, for any number of batches, the exact min, max and
element counts plus two fixed-size histograms: one over the positive values and one over
the magnitudes of the negative values. Exact zeros are counted apart (``zeros``): they
are exactly representable whatever the range, and keeping them out of the histograms
lets each side's range start from real data. Memory is ``O(bins)`` whatever the number of
updates.

Histogram ranges are powers of two: a side's range is the smallest power of two that
covers the largest magnitude seen on that side. When a later batch exceeds it, the range
is doubled ``k`` times (the smallest ``k`` that covers the new maximum) and each doubling
sums adjacent pairs of bins into the lower half. Because the new edges are a subset of the
old ones (0 stays an edge and every new edge was an old edge), counts move between bins
exactly; nothing is redistributed or lost.

Observers merge (:meth:`TensorObserver.merge`): two ranges are always a power of two
apart, so the narrower histogram nests into the wider one bin for bin. Observing shards
of the data separately and merging gives the same statistics, and the same calibrated
ranges, as one pass over all of it; that is what lets calibration run as map-reduce.

The range rules that read these statistics are in :mod:`quantscope.numerics.ranges`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from quantscope.errors import ConfigError

__all__ = ["TensorObserver"]


_F32_MAX = float(np.finfo(np.float32).max)


def _pow2_ceil(x: float) -> float:
    """The smallest power of two ``>= x`` (``x > 0`` and finite)."""
    mantissa, exponent = math.frexp(x)
    return x if mantissa == 0.5 else math.ldexp(1.0, exponent)


class _Side:
    """Histogram of magnitudes on one side of zero: ``bins`` bins over ``(0, range]``."""

    __slots__ = ("counts", "range")

    def __init__(self, bins: int) -> None:
        self.counts = np.zeros(bins, dtype=np.int64)
        self.range = 0.0  # 0.0: no data yet

    @property
    def width(self) -> float:
        return self.range / self.counts.size

    def _grow(self, doublings: int) -> None:
        bins = self.counts.size
        # After ceil(log2(bins)) doublings everything sits in bin 0; more changes nothing.
        for _ in range(min(doublings, bins.bit_length() + 1)):
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(bins - merged.size, np.int64)])
        self.range = math.ldexp(self.range, doublings)

    def _doublings_to_cover(self, value: float) -> int:
        # Difference of logs: the ratio itself can overflow (denormal range, huge value).
        k = max(1, math.ceil(math.log2(value) - math.log2(self.range)))
        while k > 1 and math.ldexp(self.range, k - 1) >= value:
            k -= 1
        while math.ldexp(self.range, k) < value:
            k += 1
        return k

    def cover(self, top: float) -> None:
        """Widen the range (a power of two) to hold magnitudes up to ``top`` (> 0)."""
        if self.range == 0.0:
            self.range = _pow2_ceil(top)
        elif top > self.range:
            self._grow(self._doublings_to_cover(top))

    def absorb(self, other: _Side) -> None:
        """Add another side's counts (same number of bins)."""
        if other.range == 0.0:
            return
        if self.range == 0.0:
            self.range, self.counts = other.range, other.counts.copy()
            return
        if other.range > self.range:
            self._grow(self._doublings_to_cover(other.range))
        if other.range == self.range:
            self.counts += other.counts
            return
        # Narrower source bins go to the target bin holding their centre. Exact when the
        # ranges differ by a power of two (bins nest); otherwise within one target bin.
        bins = self.counts.size
        centres = (np.arange(bins) + 0.5) * (other.range / self.range)  # in target bins
        idx = np.clip(np.ceil(centres).astype(np.intp) - 1, 0, bins - 1)
        self.counts += np.bincount(idx, weights=other.counts, minlength=bins).astype(np.int64)


class TensorObserver:
    """Running statistics of every value a tensor took during calibration.

    ``update`` accepts arrays of any shape and real dtype. NaN and infinities are counted
    in ``nonfinite`` and otherwise ignored; so are float64 values beyond the float32 range,
    which a float32 model would hold as infinities. ``count`` is the number of finite elements,
    ``zeros`` how many of them were exactly 0, and always
    ``pos_hist.sum() + neg_hist.sum() + zeros == count``. ``min`` and ``max`` are exact
    (0.0 while ``count`` is 0).

    With ``histogram=False`` only ``min``, ``max``, ``count`` and ``nonfinite`` are kept: all
    that min-max calibration reads, at a fraction of the cost (the histograms dominate
    calibration time). Calibrators that need a histogram refuse such an observer.
    """

    def __init__(
        self, bins: int = 2048, *, max_hist_elements: int = 1 << 20, histogram: bool = True
    ) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int | np.integer):
            raise ConfigError(f"bins must be an int, got {bins!r}")
        if bins < 2 or bins % 2:
            raise ConfigError(f"bins must be an even number >= 2, got {bins}")
        self.bins = int(bins)
        self.histogram = bool(histogram)
        self.max_hist_elements = int(max_hist_elements)
        self.seen = 0  # finite elements seen (count: those in the histograms)
        self.count = 0
        self.nonfinite = 0
        self.zeros = 0
        self._min = math.inf
        self._max = -math.inf
        self._pos = _Side(self.bins)
        self._neg = _Side(self.bins)

    @property
    def min(self) -> float:
        """Smallest finite value seen (0.0 before any)."""
        return self._min if self.count else 0.0

    @property
    def max(self) -> float:
        """Largest finite value seen (0.0 before any)."""
        return self._max if self.count else 0.0

    @property
    def pos_range(self) -> float:
        """Upper edge of the positive histogram (0.0 until a positive value is seen)."""
        return self._pos.range

    @property
    def neg_range(self) -> float:
        """Upper edge of the negative-magnitude histogram (0.0 until a negative value)."""
        return self._neg.range

    @property
    def pos_hist(self) -> np.ndarray:
        """Counts of positive values, ``bins`` bins over ``[0, pos_range]`` (read-only)."""
        view = self._pos.counts.view()
        view.flags.writeable = False
        return view

    @property
    def neg_hist(self) -> np.ndarray:
        """Counts of ``-x`` for negative ``x``, ``bins`` bins over ``[0, neg_range]``."""
        view = self._neg.counts.view()
        view.flags.writeable = False
        return view

    def update(self, x: np.ndarray) -> None:
        """Fold one batch into the statistics; cost O(x.size), memory O(bins)."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise ConfigError(f"can only observe real numeric tensors, got dtype {arr.dtype}")
        # float32 tensors stay float32 (half the memory traffic); other types go to float64
        flat = arr.reshape(-1) if arr.dtype == np.float32 else arr.reshape(-1).astype(np.float64, copy=False)
        if flat.size == 0:
            return
        lo, hi = float(flat.min()), float(flat.max())  # NaN propagates: one cheap check
        if not (lo >= -_F32_MAX and hi <= _F32_MAX):
            finite = np.abs(flat) <= _F32_MAX  # False for NaN and +-inf too
            self.nonfinite += flat.size - int(np.count_nonzero(finite))
            flat = flat[finite]
            if flat.size == 0:
                return
            lo, hi = float(flat.min()), float(flat.max())
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)
        self.seen += int(flat.size)
        if not self.histogram:
            self.count += int(flat.size)
            return
        if flat.size > self.max_hist_elements:
            # histogram a deterministic strided subsample of huge tensors (attention maps):
            # min/max stay exact, the distribution's shape needs far fewer points
            flat = flat[:: -(-flat.size // self.max_hist_elements)]
        self.count += int(flat.size)
        self._count_signed(flat, lo, hi)

    def _count_signed(self, flat: np.ndarray, lo: float, hi: float) -> None:
        """Both histograms and the zero count.

        Bin numbers are ``ceil(|x| / range * bins)`` clipped to ``[1, bins]`` (right-closed
        bins, as in ``_Side.add``; tiny non-zero magnitudes belong to the first bin). Each sign
        is compressed out once and counted with one bincount: few passes over memory, which
        matters because calibration observes every activation of every batch.
        """
        bins = self.bins
        for side, top in ((self._pos, hi), (self._neg, -lo)):
            if top > 0:
                side.cover(top)
        positive = flat[flat > 0]
        negative = flat[flat < 0]
        self.zeros += int(flat.size - positive.size - negative.size)
        for side, values, sign in ((self._pos, positive, 1.0), (self._neg, negative, -1.0)):
            if values.size == 0:
                continue
            factor = sign * bins / side.range
            if factor > _F32_MAX:  # a range below ~1e-35: scale in float64, float32 would overflow
                values = values.astype(np.float64)
            with np.errstate(over="ignore"):
                scaled = values * values.dtype.type(factor)
            np.ceil(scaled, out=scaled)
            np.clip(scaled, 1, bins, out=scaled)
            side.counts += np.bincount(scaled.astype(np.intp), minlength=bins + 1)[1:]

    def merge(self, other: TensorObserver) -> None:
        """Add the statistics of ``other`` (same ``bins``) into this observer, in place.

        Exact: counts, min and max add up, and the narrower histogram nests into the wider one
        (ranges are powers of two). Merging observers of shards of the data gives what one
        observer of all of it gives. Histograms restored from a snapshot whose ranges are not
        powers of two apart are re-binned by bin centre (within one bin).
        """
        if not isinstance(other, TensorObserver):
            raise ConfigError(f"can only merge a TensorObserver, got {type(other).__name__}")
        if other.bins != self.bins:
            raise ConfigError(f"cannot merge observers with {self.bins} and {other.bins} bins")
        self.histogram = self.histogram and other.histogram
        self.seen += other.seen
        self.count += other.count
        self.nonfinite += other.nonfinite
        self.zeros += other.zeros
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._pos.absorb(other._pos)
        self._neg.absorb(other._neg)

    @classmethod
    def merged(cls, observers: Iterable[TensorObserver]) -> TensorObserver:
        """A new observer holding the statistics of all ``observers`` (none of them is changed).

        The reduce step of sharded calibration; all must have the same ``bins``.
        """
        parts = list(observers)
        if not parts:
            raise ConfigError("merged() needs at least one observer")
        first = parts[0]
        if not isinstance(first, TensorObserver):
            raise ConfigError(f"can only merge a TensorObserver, got {type(first).__name__}")
        out = cls(bins=first.bins, max_hist_elements=first.max_hist_elements, histogram=first.histogram)
        for part in parts:
            out.merge(part)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot; :meth:`from_dict` restores it exactly."""
        return {
            "bins": self.bins,
            "count": self.count,
            "seen": self.seen,
            "nonfinite": self.nonfinite,
            "zeros": self.zeros,
            "min": self._min if self.count else None,
            "max": self._max if self.count else None,
            "pos_range": self._pos.range,
            "neg_range": self._neg.range,
            "pos_hist": self._pos.counts.tolist(),
            "neg_hist": self._neg.counts.tolist(),
            "histogram": self.histogram,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorObserver:
        """Rebuild an observer from :meth:`to_dict` output."""
        try:
            obs = cls(bins=int(data["bins"]), histogram=bool(data.get("histogram", True)))
            obs.count = int(data["count"])
            obs.seen = int(data.get("seen", obs.count))
            obs.nonfinite = int(data["nonfinite"])
            obs.zeros = int(data["zeros"])
            if obs.count:
                obs._min = float(data["min"])
                obs._max = float(data["max"])
            for side, key in ((obs._pos, "pos"), (obs._neg, "neg")):
                side.range = float(data[f"{key}_range"])
                counts = np.asarray(data[f"{key}_hist"], dtype=np.int64)
                if counts.shape != (obs.bins,) or np.any(counts < 0) or side.range < 0:
                    raise ValueError(f"bad {key} histogram")
                side.counts = counts
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid observer snapshot: {exc}") from exc
        total = int(obs._pos.counts.sum() + obs._neg.counts.sum()) + obs.zeros
        if obs.histogram and total != obs.count:
            raise ConfigError("not a valid observer snapshot: histogram counts do not add up")
        return obs
