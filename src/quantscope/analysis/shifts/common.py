"""What every shift shares: the signature, the registry record, severities, value ranges, layouts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import numpy as np

from quantscope.errors import ConfigError, DataError

Modality = Literal["image", "text", "tabular"]
MODALITIES: Final = ("image", "text", "tabular")


class Shift(Protocol):
    def __call__(
        self, x: np.ndarray, severity: float, rng: np.random.Generator, /, **info: Any
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class ShiftSpec:
    """A registered shift: the function and how to describe it at a severity."""

    name: str
    modality: Modality
    fn: Callable[..., np.ndarray]
    describe: Callable[[float], str]



def check_severity(severity: float) -> float:
    if isinstance(severity, bool) or not isinstance(severity, int | float | np.floating):
        raise ConfigError(f"severity must be a number in [0, 1], got {severity!r}")
    s = float(severity)
    if not 0.0 <= s <= 1.0:
        raise ConfigError(f"severity must be in [0, 1] (0 = unshifted), got {severity!r}")
    return s


def finish(y: np.ndarray, like: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """``y`` clipped to [lo, hi] and cast back to ``like``'s dtype (rounded for integers)."""
    if lo is not None and hi is not None:
        y = np.clip(y, lo, hi)
    if like.dtype.kind in "iu":
        info = np.iinfo(like.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(like.dtype, copy=False)


def detect_value_range(x: np.ndarray) -> tuple[float, float]:
    """[0, 1] or [0, 255] when the data fits them, else the data's own min and max."""
    if x.size == 0:
        raise DataError("cannot detect the value range of an empty array")
    if x.dtype.kind in "iu":
        if x.dtype == np.uint8 or (x.min() >= 0 and x.max() <= 255):
            return 0.0, 255.0
        return float(x.min()), float(x.max())
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError("the data holds NaN or infinity; image shifts need finite values")
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return 0.0, 255.0
    return lo, hi


def resolve_value_range(x: np.ndarray, value_range: tuple[float, float] | None) -> tuple[float, float]:
    if value_range is None:
        return detect_value_range(x)
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"value_range must be (low, high), got {value_range!r}") from exc
    if not lo < hi:
        raise ConfigError(f"value_range must have low < high, got {value_range!r}")
    return lo, hi


def detect_layout(x: np.ndarray) -> str:
    """"NCHW", "NHWC" or "NHW" (grayscale without a channel axis) for an image batch."""
    if x.ndim == 3:
        return "NHW"
    if x.ndim != 4:
        raise DataError(
            f"image shifts need a batch of images (N, C, H, W), (N, H, W, C) or (N, H, W); got "
            f"shape {x.shape}; use modality='tabular' for other tensors"
        )
    first, last = x.shape[1] in (1, 2, 3, 4), x.shape[-1] in (1, 2, 3, 4)
    if last and not first:
        return "NHWC"
    return "NCHW"  # ONNX's convention, also when both look like channels



def named_like(shift: Callable[..., np.ndarray], fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``shift`` named and documented after the private function it wraps (``_darker`` -> ``darker``)."""
    shift.__name__ = fn.__name__.lstrip("_")
    shift.__doc__ = fn.__doc__
    return shift


def linear(at_zero: float, slope: float) -> Callable[[float], float]:
    """A severity scale: the parameter of a shift at severity ``s`` is ``at_zero + slope * s``."""

    def scale(s: float) -> float:
        return at_zero + slope * s

    return scale


def pct(v: float) -> str:
    return f"{100 * v:.0f} %"

