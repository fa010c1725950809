"""Job functions that fan-outs send to workers (module level, so they pickle by reference),
and :func:`quantize_many`, the fan-out every "quantize these configs" loop can call."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from quantscope.config import MethodConfig
from quantscope.data import Dataset
from quantscope.execution.fanout import Job, JobEvent, JobResult, fan_out
from quantscope.execution.inputs import JobInput, place
from quantscope.io import Model
from quantscope.quantization import QuantizedModel, quantize

__all__ = ["latency_job", "quantize_job", "quantize_many", "time_variants"]


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
    if model.fingerprint is not None:  # and the driver's fingerprint of it
        quantized = dataclasses.replace(quantized, source_fingerprint=model.fingerprint)
    return quantized if save_to is None else quantized.save(save_to)


def quantize_many(
    executor: Any,
    model: Model | str | os.PathLike[str],
    configs: Mapping[str, MethodConfig],
    calib: Dataset | str | os.PathLike[str] | None = None,
    *,
    save_paths: Mapping[str, str | os.PathLike[str]] | None = None,
    progress: Callable[[JobEvent], None] | None = None,
    retries: int = 1,
) -> dict[str, JobResult]:
    """Quantize ``model`` with every named config on ``executor``; one :class:`JobResult` each.

    The model and the calibration data are placed once (by path when the workers see them);
    configs that need no calibration get none. ``save_paths[name]``: write that variant there
    on the worker and return the path instead of the model. A method that fails on this model
    is a failed result whose ``exception`` is the method's own error.
    """
    model_in = place(executor, model)
    calib_in = None if calib is None else place(executor, calib)
    paths = dict(save_paths or {})
    jobs = [
        Job(name, (model_in, config, calib_in if config.needs_calibration else None),
            {"save_to": str(paths[name])} if name in paths else {})
        for name, config in configs.items()
    ]
    return {r.key: r for r in fan_out(executor, quantize_job, jobs, progress=progress, retries=retries)}


def latency_job(float_model: JobInput, variant: JobInput | None, name: str, feeds: Mapping[int, Any],
                options: Any) -> list[Any]:
    """One variant's latencies on the worker (``analysis.measure`` rules: a quantized variant
    is timed interleaved with the float model, in this one process); ``variant`` None: the float model."""
    from quantscope.analysis.measure import paired_latencies
    from quantscope.analysis.variants import Variant

    reference = float_model.load_model()
    model = reference if variant is None else variant.load_model()
    return paired_latencies(Variant(name, model, None), reference, dict(feeds), options)


def time_variants(
    executor: Any,
    float_model: Model | str | os.PathLike[str],
    variants: Mapping[str, Model | str | os.PathLike[str] | None],
    feeds: Mapping[int, Any],
    options: Any,
    *,
    progress: Callable[[JobEvent], None] | None = None,
    retries: int = 1,
) -> dict[str, JobResult]:
    """:func:`latency_job` for every named variant (None: the float model itself), one job each.

    Each :class:`JobResult` carries the worker's facts: compare latencies only within a worker
    kind (:func:`~quantscope.execution.machine.comparable`).
    """
    float_in = place(executor, float_model)
    jobs = [
        Job(name, (float_in, None if v is None else place(executor, v), name, dict(feeds), options))
        for name, v in variants.items()
    ]
    return {r.key: r for r in fan_out(executor, latency_job, jobs, progress=progress, retries=retries)}
