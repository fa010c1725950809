"""Tabular / generic shifts: the last axis holds the features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np

from quantscope.analysis.shifts.common import (
    ShiftSpec,
    check_severity,
    finish,
    linear,
    named_like,
    pct,
    resolve_value_range,
)
from quantscope.errors import DataError


def _tabular(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def shift(
        x: np.ndarray,
        severity: float,
        rng: np.random.Generator,
        /,
        *,
        value_range: tuple[float, float] | None = None,
        fill: float = 0.0,
        **_: Any,
    ) -> np.ndarray:
        s = check_severity(severity)
        x = np.asarray(x)
        if x.ndim < 1 or x.dtype.kind not in "fiu":
            raise DataError(f"tabular shifts need a numeric array, got {x.dtype} {x.shape}")
        if s == 0.0:
            return x.copy()
        lo, hi = (None, None) if value_range is None else resolve_value_range(x, value_range)
        y = fn(x.astype(np.float64), s, rng, fill=fill)
        return finish(y, x, lo, hi)

    return named_like(shift, fn)


def _feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes) if axes else x.mean()
    std = x.std(axis=axes) if axes else x.std()
    return mean, np.where(std > 0, std, 1.0)


def _feature_noise(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """Measurement noise: gaussian noise of up to one standard deviation of each feature."""
    _, std = _feature_stats(x)
    return x + rng.standard_normal(x.shape) * std * _feature_noise_fraction(s)


def _feature_scaling(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """A change of units: every feature multiplied by the same factor (up to ×3)."""
    return x * _scale_factor(s)


def _missing_values(x: np.ndarray, s: float, rng: np.random.Generator, *, fill: float = 0.0, **_: Any) -> np.ndarray:
    """Missing values: a fraction (half at severity 1) of the entries replaced by the fill value."""
    return np.where(rng.random(x.shape) < _missing_fraction(s), float(fill), x)


def _mean_shift(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """Covariate shift of location: every feature moved by up to 1.5 of its standard deviations."""
    _, std = _feature_stats(x)
    return x + _mean_shift_sigmas(s) * std


def _target_quantiles(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted standardized samples of a distribution, by kind."""
    if kind == "uniform":
        v = rng.uniform(-1.0, 1.0, n)
    elif kind == "gaussian":
        v = rng.standard_normal(n)
    else:  # skewed: log-normal
        v = rng.lognormal(0.0, 0.8, n)
    v = np.sort(v)
    std = v.std()
    return (v - v.mean()) / (std if std > 0 else 1.0)


def _covariate(kind: str) -> Callable[..., np.ndarray]:
    def fn(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
        mean, std = _feature_stats(x)
        flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
        m = flat.shape[0]
        target = np.empty_like(flat)
        for f in range(flat.shape[1]):
            ranks = np.argsort(np.argsort(flat[:, f], kind="stable"), kind="stable")
            target[:, f] = _target_quantiles(kind, m, rng)[ranks]
        target = target.reshape(x.shape) * std + mean
        return (1.0 - s) * x + s * target  # rank-preserving blend towards the target shape

    fn.__name__ = f"covariate_{kind}"
    fn.__doc__ = (
        f"Covariate shift: each feature's distribution moved towards a {kind} one with the same "
        "mean and standard deviation (ranks kept)."
    )
    return fn


_feature_noise_fraction = linear(0.0, 1.0)
_scale_factor = linear(1.0, 2.0)
_missing_fraction = linear(0.0, 0.5)
_mean_shift_sigmas = linear(0.0, 1.5)
feature_noise = _tabular(_feature_noise)
feature_scaling = _tabular(_feature_scaling)
missing_values = _tabular(_missing_values)
mean_shift = _tabular(_mean_shift)
covariate_uniform = _tabular(_covariate("uniform"))
covariate_gaussian = _tabular(_covariate("gaussian"))
covariate_skewed = _tabular(_covariate("skewed"))


SPECS: Final[tuple[ShiftSpec, ...]] = (
    ShiftSpec(
        "feature_noise", "tabular", feature_noise,
        lambda s: f"noise of {_feature_noise_fraction(s):.2g} standard deviations is added to every feature",
    ),
    ShiftSpec("feature_scaling", "tabular", feature_scaling, lambda s: f"every feature is scaled by ×{_scale_factor(s):.2g}"),
    ShiftSpec(
        "missing_values", "tabular", missing_values,
        lambda s: f"{pct(_missing_fraction(s))} of the values are missing (replaced by the fill value)",
    ),
    ShiftSpec(
        "mean_shift", "tabular", mean_shift,
        lambda s: f"every feature is shifted by {_mean_shift_sigmas(s):.2g} standard deviations",
    ),
    *(
        ShiftSpec(
            f"covariate_{kind}", "tabular", fn,
            lambda s, kind=kind: f"the features' distribution is moved {pct(s)} of the way to a {kind} one",
        )
        for kind, fn in (
            ("uniform", covariate_uniform), ("gaussian", covariate_gaussian), ("skewed", covariate_skewed)
        )
    ),
)
