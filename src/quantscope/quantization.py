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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantscope.algorithms.activation_stats import extra_of, observe, with_extra
from quantscope.calibrate import Progress, TensorStats, collect
from quantscope.config import MethodConfig
from quantscope.data import Dataset, as_dataset
from quantscope.errors import ConfigError, ModelError
from quantscope.methods import method_for
from quantscope.model_io import (
    IN_PROCESS_CHECK_BYTES,
    Model,
    check_output_path,
    fingerprint_file,
    float_bytes,
    out_data_name,
    write_staged,
)
from quantscope.plan import QuantPlan
from quantscope.runtime import make_session
from quantscope.safe_load import loading_or_avoided
from quantscope.transaction import Transaction

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
    calibration_s: float | None = None  # the calibration pass's wall time (not in the sidecar: it differs run to run)

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

    def save(self, path: str | os.PathLike[str], *, sidecar: bool = True,
             inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
        """Write the model and its sidecar JSON together, after ONNX Runtime has loaded the model
        (here; a large model was loaded by :func:`quantize`'s check in a child process instead).

        The sidecar goes to ``<name>.quantscope.json`` beside the model. Both are written to a
        hidden folder beside ``path`` and renamed into place as one
        :class:`~quantscope.transaction.Transaction`: on any error or signal, the old model and
        sidecar stay, or the new pair is there, never one without the other. ``sidecar=False``
        removes a sidecar left at that path by an earlier model. ``inputs`` are further paths
        the output must not overwrite (the source model and its data always are).
        """
        side = sidecar_path(path).name
        sources = (self.source_path, *self.source_data_files, *inputs)
        out = check_output_path(path, *sources, siblings=[side, out_data_name(path)])
        with Transaction(out.parent) as transaction:
            staged = write_staged(self.model, transaction, out.name, value_info=False)
            if float_bytes(self.model.ir) <= IN_PROCESS_CHECK_BYTES:  # larger once folded: quantize's child check
                make_session(staged, optimization="basic")
            if sidecar:
                text = json.dumps(self.sidecar(fingerprint_file(staged)), indent=2)
                transaction.write_bytes(side, text.encode("utf-8"))
            else:
                transaction.remove(side)
            transaction.commit()
        return out


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".quantscope.json")


def _one_feed(bound: Dataset | None) -> dict[str, Any] | None:
    """The first feed of the bound data, for the load check's one run (None: a synthetic one)."""
    if bound is None:
        return None
    first = next(iter(bound.batches(1)), None)
    return None if first is None else dict(first.inputs)


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
    executor: Any = None,
) -> QuantizedModel:
    """Quantize ``model`` with the method ``config`` names; ``data`` calibrates when needed.

    ``executor`` (a ``concurrent.futures.Executor`` or a ``distributed.Client``, see
    :mod:`quantscope.execution`): the calibration data is observed in shards on its workers
    and merged (:func:`quantscope.calibrate_shards.collect_sharded`), with the same ranges as
    one pass; None observes it here in one pass.

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
    calibration_s: float | None = None
    request = method.statistics(prepared, config)
    if request is not None and request.tensors and bound is not None:
        began = time.perf_counter()
        stats = _collect(prepared, bound, request, progress, executor)
        if request.extra and extra_of(stats) is None:  # the sharded pass gathers only ranges: the rest here
            stats = with_extra(stats, observe(prepared, bound, request))
        calibration = {
            "samples": stats.num_samples,
            "method": request.calibration.method.name,
            "tensors": len(stats.observers),
        }
        calibration_s = time.perf_counter() - began
    # else: nothing to observe (data-free, or nothing quantizable found: the plan says why)
    plan = method.plan(prepared, config, stats)
    quantized = method.apply(prepared, config, plan)
    plan = plan.with_payload(None)  # written into the model: the payload's arrays need not stay alive
    # the result must load and run in ONNX Runtime, at its default level, before we call it a success
    quantized, plan = loading_or_avoided(method, prepared, config, stats, plan, quantized, _one_feed(bound))
    return QuantizedModel(
        model=quantized,
        config=config,
        plan=plan.with_payload(None),  # a re-written plan (crash avoided) carries one again
        source_fingerprint=model.fingerprint,
        source_path=model.path,
        source_data_files=model.data_files,
        calibration=calibration,
        calibration_s=calibration_s,
    )


def _collect(prepared: Model, bound: Dataset, request: Any, progress: Progress | None, executor: Any) -> TensorStats:
    if executor is None:
        return collect(prepared, bound, request, progress=progress)
    from quantscope.calibrate_shards import collect_sharded
    from quantscope.execution.inputs import place

    # the prepared graph lives in memory only: it travels by value, once
    return collect_sharded(place(executor, prepared, by_value=True), bound, request, executor=executor)
