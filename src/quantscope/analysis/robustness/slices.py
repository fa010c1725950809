"""Slices of the evaluation data: by class, by metadata value (or quartile), by text length."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from quantscope.analysis.robustness.data import EvalArrays
from quantscope.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 32  # a metadata array with more distinct values is sliced into quartiles


def slices_of(
    arrays: EvalArrays, lengths: np.ndarray | None, which: Sequence[str] | None
) -> list[tuple[str, np.ndarray]]:
    available: dict[str, np.ndarray] = {}
    if arrays.labels is not None:
        available["label"] = arrays.labels
    for key, values in arrays.meta.items():
        if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
            available[key] = values.reshape(len(values))
        else:
            logger.info("metadata %r has shape %s; only 1-D metadata is sliced", key, values.shape)
    if lengths is not None:
        available["length"] = lengths
    if which is None:
        which = list(available)
    unknown = [w for w in which if w not in available]
    if unknown:
        raise ConfigError(f"cannot slice by {unknown}: the data has {sorted(available) or 'nothing to slice by'}")
    out: list[tuple[str, np.ndarray]] = []
    for key in which:
        values = available[key]
        if key == "length":
            cut = float(np.median(values))
            if values.min() < values.max():
                out.append((f"length ≤ {cut:g} tokens", values <= cut))
                out.append((f"length > {cut:g} tokens", values > cut))
            continue
        distinct = np.unique(values)
        if len(distinct) <= MAX_CATEGORIES or values.dtype.kind not in "fiu":
            out.extend((f"{key}={v}", values == v) for v in distinct)
        else:
            edges = np.unique(np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0]))
            for i, (a, b) in enumerate(itertools.pairwise(edges)):
                last = i == len(edges) - 2
                rows = (values >= a) & ((values <= b) if last else (values < b))
                out.append((f"{key} in [{a:.4g}, {b:.4g}{']' if last else ')'}", rows))
    return [(name, rows) for name, rows in out if rows.any()]

