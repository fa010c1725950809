"""Range rules: the functions that turn a :class:`TensorObserver` into a range ``(lo, hi)``.

Each maps an observer to a range with ``lo <= 0 <= hi`` inside the observed ``[min, max]``
widened to 0; an observer that saw no finite value gives ``(0.0, 0.0)``. Min-max reads only
the exact extremes; percentile, entropy (KL divergence) and MSE read the histograms.
The calibrator values of :mod:`quantscope.config.calibration` call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConfigError
from quantscope.numerics.tensor_observer import TensorObserver

__all__ = [
    "Transfer",
    "auto_choice",
    "auto_range",
    "entropy_range",
    "minmax_range",
    "mse_range",
    "percentile_range",
    "quantization_error",
    "saturation",
    "transfer_error",
]


def _bounds(obs: TensorObserver) -> tuple[float, float]:
    """Observed range widened to contain 0."""
    return min(obs.min, 0.0), max(obs.max, 0.0)


def _clamp(obs: TensorObserver, lo: float, hi: float) -> tuple[float, float]:
    lo_b, hi_b = _bounds(obs)
    # "+ 0.0" turns -0.0 into 0.0.
    return float(min(max(lo, lo_b), 0.0)) + 0.0, float(max(min(hi, hi_b), 0.0)) + 0.0


def _side_data(obs: TensorObserver, positive: bool) -> tuple[np.ndarray, float, float]:
    """(counts, bin width, largest magnitude seen) for one side."""
    if positive:
        return obs.pos_hist, obs.pos_range / obs.bins, max(obs.max, 0.0)
    return obs.neg_hist, obs.neg_range / obs.bins, max(-obs.min, 0.0)


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
    total = _affine_error(pos, neg, pos.candidates[:, None], neg.candidates[None, :], num_levels)
    i, j = np.unravel_index(int(np.argmin(total)), total.shape)
    return _clamp(obs, -float(neg.candidates[j]), float(pos.candidates[i]))


def _affine_error(pos: _MseSide, neg: _MseSide, hi: np.ndarray, lo_mag: np.ndarray, num_levels: int) -> np.ndarray:
    """Expected squared error of the ranges ``(-lo_mag, hi)`` (broadcast together)."""
    steps = num_levels - 1
    step = (hi + lo_mag) / steps
    # The zero point is rounded to an integer, which moves both ends of the grid; judge
    # each candidate by the ends it will really have.
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.clip(np.rint(np.where(step > 0, lo_mag / step, 0.0)), 0, steps)
    return pos.error((steps - below) * step, step / 2.0) + neg.error(below * step, step / 2.0)


# ------------------------------------------------------------- judging a range by its cost


def quantization_error(obs: TensorObserver, lo: float, hi: float, num_levels: int = 256) -> float:
    """Expected squared error per element of quantizing the observed tensor to ``(lo, hi)``.

    The error model of :func:`mse_range` (clipping at the ends the integer zero point gives,
    rounding inside, zeros exact), read from the histograms.
    """
    _check_observer(obs)
    if obs.count == 0:
        return 0.0
    pos = _MseSide(*_side_data(obs, True), np.ones(1))
    neg = _MseSide(*_side_data(obs, False), np.ones(1))
    total = _affine_error(pos, neg, np.array([max(hi, 0.0)]), np.array([max(-lo, 0.0)]), num_levels)
    return float(total[0]) / obs.count


def _count_above(counts: np.ndarray, width: float, limit: float) -> float:
    """Elements of one side whose magnitude exceeds ``limit`` (uniform within a bin)."""
    if width <= 0.0 or counts.size == 0:
        return 0.0
    pos = limit / width
    j = int(pos)
    if j >= counts.size:
        return 0.0
    return float(counts[j + 1:].sum()) + float(counts[j]) * (1.0 - (pos - j))


def saturation(obs: TensorObserver, lo: float, hi: float) -> float:
    """Share (0 to 1) of the observed values that the range ``(lo, hi)`` clips.

    Exact 0 when the range covers the observed extremes; otherwise read from the histograms
    (an observer without histograms reports 0 for a range inside its extremes: unknown).
    """
    _check_observer(obs, needs_histogram=False)
    if obs.count == 0 or (lo <= obs.min and hi >= obs.max) or not obs.histogram:
        return 0.0
    clipped = 0.0
    if hi < obs.max:
        clipped += _count_above(*_side_data(obs, True)[:2], max(hi, 0.0))
    if lo > obs.min:
        clipped += _count_above(*_side_data(obs, False)[:2], max(-lo, 0.0))
    return min(clipped / obs.count, 1.0)


@dataclass(frozen=True)
class Transfer:
    """What a tensor's float consumers make of it: ``values[k]`` is output ``k`` at ``grid`` (ascending)."""

    grid: np.ndarray
    values: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(x, self.grid, row) for row in self.values])


_SUB_BIN = np.array([0.125, 0.375, 0.625, 0.875])


def _samples(obs: TensorObserver) -> tuple[np.ndarray, np.ndarray]:
    """Points standing for the observed values (four per histogram bin, both sides) and their weights."""
    xs, ws = [], []
    for positive in (True, False):
        counts, width, top = _side_data(obs, positive)
        nz = np.flatnonzero(counts)
        if nz.size == 0:
            continue
        mag = np.minimum((nz[:, None] + _SUB_BIN[None, :]) * width, top)
        xs.append((mag if positive else -mag).ravel())
        ws.append(np.repeat(counts[nz].astype(np.float64) / _SUB_BIN.size, _SUB_BIN.size))
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ws)


def _fake_quant(x: np.ndarray, lo: float, hi: float, num_levels: int = 256) -> np.ndarray:
    steps = num_levels - 1
    scale = (hi - lo) / steps if hi > lo else 1.0
    zero = float(np.clip(np.rint(-lo / scale), 0, steps))
    return (np.clip(np.rint(x / scale) + zero, 0, steps) - zero) * scale


def transfer_error(obs: TensorObserver, lo: float, hi: float, transfer: Transfer) -> tuple[float, float]:
    """``(error, saturated share)`` of the range ``(lo, hi)`` judged at the consumers' outputs.

    The error is the expected squared difference of the transfer's outputs between the quantized
    and the float values, per element; the saturated share counts only clipped values whose
    outputs the clipping changes (clipping inside a region the consumers flatten costs nothing).
    """
    _check_observer(obs)
    x, w = _samples(obs)
    if obs.count == 0 or x.size == 0:
        return 0.0, 0.0
    ref = transfer(x)
    got = transfer(_fake_quant(x, min(lo, 0.0), max(hi, 0.0)))
    err = float(np.sum(w * np.sum((got - ref) ** 2, axis=0))) / obs.count
    clipped_x = np.clip(x, lo, hi)
    tol = 1e-4 * max(float(np.ptp(transfer.values)), 1e-30)
    changed = (clipped_x != x) & (np.max(np.abs(transfer(clipped_x) - ref), axis=0) > tol)
    return err, float(np.sum(w[changed])) / obs.count


def auto_candidates(obs: TensorObserver) -> dict[str, tuple[float, float]]:
    """The range of every candidate rule for one tensor (percentile at 99.99 and 99.9)."""
    return {
        "minmax": minmax_range(obs),
        "percentile": percentile_range(obs, 99.99),
        "percentile(99.9)": percentile_range(obs, 99.9),
        "entropy": entropy_range(obs),
        "mse": mse_range(obs),
    }


def auto_choice(
    obs: TensorObserver, max_saturation: float = 0.0001, transfer: Transfer | None = None,
) -> tuple[str, tuple[float, float]]:
    """The candidate with the least expected quantization error that clips at most ``max_saturation``.

    Min-max is always a candidate (it clips nothing), so the chosen range never has a larger
    expected squared error than min-max's; a candidate that would saturate more than
    ``max_saturation`` of the values (0.01 % by default) is never chosen, however small its error.
    With a ``transfer`` (what the tensor's float consumers make of it) both the error and the
    saturated share are judged at the consumers' outputs (:func:`transfer_error`), and the rule
    says so (``"mse (at consumers)"``). Returns ``(rule, (lo, hi))``.
    """
    _check_observer(obs)
    check = float(max_saturation)
    if not 0.0 <= check <= 1.0:
        raise ConfigError(f"max_saturation must be in [0, 1], got {max_saturation!r}")
    best = "minmax"
    ranges = auto_candidates(obs)
    if transfer is not None:
        judged = {name: transfer_error(obs, *r, transfer) for name, r in ranges.items()}
    else:
        judged = {name: (quantization_error(obs, *r), saturation(obs, *r)) for name, r in ranges.items()}
    for name in ranges:
        error, share = judged[name]
        if share <= check and error < judged[best][0]:
            best = name
    return (best if transfer is None else f"{best} (at consumers)"), ranges[best]


def auto_range(obs: TensorObserver, max_saturation: float = 0.0001) -> tuple[float, float]:
    """The range :func:`auto_choice` picks: never worse than min-max, never clipping much."""
    return auto_choice(obs, max_saturation)[1]
