"""Verdicts on the benchmark's targets: ``met``, ``not met``, ``tie`` or ``n/a``, with the noise taken into account.

Two kinds of target:

* **against a peer** (:func:`against_peer`): quantscope's figure over the peer's must be at most
  ``target`` (e.g. quality loss <= 0.5x the peer's). When the two figures differ by no more than
  the noise of the measurement, a target that asks quantscope to be *better* than the peer
  (``target < 1``) is a ``tie``, never ``met``; one that allows parity (``target >= 1``) is met.
* **against a threshold** (:func:`against_threshold`): a figure with a 95 % interval (e.g. the
  latency ratio quantscope / float) must be at most ``target``. ``met`` when the whole interval
  is at or below it, ``not met`` when the whole interval is above, ``tie`` when the interval
  straddles it (the measurement cannot tell).

``n/a`` whenever a figure is missing (a peer that failed, a run that did not happen).
"""

from __future__ import annotations

import math

MET, NOT_MET, TIE, NA = "met", "not met", "tie", "n/a"
VERDICTS = (MET, NOT_MET, TIE, NA)


def _missing(*values: float | None) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)


def against_peer(ours: float | None, peer: float | None, target: float, noise: float = 0.0) -> str:
    """Whether ``ours <= target * peer`` (lower is better), with ``noise`` the smallest real difference.

    ``noise`` is in the figures' units (e.g. 1.96 standard errors of the difference of two
    accuracies); ``abs(ours - peer) <= noise`` means the two are indistinguishable.
    """
    if _missing(ours, peer):
        return NA
    assert ours is not None and peer is not None
    if abs(ours - peer) <= max(noise, 0.0):
        return TIE if target < 1 else MET
    if peer <= 0:  # the peer is perfect (e.g. lossless) and ours is measurably worse
        return NOT_MET if ours > peer else MET
    return MET if ours <= target * peer else NOT_MET


def against_threshold(value: float | None, target: float, low: float | None = None, high: float | None = None) -> str:
    """Whether a figure (lower is better) is at most ``target``, given its interval ``[low, high]``."""
    if _missing(value):
        return NA
    assert value is not None
    lo = value if low is None or math.isnan(low) else low
    hi = value if high is None or math.isnan(high) else high
    if hi <= target:
        return MET
    if lo > target:
        return NOT_MET
    return TIE


def difference_noise(se_a: float | None, se_b: float | None, z: float = 1.96) -> float:
    """The half-width of a 95 % interval on the difference of two independent means."""
    if _missing(se_a, se_b):
        return 0.0
    assert se_a is not None and se_b is not None
    return z * math.hypot(se_a, se_b)
