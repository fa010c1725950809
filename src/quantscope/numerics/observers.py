"""Streaming tensor statistics and the calibrators that turn them into a range.

A :class:`TensorObserver` keeps, for any number of batches, the exact min, max and
element counts plus two fixed-size histograms: one over the positive values and one over
the magnitudes of the negative values. Exact zeros are counted apart (``zeros``): they
are exactly representable whatever the range, and keeping them out of the histograms
lets each side's range start from real data. Memory is ``O(bins)`` whatever the number of
updates.

Histogram growth: a side's range starts at the largest magnitude of the first batch that
has data on that side. When a later batch exceeds it, the range is doubled ``k`` times
(the smallest ``k`` that covers the new maximum) and each doubling sums adjacent pairs of
bins into the lower half. Because the new edges are a subset of the old ones (0 stays an
edge and every new edge was an old edge), counts move between bins exactly; nothing is
redistributed or lost.

Calibrators map an observer to a range ``(lo, hi)`` with ``lo <= 0 <= hi`` inside the
observed ``[min, max]`` widened to 0; an observer that saw no finite value gives
``(0.0, 0.0)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from quantscope.errors import ConfigError

__all__ = [
    "CALIBRATORS",
    "TensorObserver",
    "compute_range",
    "entropy_range",
    "minmax_range",
    "mse_range",
    "percentile_range",
]


_F32_MAX = float(np.finfo(np.float32).max)


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

    def add(self, mags: np.ndarray) -> None:
        """Count magnitudes (all > 0 and finite, float64)."""
        if mags.size == 0:
            return
        top = float(mags.max())
        if self.range == 0.0:
            self.range = top
        elif top > self.range:
            self._grow(self._doublings_to_cover(top))
        bins = self.counts.size
        # Bins are right-closed, (j w, (j + 1) w]: magnitudes are > 0, the top value lands
        # in the last bin without special-casing, and a value on an edge stays in the same
        # bin when pairs are merged.
        idx = np.ceil((mags / self.range) * bins).astype(np.intp) - 1
        np.clip(idx, 0, bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=bins)

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
                if side.range == 0.0:
                    side.range = top
                elif top > side.range:
                    side._grow(side._doublings_to_cover(top))
        positive = flat[flat > 0]
        negative = flat[flat < 0]
        self.zeros += int(flat.size - positive.size - negative.size)
        for side, values, sign in ((self._pos, positive, 1.0), (self._neg, negative, -1.0)):
            if values.size == 0:
                continue
            with np.errstate(over="ignore"):
                scaled = values * values.dtype.type(sign * bins / side.range)
            np.ceil(scaled, out=scaled)
            np.clip(scaled, 1, bins, out=scaled)
            side.counts += np.bincount(scaled.astype(np.intp), minlength=bins + 1)[1:]

    def merge(self, other: TensorObserver) -> None:
        """Add the statistics of ``other`` (same ``bins``) into this observer.

        Exact for counts, min and max; the histogram of the narrower side is re-binned by
        bin centre unless both ranges differ by a power of two (then it is exact too).
        """
        if not isinstance(other, TensorObserver):
            raise ConfigError(f"can only merge a TensorObserver, got {type(other).__name__}")
        if other.bins != self.bins:
            raise ConfigError(f"cannot merge observers with {self.bins} and {other.bins} bins")
        self.histogram = self.histogram and other.histogram
        self.count += other.count
        self.nonfinite += other.nonfinite
        self.zeros += other.zeros
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._pos.absorb(other._pos)
        self._neg.absorb(other._neg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot; :meth:`from_dict` restores it exactly."""
        return {
            "bins": self.bins,
            "count": self.count,
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


# --------------------------------------------------------------------------- helpers


def _bounds(obs: TensorObserver) -> tuple[float, float]:
    """Observed range widened to contain 0."""
    return min(obs.min, 0.0), max(obs.max, 0.0)


def _clamp(obs: TensorObserver, lo: float, hi: float) -> tuple[float, float]:
    lo_b, hi_b = _bounds(obs)
    # "+ 0.0" turns -0.0 into 0.0.
    return float(min(max(lo, lo_b), 0.0)) + 0.0, float(max(min(hi, hi_b), 0.0)) + 0.0


def _side_data(obs: TensorObserver, positive: bool) -> tuple[np.ndarray, float, float]:
    """(counts, bin width, largest magnitude seen) for one side."""
    side = obs._pos if positive else obs._neg
    top = max(obs.max, 0.0) if positive else max(-obs.min, 0.0)
    return side.counts, side.width, top


def _check_observer(obs: TensorObserver, *, needs_histogram: bool = True) -> None:
    if not isinstance(obs, TensorObserver):
        raise ConfigError(f"expected a TensorObserver, got {type(obs).__name__}")
    if needs_histogram and not obs.histogram:
        raise ConfigError(
            "this calibrator reads a histogram, but the observer kept only min/max "
            "(histogram=False); observe with histogram=True or use 'minmax'"
        )


# ----------------------------------------------------------------------- calibrators


def minmax_range(obs: TensorObserver) -> tuple[float, float]:
    """The exact observed ``(min, max)``, widened to contain 0."""
    _check_observer(obs, needs_histogram=False)
    lo, hi = _bounds(obs)
    return float(lo), float(hi)


def _tail_cut(counts: np.ndarray, width: float, tail: float) -> float:
    """Magnitude above which ``tail`` elements lie, linear within the cut bin.

    Returns 0.0 when the side holds no more than ``tail`` elements.
    """
    above = np.cumsum(counts[::-1])[::-1]  # above[j]: elements in bins j and higher
    if above.size == 0 or above[0] <= tail:
        return 0.0
    j = int(np.flatnonzero(above > tail)[-1])
    beyond = float(above[j] - counts[j])  # elements above bin j's upper edge, <= tail
    frac = (tail - beyond) / float(counts[j])
    return (j + 1 - frac) * width


def percentile_range(obs: TensorObserver, percentile: float = 99.99) -> tuple[float, float]:
    """Two-tailed percentile clipping of the whole distribution.

    ``(100 - percentile) / 2`` percent of all finite elements is cut from each tail (the
    ``onnxruntime.quantization`` semantics for asymmetric ranges), so 99.99 keeps the
    0.005th to 99.995th percentile, about ``+-3.9 sigma`` on a gaussian. Working on the
    whole distribution rather than per side means a handful of outliers on an otherwise
    empty side are clipped too. Within a bin the count is spread uniformly.
    """
    _check_observer(obs)
    try:
        pct = float(percentile)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"percentile must be a number, got {percentile!r}") from exc
    if not 0.0 < pct <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {pct}")
    if obs.count == 0:
        return 0.0, 0.0
    tail = obs.count * (100.0 - pct) / 200.0
    pos, pos_w, _ = _side_data(obs, True)
    neg, neg_w, _ = _side_data(obs, False)
    return _clamp(obs, -_tail_cut(neg, neg_w, tail), _tail_cut(pos, pos_w, tail))


def _xlogx(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def _kl_divergences(hist: np.ndarray, num_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """KL(P || Q) of TensorRT's threshold search for every candidate bin count.

    For ``i`` kept bins (``num_levels <= i <= len(hist)``), P is ``hist[:i]`` with all
    clipped mass added to its last bin; Q merges ``hist[:i]`` (without that mass) into
    ``num_levels`` groups of ``i // num_levels`` bins, the last group taking the remainder,
    and spreads each group evenly over the bins where P is non-zero. A bin with P > 0 but
    Q = 0 (only the last one, when its group holds nothing but clipped mass) gets 1e-4
    counts, the smoothing of TensorRT/MXNet applied only where it matters.

    Q is constant over the non-zero bins of a group, so with prefix sums every candidate
    costs O(num_levels) instead of O(i): ``KL = sum P log P - sum_g mass_g log q_g / T + log
    sum Q``. Returns ``(i, kl)``; candidates with no in-range mass get ``inf``.
    """
    h = hist.astype(np.float64)
    n = h.size
    kept = np.arange(num_levels, n + 1)
    prefix = np.concatenate([[0.0], np.cumsum(h)])
    prefix_nz = np.concatenate([[0], np.cumsum(h > 0)])
    prefix_hlogh = np.concatenate([[0.0], np.cumsum(_xlogx(h))])
    total = prefix[-1]
    clipped = total - prefix[kept]
    last = h[kept - 1]
    width = kept // num_levels
    starts = np.arange(num_levels)[None, :] * width[:, None]
    ends = starts + width[:, None]
    ends[:, -1] = kept
    groups = prefix[ends] - prefix[starts]
    nonzero = (prefix_nz[ends] - prefix_nz[starts]).astype(np.float64)
    nonzero[:, -1] += (last == 0) & (clipped > 0)
    mass = groups.copy()
    mass[:, -1] += clipped
    q_per_bin = np.where(groups > 0, groups / np.maximum(nonzero, 1.0), 1e-4)
    smoothed = (groups[:, -1] == 0) & (clipped > 0)
    q_total = groups.sum(axis=1) + np.where(smoothed, 1e-4, 0.0)
    p_log_p = prefix_hlogh[kept - 1] + _xlogx(last + clipped)
    p_log_q = np.sum(np.where(mass > 0, mass * np.log(q_per_bin), 0.0), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(q_total)
    kl = np.where(total - clipped > 0, kl, np.inf)
    return kept, kl


def _kl_best_bins(hist: np.ndarray, num_levels: int) -> int:
    """Number of leading bins kept by the KL search (all bins if too few to search)."""
    if hist.size <= num_levels or not np.any(hist):
        return int(hist.size)
    kept, kl = _kl_divergences(hist, num_levels)
    return int(kept[int(np.argmin(kl))])


def entropy_range(obs: TensorObserver, num_levels: int = 128) -> tuple[float, float]:
    """TensorRT-style KL-divergence calibration, run separately on each side of zero.

    TensorRT searches a symmetric threshold on ``|x|``; for asymmetric (uint8) data that
    would tie a short negative tail to the long positive one, so here each side's
    magnitude histogram gets its own search and its own threshold. Exact zeros are left
    out: the zero point represents them at any threshold, and as a spike in the first bin
    they would drag the search towards thresholds where that bin is a level of its own
    (about 1.9 sigma instead of 4 on ReLU outputs).

    ``num_levels`` (128 by default, TensorRT's value for one side of int8) is the number of
    levels a side is compressed to during the search. Thresholds go from ``num_levels``
    bins to all bins, so a side is never clipped below ``num_levels / bins`` of its
    histogram range (with far outliers the bins are coarse and that floor is what limits
    the clipping). A side with no data gives 0.
    """
    _check_observer(obs)
    if isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer):
        raise ConfigError(f"num_levels must be an int, got {num_levels!r}")
    if num_levels < 2:
        raise ConfigError(f"num_levels must be >= 2, got {num_levels}")
    if obs.count == 0:
        return 0.0, 0.0
    bounds = []
    for positive in (True, False):
        counts, width, top = _side_data(obs, positive)
        if top == 0.0:
            bounds.append(0.0)
            continue
        bounds.append(min(_kl_best_bins(counts, int(num_levels)) * width, top))
    return _clamp(obs, -bounds[1], bounds[0])


_MSE_SHRINK = np.unique(np.concatenate([np.geomspace(1e-4, 1.0, 160), np.linspace(0.0, 1.0, 101)]))
"""Shrink factors tried per side: fine near 1, geometric down to 1e-4 for outliers."""

_LEVEL_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16))


class _MseSide:
    """One side's histogram prepared for the MSE search (prefix sums over bin centres)."""

    def __init__(self, counts: np.ndarray, width: float, top: float, shrink: np.ndarray) -> None:
        if top == 0.0:
            self.candidates = np.zeros(1)
            counts = counts[:0]
        else:
            self.candidates = shrink * top
        # Centres are clamped to the largest magnitude seen: the top bin may reach past it.
        self.centres = np.minimum((np.arange(counts.size) + 0.5) * width, top)
        w = counts.astype(np.float64)
        self.n_pref = np.concatenate([[0.0], np.cumsum(w)])
        self.c_pref = np.concatenate([[0.0], np.cumsum(w * self.centres)])
        self.c2_pref = np.concatenate([[0.0], np.cumsum(w * self.centres**2)])

    def error(self, limit: np.ndarray, half_step: np.ndarray) -> np.ndarray:
        """Squared error of this side when values above ``limit`` are clipped.

        Clipped bins cost ``w (c - limit)**2``; kept bins cost ``w c**2`` within half a
        step of 0 (they round to the zero point) and ``w step**2 / 12`` beyond.
        """
        kept = np.searchsorted(self.centres, limit, side="right")
        n_out = self.n_pref[-1] - self.n_pref[kept]
        s1 = self.c_pref[-1] - self.c_pref[kept]
        s2 = self.c2_pref[-1] - self.c2_pref[kept]
        clip = np.maximum(s2 - 2.0 * limit * s1 + limit * limit * n_out, 0.0)
        near = np.minimum(np.searchsorted(self.centres, half_step, side="right"), kept)
        rounding = self.c2_pref[near] + half_step**2 / 3.0 * (self.n_pref[kept] - self.n_pref[near])
        return clip + rounding


def mse_range(
    obs: TensorObserver, num_levels: int = 256, dtype: np.dtype | type = np.uint8
) -> tuple[float, float]:
    """Range minimising the expected squared error of affine quantization.

    For a candidate ``(lo, hi)`` with step ``s = (hi - lo) / (num_levels - 1)`` each element,
    taken at its bin centre ``c``, costs: ``(c - hi)**2`` or ``(lo - c)**2`` when clipped;
    ``c**2`` when within ``s / 2`` of zero (it rounds to the zero point, and with wide ranges
    most of the data does); ``s**2 / 12`` otherwise (uniform rounding error). Exact zeros
    cost nothing. The clipping ends are those the integer zero point really gives, as in
    :func:`~quantscope.numerics.affine.activation_qparams`. Both ends are searched
    independently over shrink factors of the observed extent (about 260 per side, dense
    near 1 and geometric down to 1e-4), every pair at once.

    Being a true squared-error criterion it keeps large outliers unless they are very rare:
    clipping one costs its full squared distance. ``dtype`` is the integer type the range is
    meant for; ``num_levels`` (256 by default: every level of an 8-bit type) must fit it.
    """
    _check_observer(obs)
    qdtype = np.dtype(dtype)
    if qdtype not in _LEVEL_DTYPES:
        raise ConfigError(
            f"unsupported dtype {qdtype}; use one of " + ", ".join(d.name for d in _LEVEL_DTYPES)
        )
    if isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer):
        raise ConfigError(f"num_levels must be an int, got {num_levels!r}")
    max_levels = 2 ** (8 * qdtype.itemsize)
    if not 2 <= num_levels <= max_levels:
        raise ConfigError(f"num_levels must be in [2, {max_levels}] for {qdtype}, got {num_levels}")
    if obs.count == 0:
        return 0.0, 0.0
    pos = _MseSide(*_side_data(obs, True), _MSE_SHRINK)
    neg = _MseSide(*_side_data(obs, False), _MSE_SHRINK)
    hi, lo_mag = pos.candidates[:, None], neg.candidates[None, :]
    steps = num_levels - 1
    step = (hi + lo_mag) / steps
    # The zero point is rounded to an integer, which moves both ends of the grid; judge
    # each candidate by the ends it will really have.
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.clip(np.rint(np.where(step > 0, lo_mag / step, 0.0)), 0, steps)
    total = pos.error((steps - below) * step, step / 2.0) + neg.error(below * step, step / 2.0)
    i, j = np.unravel_index(int(np.argmin(total)), total.shape)
    return _clamp(obs, -float(neg.candidates[j]), float(pos.candidates[i]))


CALIBRATORS: dict[str, Callable[..., tuple[float, float]]] = {
    "minmax": minmax_range,
    "percentile": percentile_range,
    "entropy": entropy_range,
    "mse": mse_range,
}
"""Calibration method name to function ``(observer, **params) -> (lo, hi)``."""


def compute_range(method: str, obs: TensorObserver, **params: Any) -> tuple[float, float]:
    """Run the calibrator named ``method``; unknown names or parameters raise ConfigError."""
    fn = CALIBRATORS.get(method)
    if fn is None:
        raise ConfigError(
            f"unknown calibration method {method!r}; valid methods: "
            + ", ".join(sorted(CALIBRATORS))
        )
    sig = inspect.signature(fn)
    try:
        sig.bind(obs, **params)
    except TypeError as exc:
        accepted = list(sig.parameters)[1:]
        raise ConfigError(
            f"calibration method {method!r} takes "
            + (", ".join(accepted) if accepted else "no parameters")
            + f"; got {sorted(params)}"
        ) from exc
    return fn(obs, **params)
