"""Streaming tensor statistics and the range rules built on them (one import path for both).

:class:`TensorObserver` lives in :mod:`quantscope.numerics.tensor_observer`, the range rules
in :mod:`quantscope.numerics.ranges`; the calibrator registry that names them is
:mod:`quantscope.config.calibration`. :func:`compute_range` runs a calibrator by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from quantscope.numerics.ranges import entropy_range, minmax_range, mse_range, percentile_range
from quantscope.numerics.tensor_observer import TensorObserver

if TYPE_CHECKING:
    from quantscope.config.calibration import Calibrator

__all__ = [
    "CALIBRATORS",
    "TensorObserver",
    "compute_range",
    "entropy_range",
    "minmax_range",
    "mse_range",
    "percentile_range",
]


def compute_range(method: str | Calibrator, obs: TensorObserver, **params: Any) -> tuple[float, float]:
    """Run the calibrator ``method`` (a registered name, or a ready calibrator) on ``obs``.

    Unknown names or parameters raise ConfigError, as :func:`quantscope.config.calibration.calibrator` does.
    """
    # imported here: the registry imports this module lazily too, neither needs the other to load
    from quantscope.config.calibration import calibrator

    return calibrator(method, **params).range(obs)


def _names() -> tuple[str, ...]:
    from quantscope.config.calibration import calibrator_names

    return calibrator_names()


class _CalibratorFunctions(Mapping[str, Callable[..., tuple[float, float]]]):
    """Registered calibrator name → ``f(observer, **params) -> (lo, hi)``, read from the registry."""

    def __getitem__(self, name: str) -> Callable[..., tuple[float, float]]:
        if name not in _names():
            raise KeyError(name)
        return partial(compute_range, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_names())

    def __len__(self) -> int:
        return len(_names())


CALIBRATORS: Mapping[str, Callable[..., tuple[float, float]]] = _CalibratorFunctions()
"""Kept for compatibility: a read-only view of :func:`quantscope.config.calibration.calibrator_names`."""
