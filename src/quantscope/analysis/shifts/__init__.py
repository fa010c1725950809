"""Data shifts: pure NumPy transforms of evaluation inputs, each with a severity scale in [0, 1].

Every shift is a plain function ``shift(x, severity, rng, **info) -> np.ndarray``:

* ``x`` is a batch (first axis = samples) and is never modified; the result is a new array of the
  same shape and dtype. ``severity`` 0 returns an exact copy; 1 is the strongest shift.
* ``rng`` (a seeded ``np.random.Generator``) is the only source of randomness.
* ``info`` keywords describe the data; a shift takes the ones it needs:

  - image: ``layout`` ("NCHW", "NHWC" or "NHW"; detected when None) and ``value_range``
    ((low, high); detected when None: [0, 1], [0, 255] or the data's own min and max).
    Every image shift keeps values inside the value range.
  - text (token ids, shape (N, L)): ``mask`` (the attention mask, or None), ``pad_id``,
    ``vocab_size`` and ``keep_ends`` (leave the first and last real token, e.g. [CLS]/[SEP],
    alone). A text shift that removes a token writes ``pad_id`` there; the caller masks those
    positions out (see :func:`derive_mask`).
  - tabular / generic: ``value_range`` (clip to it when given) and ``fill`` (missing values).

Shifts live in a registry by modality (:data:`SHIFTS`); :func:`describe` turns a shift and a
severity into the phrase the report uses ("brightness is reduced to 33 %"). A user-defined
shift is any function with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np

from quantscope.analysis.shifts.common import (
    MODALITIES,
    Modality,
    Shift,
    ShiftSpec,
    check_severity,
    detect_layout,
    detect_value_range,
)
from quantscope.analysis.shifts.image import SPECS as _IMAGE
from quantscope.analysis.shifts.image import (
    blur,
    brighter,
    contrast,
    darker,
    downsample,
    gaussian_noise,
    jpeg,
    occlusion,
    rotate,
)
from quantscope.analysis.shifts.tabular import SPECS as _TABULAR
from quantscope.analysis.shifts.tabular import (
    covariate_gaussian,
    covariate_skewed,
    covariate_uniform,
    feature_noise,
    feature_scaling,
    mean_shift,
    missing_values,
)
from quantscope.analysis.shifts.text import SPECS as _TEXT
from quantscope.analysis.shifts.text import (
    derive_mask,
    token_dropout,
    token_substitution,
    truncation,
)
from quantscope.errors import ConfigError

SHIFTS: Final[Mapping[str, Mapping[str, ShiftSpec]]] = {
    modality: {spec.name: spec for spec in (*_IMAGE, *_TEXT, *_TABULAR) if spec.modality == modality}
    for modality in MODALITIES
}
"""Built-in shifts by modality, then by name."""


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is not known; choose one of {list(MODALITIES)}")
    return modality


def shifts_for(modality: str) -> dict[str, ShiftSpec]:
    """The built-in shifts of a modality (a new dict: the caller may change it)."""
    return dict(SHIFTS[check_modality(modality)])


def user_shift(name: str, fn: Callable[..., np.ndarray], modality: str) -> ShiftSpec:
    """Wrap a user-defined shift function; it is described as "<name> at severity s"."""
    if not callable(fn):
        raise ConfigError(f"shift {name!r} must be a function shift(x, severity, rng, **info)")
    return ShiftSpec(name, check_modality(modality), fn, lambda s: f"{name} is applied at severity {s:g}")  # type: ignore[arg-type]


def describe(spec: ShiftSpec, severity: float) -> str:
    return spec.describe(check_severity(severity))


__all__ = [
    "MODALITIES",
    "SHIFTS",
    "Modality",
    "Shift",
    "ShiftSpec",
    "blur",
    "brighter",
    "check_modality",
    "check_severity",
    "contrast",
    "covariate_gaussian",
    "covariate_skewed",
    "covariate_uniform",
    "darker",
    "derive_mask",
    "describe",
    "detect_layout",
    "detect_value_range",
    "downsample",
    "feature_noise",
    "feature_scaling",
    "gaussian_noise",
    "jpeg",
    "mean_shift",
    "missing_values",
    "occlusion",
    "rotate",
    "shifts_for",
    "token_dropout",
    "token_substitution",
    "truncation",
    "user_shift",
]
