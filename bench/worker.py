"""One quantization job, run in a fresh process: ``python -m bench.worker SPEC.json RESULT.json``.

The spec names the tool (``quantscope`` or ``ort``), the variant, the float model, the
calibration folder and the output path. The result records the wall time of the
quantization call (loading the model and writing the output included, interpreter start-up
and imports excluded), the process's peak RSS, and the RSS before the call (imports only).
Both tools read the same ``.npz`` shards through a streaming reader of batches.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MAX_BATCH = 20  # calibration batch for both tools: the largest divisor of the set size up to this


def batch_for(samples: int) -> int:
    """Equal batches only: the peer's histogram calibrators (Entropy, Percentile) fail on a
    shorter last batch ("inhomogeneous shape"), so both tools get the same divisor of ``samples``."""
    return next(b for b in range(min(MAX_BATCH, samples), 0, -1) if samples % b == 0)


def _status_mb(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries ru_maxrss across fork + exec, so a worker
    started by a large parent would report the parent's size.
    """
    peak = _status_mb("VmHWM")
    return peak if not math.isnan(peak) else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shard_batches(folder: Path, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch`` samples read shard by shard (never the whole set at once)."""
    pending: list[dict[str, np.ndarray]] = []
    count = 0
    for shard in sorted(Path(folder).glob("shard-*.npz")):
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files}
        pending.append(arrays)
        count += len(next(iter(arrays.values())))
        while count >= batch:
            merged = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            yield {k: np.ascontiguousarray(v[:batch]) for k, v in merged.items()}
            rest = {k: v[batch:] for k, v in merged.items()}
            count -= batch
            pending = [rest] if count else []
    if count:
        yield {k: np.ascontiguousarray(np.concatenate([p[k] for p in pending])) for k in pending[0]}


# --------------------------------------------------------------------------- quantscope


def _quantscope_config(variant: str, n: int) -> Any:
    from quantscope import config as c

    if variant.startswith("static-"):
        cal = variant.removeprefix("static-")
        return c.StaticInt8(calibration=cal, num_samples=n, batch_size=batch_for(n))
    classes = {"dynamic": "DynamicInt8", "int4": "WeightInt4", "float16": "Float16"}
    cls = getattr(c, classes[variant], None)
    if cls is None:
        raise LookupError(f"quantscope has no config class {classes[variant]}")
    return cls(block_size=32) if variant == "int4" else cls()


def run_quantscope(spec: dict[str, Any]) -> dict[str, Any]:
    import quantscope as qs
    from quantscope.errors import ConfigError

    config = _quantscope_config(spec["variant"], spec.get("samples") or 1)
    t0 = time.perf_counter()
    model = qs.load(spec["model"])
    data = qs.Dataset.from_folder(spec["calib"]) if config.needs_calibration else None
    try:
        q = qs.quantize(model, config, data)
    except ConfigError as exc:
        if "no quantization method is registered" in str(exc):
            raise LookupError(str(exc)) from exc
        raise
    q.save(spec["out"], sidecar=False)
    return {"seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- onnxruntime.quantization


class _ShardReader:
    """``CalibrationDataReader`` over the shard folder, batch by batch."""

    def __init__(self, folder: str, samples: int) -> None:
        self._folder = Path(folder)
        self._batch = batch_for(samples)
        self._it = shard_batches(self._folder, self._batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = shard_batches(self._folder, self._batch)


def run_ort(spec: dict[str, Any]) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    variant = spec["variant"]
    t0 = time.perf_counter()
    if variant == "preprocess":
        quant_pre_process(spec["model"], spec["out"])
    elif variant.startswith("static-"):
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        reader_cls = type("Reader", (_ShardReader, CalibrationDataReader), {})
        quantize_static(
            spec["model"],
            spec["out"],
            reader_cls(spec["calib"], spec["samples"]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[variant.removeprefix("static-")],
        )
    elif variant == "dynamic":
        quantize_dynamic(spec["model"], spec["out"], weight_type=QuantType.QInt8, per_channel=True)
    elif variant == "int4":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(spec["model"], bits=4, block_size=32, is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(spec["out"], use_external_data_format=False)
    else:
        raise LookupError(f"onnxruntime.quantization has no {variant} mode in this benchmark")
    return {"seconds": time.perf_counter() - t0}


def run_tflite(spec: dict[str, Any]) -> dict[str, Any]:
    """The TFLite converter's modes on the Keras source (``dynamic``, ``int8``, ``float16``)."""
    import quantscope as qs
    from quantscope.backends.tflite import convert_keras

    variant, out = spec["variant"], Path(spec["out"])
    t0 = time.perf_counter()
    calib = qs.Dataset.from_folder(spec["calib"]) if spec.get("calib") else None
    (written,) = convert_keras(spec["keras"], out.parent, calib=calib, variants=[variant],
                               num_samples=spec.get("samples") or 1, stem=out.name.split(".")[0])
    if written.path != out:
        written.path.replace(out)
    return {"seconds": time.perf_counter() - t0}


_PATH_KEYS = ("model", "calib", "out", "preprocessed", "keras")


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    # the peer writes scratch files (shape-inference temporaries, external data) into the
    # working directory: run in the job's own folder, with every path made absolute first
    spec = {k: str(Path(v).resolve()) if k in _PATH_KEYS and isinstance(v, str) else v for k, v in spec.items()}
    result_path = Path(argv[1]).resolve()
    os.chdir(Path(argv[0]).resolve().parent)
    result: dict[str, Any] = {"rss_before_mb": _rss_mb()}
    try:
        runner = {"quantscope": run_quantscope, "ort": run_ort, "tflite": run_tflite}[spec["tool"]]
        result.update(runner(spec))
        result["status"] = "ok"
    except LookupError as exc:
        result.update(status="not available", error=str(exc))
    except Exception as exc:
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-4000:])
    result["peak_rss_mb"] = _peak_rss_mb()
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    # imports of both tools happen before the clock starts, so start-up is not counted
    import onnxruntime.quantization  # noqa: F401

    import quantscope  # noqa: F401

    sys.exit(main(sys.argv[1:]))
