"""What ``analyze`` measures, and how much it may cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from quantscope.errors import ConfigError

StepProgress = Callable[[str, int, int], None]
"""Called as ``progress(what is being done, steps done, steps in total)``."""

Mode = Literal["only", "all-but"]
"""Sensitivity: quantize only one node, or all but one."""

FLOAT_NAME = "float"
"""The name of the float model among the variants of an analysis."""


@dataclass(frozen=True, kw_only=True)
class AnalysisOptions:
    """What to measure, and how much it may cost.

    ``sensitivity`` is the number of nodes measured per sensitivity variant (0 turns it off);
    ``sensitivity_variants`` names them (None: the int8 variant the recommender picks among the
    int8 variants, else the quantized variant that loses the most quality, when its method can be
    re-run).
    """

    latency: bool = True
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int | None, ...] = (1, None)
    warmup: int = 5
    runs: int = 30
    memory: bool = True
    memory_batch: int = 1
    energy: bool = True
    layers: bool = True
    layer_samples: int = 32
    sensitivity: int = 5
    sensitivity_samples: int = 128
    sensitivity_mode: Mode = "only"
    sensitivity_variants: tuple[str, ...] | None = None
    calib_samples: int = 64
    eval_batch_size: int = 32
    seed: int = 0
    strict: bool = True  # False: a variant that fails to run is dropped with a note instead of raising

    def __post_init__(self) -> None:
        for name in ("warmup", "layer_samples", "sensitivity", "sensitivity_samples", "calib_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r} must be an integer >= 0")
        for name in ("runs", "memory_batch", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "threads", tuple(self.threads))
        if not self.batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch_sizes={self.batch_sizes!r} must be integers >= 1")
        if any(t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1) for t in self.threads):
            raise ConfigError(f"threads={self.threads!r} must be integers >= 1 or None (all cores)")
        if self.sensitivity_mode not in ("only", "all-but"):
            raise ConfigError(f"sensitivity_mode={self.sensitivity_mode!r}; choose 'only' or 'all-but'")
        if self.sensitivity_variants is not None:
            object.__setattr__(self, "sensitivity_variants", tuple(self.sensitivity_variants))
