"""One quantization job, run in a fresh process: ``python -m bench.worker SPEC.json RESULT.json``.

The spec names the tool (``quantscope``, ``ort``, ``nncf`` or ``tflite``; the peers' settings are
in :mod:`bench.peers`), the variant, the float model, the
calibration folder and the output path. The result records the wall time of the
quantization call (loading the model and writing the output included, interpreter start-up
and imports excluded), the process's peak RSS, and the RSS before the call (imports only).
Both tools read the same ``.npz`` shards through a streaming reader of batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.peers import run_nncf, run_ort
from bench.worker_io import batch_for


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


# --------------------------------------------------------------------------- quantscope


def _quantscope_config(variant: str, n: int) -> Any:
    from quantscope import config as c

    if variant.startswith("static-"):
        cal = variant.removeprefix("static-")
        return c.StaticInt8(calibration=cal, num_samples=n, batch_size=batch_for(n))
    if variant == "int4-gptq-awq":  # the accuracy-recovering weight-int4: GPTQ rounding, AWQ scales, from calibration
        return c.WeightInt4(block_size=32, algorithm="gptq", awq=True, num_samples=n, batch_size=batch_for(n))
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
    search = (q.plan.extra.get("latency") or {}).get("search_s")  # static-int8's speed search (objective speed)
    return {"seconds": time.perf_counter() - t0, **({"search_s": search} if search is not None else {})}


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
    if spec["tool"] == "nncf":  # imported before the clock and the baseline RSS, like the other tools
        with contextlib.suppress(ImportError):  # run_nncf records the peer as not available, with the reason
            import nncf  # noqa: F401
    result: dict[str, Any] = {"rss_before_mb": _rss_mb()}
    try:
        runner = {"quantscope": run_quantscope, "ort": run_ort, "nncf": run_nncf, "tflite": run_tflite}[spec["tool"]]
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
    # imports of both tools happen before the clock starts, so start-up is not counted: the peers'
    # entry points, and the modules quantscope imports lazily on its first load/quantize call
    import onnxruntime.quantization  # noqa: F401

    import quantscope
    import quantscope.model_io
    import quantscope.quantization  # noqa: F401
    from quantscope.methods import registered_configs

    registered_configs()  # imports every method module (each registers itself)

    sys.exit(main(sys.argv[1:]))
