"""Job functions that fan-outs send to workers (module level, so they pickle by reference)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantscope.config import MethodConfig
from quantscope.execution.inputs import JobInput
from quantscope.quantize import QuantizedModel, quantize

__all__ = ["quantize_job"]


def quantize_job(
    model: JobInput,
    config: MethodConfig,
    calib: JobInput | None = None,
    *,
    calib_options: Mapping[str, Any] | None = None,
    save_to: str | None = None,
) -> QuantizedModel | Path:
    """``quantize`` on the worker: the model and calibration data are opened there.

    Returns the :class:`QuantizedModel` (it pickles back to the driver), or with ``save_to``
    (a path the driver can read too) the saved file's path. Bit-identical to a local
    ``quantize`` of the same model, config and data.
    """
    loaded = model.load_model()
    data = None
    if calib is not None and config.needs_calibration:
        data = calib.load_dataset(**dict(calib_options or {}))
    quantized = quantize(loaded, config, data)
    if model.origin is not None:  # sent by value: record the driver's file, not a temporary one
        quantized = dataclasses.replace(quantized, source_path=Path(model.origin))
    return quantized if save_to is None else quantized.save(save_to)
