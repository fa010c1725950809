"""Which model outputs an analysis measures: the ones the user names, or the most informative one.

A classifier converted from scikit-learn returns ``label`` (int64) first and the probabilities
second; a detector returns boxes, scores and classes. Measured on the first output, the former
has no fidelity metric at all. The default is therefore the floating-point output with the most
elements per sample (probabilities over labels rather than the label), the first output when
none is floating point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from quantscope.errors import ConfigError
from quantscope.io import Model
from quantscope.specs import TensorSpec


def choose_outputs(model: Model, names: str | Sequence[str] | None = None) -> list[str]:
    """The output names to measure, primary first: ``names`` checked, or :func:`default_output`."""
    available = [o.name for o in model.outputs]
    if names is None or (not isinstance(names, str) and not names):
        return [default_output(model)]
    wanted = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ConfigError(f"the model has no output {', '.join(map(repr, unknown))}; its outputs are {available}")
    return list(dict.fromkeys(wanted))


def default_output(model: Model) -> str:
    """The floating-point output with the most elements per sample (the first output when none is float)."""
    outputs = model.outputs
    if not outputs:
        raise ConfigError("the model has no outputs to measure")
    floats = [o for o in outputs if np.dtype(o.dtype).kind == "f"]
    if not floats:
        return outputs[0].name
    return max(floats, key=lambda o: (_elements_per_sample(o), -outputs.index(o))).name


def output_indices(model: Model, names: Sequence[str]) -> list[int]:
    available = [o.name for o in model.outputs]
    return [available.index(n) for n in names]


def _elements_per_sample(spec: TensorSpec) -> float:
    """Known dims after the first multiplied (a symbolic dim counts as 2: more than one, size unknown)."""
    if spec.shape is None:
        return 1.0
    dims = spec.shape[1:]
    return float(math.prod(d if isinstance(d, int) and d > 0 else 2 for d in dims)) if dims else 1.0
