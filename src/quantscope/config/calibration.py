"""Calibration as a value: which range rule, on how many samples, in what batches.

A calibrator is a small frozen object (``MinMax()``, ``Percentile(99.99)``, ``Entropy()``,
``MSE()``) that turns one tensor's running statistics into a ``(lo, hi)`` range and says
whether it needs histograms. :class:`Calibration` bundles it with the sampling settings;
a method asks for statistics with a :class:`StatisticsRequest` (the tensors plus the
calibration), so nothing downstream reads calibration settings out of a method config.

Every calibrator registers itself by name; the CLI's choices and the config checks are built
from :func:`calibrator_names`, so adding a calibrator is one class here (or in its own module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from quantscope.config._checks import check_int as _check_int
from quantscope.config._checks import check_number
from quantscope.errors import ConfigError

if TYPE_CHECKING:
    from quantscope.numerics.observers import TensorObserver

_CALIBRATORS: dict[str, type[Calibrator]] = {}


@dataclass(frozen=True)
class Calibrator:
    """Base of every range rule. Subclasses set ``name`` and ``observer_range`` (or override :meth:`range`)."""

    name: ClassVar[str] = ""
    needs_histograms: ClassVar[bool] = True
    help: ClassVar[str] = ""
    observer_range: ClassVar[str] = ""  # the function of quantscope.numerics.observers that computes it

    def __init_subclass__(
        cls, *, name: str = "", observer_range: str = "", help: str = "", histograms: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """``class Entropy(Calibrator, name="entropy", observer_range="entropy_range", help=...)`` registers it."""
        super().__init_subclass__(**kwargs)
        given = {"name": name, "observer_range": observer_range, "help": help, "needs_histograms": histograms}
        for attr, value in given.items():
            if value not in ("", None):
                setattr(cls, attr, value)
        if name:
            _CALIBRATORS[name] = cls

    def range(self, observer: TensorObserver) -> tuple[float, float]:
        """The ``(lo, hi)`` range of one tensor's statistics (parameters passed in field order)."""
        from quantscope.numerics import observers

        return getattr(observers, self.observer_range)(observer, *self.params().values())

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    def __str__(self) -> str:
        params = self.params()
        return self.name + (f"({', '.join(map(str, params.values()))})" if params else "")


@dataclass(frozen=True)
class MinMax(Calibrator, name="minmax", observer_range="minmax_range", histograms=False,
             help="exact observed range; never clips"):
    """The exact observed range (widened to contain 0): nothing is ever clipped."""


@dataclass(frozen=True)
class Percentile(Calibrator, name="percentile", observer_range="percentile_range",
                 help="clip the tails beyond a percentile (default 99.99)"):
    """Clip ``(100 - percentile) / 2`` percent of the values off each tail."""

    percentile: float = 99.99

    def __post_init__(self) -> None:
        check_number("percentile", self.percentile, 50.0, 100.0)
        object.__setattr__(self, "percentile", float(self.percentile))


@dataclass(frozen=True)
class Entropy(Calibrator, name="entropy", observer_range="entropy_range",
              help="least KL divergence between float and quantized histograms"):
    """The range whose quantized histogram has the least KL divergence from the observed one."""


@dataclass(frozen=True)
class MSE(Calibrator, name="mse", observer_range="mse_range", help="least expected squared quantization error"):
    """The range with the least expected squared quantization error."""


@dataclass(frozen=True)
class Auto(Calibrator, name="auto",
           help="per tensor, the least-error range among min-max, percentile, entropy and MSE that "
                "saturates at most --max-saturation of the values (default 0.0001); never worse than min-max"):
    """Per tensor, the candidate range (min-max, percentile, entropy, MSE) with the least expected error.

    A candidate that would saturate more than ``max_saturation`` of the tensor's values is never
    chosen, and min-max (which clips nothing) is always a candidate, so the chosen range's
    expected squared error is never larger than min-max's (judged at the outputs of a tensor's float
    elementwise consumers where it has such a chain, when the statistics carry it). Model inputs are protected by the
    methods (they get min-max) through :mod:`quantscope.algorithms.range_selection`.
    """

    max_saturation: float = 0.0001

    def __post_init__(self) -> None:
        check_number("max_saturation", self.max_saturation, 0.0, 1.0)
        object.__setattr__(self, "max_saturation", float(self.max_saturation))

    def range(self, observer: TensorObserver) -> tuple[float, float]:
        from quantscope.numerics.ranges import auto_range

        return auto_range(observer, self.max_saturation)


def calibrator_names() -> tuple[str, ...]:
    """Every registered calibrator, in registration order (the CLI's choices)."""
    return tuple(_CALIBRATORS)


def calibrator(name: str | Calibrator, **params: Any) -> Calibrator:
    """The calibrator called ``name`` with ``params`` (a :class:`Calibrator` passes through)."""
    if isinstance(name, Calibrator):
        if params:
            raise ConfigError(f"parameters {sorted(params)} given with a ready calibrator {name}")
        return name
    cls = _CALIBRATORS.get(str(name))
    if cls is None:
        raise ConfigError(
            f"unknown calibration method {name!r}; choose one of: {', '.join(calibrator_names())}"
        )
    accepted = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - accepted
    if unknown:
        raise ConfigError(
            f"calibration method {name!r} takes "
            + (", ".join(sorted(accepted)) if accepted else "no parameters")
            + f"; got {sorted(unknown)}"
        )
    return cls(**params)


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    d = dict(d)
    return calibrator(d.pop("name", None), **d)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """How to calibrate: the range rule, a seeded subset of ``num_samples``, batches, histogram bins.

    ``guard`` (on by default) protects a model from an explicit calibrator's worst ranges: a model
    input, or a tensor whose range would saturate a large share of its values or make its expected
    quantization error several times min-max's, keeps its min-max range instead, and the plan says
    which (:mod:`quantscope.algorithms.range_selection`). Off, the calibrator's ranges are used as
    they are and only a warning names them.
    """

    method: Calibrator = dataclasses.field(default_factory=MinMax)
    num_samples: int | None = 256
    batch_size: int = 16
    seed: int = 0
    bins: int = 2048
    guard: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.method, str):
            object.__setattr__(self, "method", calibrator(self.method))
        if not isinstance(self.method, Calibrator):
            raise ConfigError(f"method must be a calibrator such as MinMax(), not {self.method!r}")
        for name, lo, hi in (("batch_size", 1, None), ("seed", 0, None), ("bins", 128, 1 << 16)):
            _check_int(name, getattr(self, name), lo, hi)
        if self.num_samples is not None:
            _check_int("num_samples", self.num_samples, 1, None)
        if not isinstance(self.guard, bool):
            raise ConfigError(f"guard must be True or False, got {self.guard!r}")

    @property
    def needs_histograms(self) -> bool:
        return self.method.needs_histograms

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.to_dict(),
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "bins": self.bins,
            "guard": self.guard,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        d = dict(d)
        method = d.pop("method", {"name": "minmax"})
        return cls(method=calibrator_from_dict(method) if isinstance(method, Mapping) else method, **d)


@dataclass(frozen=True)
class StatisticsRequest:
    """What a method needs observed before it can plan: these tensors, calibrated this way."""

    tensors: tuple[str, ...]
    calibration: Calibration
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Statistics beyond the running min/max/histogram, by tensor: kinds of
    :data:`STATISTIC_KINDS` (observed by :func:`quantscope.algorithms.activation_stats.observe`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", tuple(dict.fromkeys(self.tensors)))
        extra = {str(name): tuple(kinds) for name, kinds in dict(self.extra).items()}
        for name, kinds in extra.items():
            unknown = set(kinds) - set(STATISTIC_KINDS)
            if unknown:
                raise ConfigError(f"unknown statistic kind(s) {sorted(unknown)} for {name!r}; known: {STATISTIC_KINDS}")
        object.__setattr__(self, "extra", extra)


STATISTIC_KINDS = ("mean", "absmax", "min", "max", "sumsq", "gram", "channel_mean")
"""Per-tensor statistics: ``mean``, ``absmax``, ``min``, ``max`` and ``sumsq`` (the sum of squares)
per feature (the last axis, as a MatMul reads it), ``gram`` the sum of ``xᵀx`` over rows (GPTQ's Hessian
up to a factor; features² numbers), ``channel_mean`` per channel of axis 1 (as a Conv reads it)."""
