"""The one entry point for quantization: ``quantize(model, config, data)``.

It dispatches on the config's type through the method registry and runs the one pipeline
(:mod:`quantscope.methods.base`): bind the data once, prepare, collect the statistics the
method requests (if any), plan once, apply the plan's payload, check that ONNX Runtime loads
the result. It returns a :class:`QuantizedModel` (nothing is written unless asked).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantscope.algorithms.activation_stats import observe, with_extra
from quantscope.calibrate import Progress, TensorStats, collect
from quantscope.config import MethodConfig
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ConfigError, ModelError
from quantscope.io import Model, atomic_write_text, check_output_path, fingerprint_file, save
from quantscope.methods import method_for
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session

logger = logging.getLogger(__name__)

SIDECAR_SCHEMA = "quantscope.sidecar/1"


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """A quantized model in memory, with the config and plan that made it."""

    model: Model
    config: MethodConfig
    plan: QuantPlan
    source_fingerprint: str
    source_path: Path | None = None
    source_data_files: tuple[Path, ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)

    def sidecar(self, output_fingerprint: str | None = None) -> dict[str, Any]:
        return {
            "schema": SIDECAR_SCHEMA,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": self.config.to_dict(),
            "plan": self.plan.to_dict(),
            "calibration": self.calibration,
            "source": {
                "path": str(self.source_path) if self.source_path else None,
                "fingerprint": self.source_fingerprint,
            },
            "output_fingerprint": output_fingerprint,
            "versions": library_versions(),
        }

    def save(self, path: str | os.PathLike[str], *, sidecar: bool = True) -> Path:
        """Write the model (atomically), check ONNX Runtime loads it, then write the sidecar JSON.

        The sidecar goes to ``<name>.quantscope.json`` beside the model.
        """
        out = check_output_path(path, self.source_path, *self.source_data_files)
        if sidecar:  # refuse a sidecar path we cannot use before writing anything
            check_output_path(sidecar_path(out), self.source_path, *self.source_data_files)
        written = save(self.model, out, value_info=False)
        try:
            make_session(written, optimization="basic")
            if sidecar:
                atomic_write_text(
                    sidecar_path(written), json.dumps(self.sidecar(fingerprint_file(written)), indent=2)
                )
        except BaseException:
            written.unlink(missing_ok=True)  # no model without its sidecar, no model ORT refuses
            raise
        return written


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".quantscope.json")


def library_versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnx_ir
    import onnxruntime

    from quantscope import __version__

    return {
        "quantscope": __version__,
        "onnx": onnx.__version__,
        "onnx_ir": onnx_ir.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def quantize(
    model: Model,
    config: MethodConfig,
    data: Dataset | None = None,
    *,
    progress: Progress | None = None,
) -> QuantizedModel:
    """Quantize ``model`` with the method ``config`` names; ``data`` calibrates when needed.

    The input model is not modified. Raises :class:`ConfigError` when calibration data is
    required but missing, and the method's own errors (see :mod:`quantscope.errors`).
    """
    if not isinstance(model, Model):
        raise ModelError(f"quantize() takes a quantscope Model (from quantscope.load), not {type(model).__name__}")
    if not isinstance(config, MethodConfig):
        raise ConfigError(f"quantize() takes a method config such as StaticInt8(...), not {type(config).__name__}")
    data = None if data is None else as_dataset(data, "calibration data")  # arrays, dicts, lists, torch, tf.data
    method = method_for(config)
    if config.needs_calibration and data is None:
        raise ConfigError(
            f"{config.method} needs calibration data: pass a Dataset (from the CLI: --calib calib.npz)"
        )
    bound = data.bind(model.inputs) if data is not None else None  # fail on mismatches before any work
    prepared = method.prepare(model, config)
    stats: TensorStats | None = None
    calibration: dict[str, Any] = {}
    request = method.statistics(prepared, config)
    if request is not None and request.tensors and bound is not None:
        stats = collect(prepared, bound, request, progress=progress)
        if request.extra:  # statistics the algorithms read (GPTQ's XᵀX, ...): to move into collect()
            stats = with_extra(stats, observe(prepared, bound, request))
        calibration = {
            "samples": stats.num_samples,
            "method": request.calibration.method.name,
            "tensors": len(stats.observers),
        }
    # else: nothing to observe (data-free, or nothing quantizable found: the plan says why)
    plan = method.plan(prepared, config, stats)
    quantized = method.apply(prepared, config, plan)
    # the result must load in ONNX Runtime before we call it a success
    make_session(quantized, optimization="basic")
    return QuantizedModel(
        model=quantized,
        config=config,
        plan=plan.with_payload(None),  # written now: the payload's arrays need not stay alive
        source_fingerprint=model.fingerprint,
        source_path=model.path,
        source_data_files=model.data_files,
        calibration=calibration,
    )
